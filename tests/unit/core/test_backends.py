"""backends.py: the options, defaults and rules of udp, vxlan and host-gw, and what a lease of each carries."""

import ipaddress

import pytest

from ansible_collections.overlay.flannel.plugins.module_utils import backends
from ansible_collections.overlay.flannel.plugins.module_utils.backends import BackendError, normalise

VXLAN_DEFAULTS = {"Type": "vxlan", "VNI": 1, "Port": 0, "GBP": False, "Learning": False, "DirectRouting": False}


# -- defaults --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("raw, expected", [
    (None, {"Type": "udp", "Port": 8285}),
    ({}, {"Type": "udp", "Port": 8285}),
    ({"Type": ""}, {"Type": "udp", "Port": 8285}),
    ({"Type": "udp"}, {"Type": "udp", "Port": 8285}),
    ({"Type": "udp", "Port": 0}, {"Type": "udp", "Port": 8285}),
    ({"Type": "udp", "Port": 9000}, {"Type": "udp", "Port": 9000}),
    ({"Type": "vxlan"}, VXLAN_DEFAULTS),
    ({"Type": "vxlan", "VNI": 42, "Port": 4789, "GBP": True, "Learning": True, "DirectRouting": True},
     {"Type": "vxlan", "VNI": 42, "Port": 4789, "GBP": True, "Learning": True, "DirectRouting": True}),
    ({"Type": "vxlan", "VNI": 0}, dict(VXLAN_DEFAULTS, VNI=0)),
    ({"Type": "vxlan", "VNI": 16777215}, dict(VXLAN_DEFAULTS, VNI=16777215)),
    ({"Type": "vxlan", "VNI": 7.0}, dict(VXLAN_DEFAULTS, VNI=7)),
    ({"Type": "host-gw"}, {"Type": "host-gw"}),
])
def test_defaults_of_each_type_are_written_out(raw, expected):
    out = normalise(raw)
    assert out == expected
    # exactly int: neither a float (7.0) nor a bool, which isinstance(..., int) would let through
    assert type(out.get("VNI", 0)) is int and type(out.get("Port", 0)) is int  # pylint: disable=unidiomatic-typecheck


def test_normalise_does_not_change_its_input():
    raw = {"Type": "vxlan", "VNI": 3}
    normalise(raw)
    assert raw == {"Type": "vxlan", "VNI": 3}


# -- rules -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("raw, rule, words", [
    ({"Type": "udp", "Port": 70000}, "Backend-Port", "Backend.Port of the udp backend must be an integer in 1..65535"),
    ({"Type": "udp", "Port": -1}, "Backend-Port", "Backend.Port of the udp backend"),
    ({"Type": "udp", "Port": "8285"}, "Backend-Port", "got '8285'"),
    ({"Type": "udp", "Port": True}, "Backend-Port", "Backend.Port of the udp backend"),
    ({"Type": "udp", "Port": 80.5}, "Backend-Port", "Backend.Port of the udp backend"),
    ({"Type": "vxlan", "Port": 65536}, "Backend-Port",
     "Backend.Port of the vxlan backend must be an integer in 0..65535"),
    ({"Type": "vxlan", "VNI": 16777216}, "Backend-VNI",
     "Backend.VNI of the vxlan backend must be an integer in 0..16777215"),
    ({"Type": "vxlan", "VNI": -1}, "Backend-VNI", "Backend.VNI of the vxlan backend"),
    ({"Type": "vxlan", "VNI": "1"}, "Backend-VNI", "got '1'"),
    ({"Type": "vxlan", "VNI": True}, "Backend-VNI", "Backend.VNI of the vxlan backend"),
    ({"Type": "vxlan", "GBP": "true"}, "Backend-GBP", "Backend.GBP of the vxlan backend must be true or false"),
    ({"Type": "vxlan", "Learning": 1}, "Backend-Learning",
     "Backend.Learning of the vxlan backend must be true or false"),
    ({"Type": "vxlan", "DirectRouting": "yes"}, "Backend-DirectRouting",
     "Backend.DirectRouting of the vxlan backend must be true or false, got 'yes'"),
    ({"Type": 3}, "Backend-Type", "Backend.Type must be a string, got 3"),
])
def test_each_option_error_names_the_option(raw, rule, words):
    with pytest.raises(BackendError) as err:
        normalise(raw)
    assert err.value.rule == rule
    assert words in str(err.value)
    assert isinstance(err.value, ValueError)


@pytest.mark.parametrize("btype", ["VXLAN", "ipip", "wireguard", "host_gw"])
def test_unknown_type_is_refused_naming_the_allowed_ones(btype):
    with pytest.raises(BackendError) as err:
        normalise({"Type": btype})
    assert err.value.rule == "Backend-Type"
    assert repr(btype) in str(err.value)
    assert "udp, vxlan, host-gw" in str(err.value)


@pytest.mark.parametrize("raw", ["udp", ["udp"], 8285])
def test_backend_must_be_an_object(raw):
    with pytest.raises(BackendError) as err:
        normalise(raw)
    assert err.value.rule == "type"
    assert "Backend must be a JSON object" in str(err.value)


@pytest.mark.parametrize("raw, unknown, options", [
    ({"Type": "vxlan", "VNII": 2}, "VNII", "VNI, Port, GBP, Learning, DirectRouting"),
    ({"Type": "vxlan", "vni": 2, "MacPrefix": "0E:2A"}, "MacPrefix, vni", "VNI, Port"),
    ({"Type": "udp", "VNI": 1}, "VNI", "its options: Port)"),
    ({"Port": 9000, "DirectRouting": True}, "DirectRouting", "its options: Port)"),
    ({"Type": "host-gw", "Port": 8285}, "Port", "its options: none"),
])
def test_strict_refuses_unknown_keys_naming_them(raw, unknown, options):
    with pytest.raises(BackendError) as err:
        normalise(raw, strict=True)
    assert err.value.rule == "Backend-options"
    message = str(err.value)
    assert message.startswith(unknown + ": not an option of the %s backend" % (raw.get("Type") or "udp"))
    assert options in message


def test_strict_accepts_every_option_of_its_type():
    full = {"Type": "vxlan", "VNI": 9, "Port": 4789, "GBP": True, "Learning": False, "DirectRouting": True}
    assert normalise(full, strict=True) == full
    assert normalise({"Type": "udp", "Port": 9000}, strict=True) == {"Type": "udp", "Port": 9000}
    assert normalise({"Type": "host-gw"}, strict=True) == {"Type": "host-gw"}


def test_non_strict_keeps_unknown_keys_as_they_are():
    out = normalise({"Type": "vxlan", "MacPrefix": "0E:2A", "VNI": 4})
    assert out == dict(VXLAN_DEFAULTS, VNI=4, MacPrefix="0E:2A")
    # A key of another type is no option here: kept, not validated.
    assert normalise({"Type": "host-gw", "Port": "anything"}) == {"Type": "host-gw", "Port": "anything"}
    assert normalise({"Type": "udp", "VNI": "x"}) == {"Type": "udp", "Port": 8285, "VNI": "x"}


# -- derived values ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("raw, port", [
    ({"Type": "udp"}, 8285),
    ({"Type": "udp", "Port": 9000}, 9000),
    ({"Type": "vxlan"}, 8472),
    ({"Type": "vxlan", "Port": 4789}, 4789),
    ({"Type": "host-gw"}, None),
])
def test_port_on_the_wire(raw, port):
    assert backends.port(normalise(raw)) == port


@pytest.mark.parametrize("raw, device", [
    ({"Type": "vxlan"}, "flannel.1"),
    ({"Type": "vxlan", "VNI": 4096}, "flannel.4096"),
    ({"Type": "udp"}, None),
    ({"Type": "host-gw"}, None),
])
def test_device_name(raw, device):
    assert backends.device_name(normalise(raw)) == device


@pytest.mark.parametrize("btype, underlay, expected", [
    ("udp", 1500, 1472),
    ("vxlan", 1500, 1450),
    ("host-gw", 1500, 1500),
    ("udp", 9000, 8972),
    ("vxlan", 9000, 8950),
    ("host-gw", 9000, 9000),
])
def test_mtu(btype, underlay, expected):
    assert backends.mtu(btype, underlay) == expected


def test_vtep_mac_is_stable_and_has_the_documented_layout():
    mac = backends.vtep_mac("192.0.2.10", 1)
    assert mac == "0e:01:c0:00:02:0a"
    assert backends.vtep_mac("192.0.2.10", 1) == mac
    assert backends.vtep_mac(u"192.0.2.10", 1) == mac


@pytest.mark.parametrize("ip, vni", [("192.0.2.10", 1), ("10.0.0.1", 4096), ("255.255.255.255", 16777215),
                                     ("0.0.0.0", 0)])
def test_vtep_mac_is_locally_administered_unicast(ip, vni):
    mac = backends.vtep_mac(ip, vni)
    octets = [int(part, 16) for part in mac.split(":")]
    assert len(octets) == 6
    assert octets[0] & 0x01 == 0, "multicast bit set in %s" % mac
    assert octets[0] & 0x02 == 0x02, "not locally administered: %s" % mac
    assert mac == mac.lower()


def test_vtep_mac_differs_per_ip_and_per_vni():
    ips = [str(ipaddress.IPv4Address(u"192.0.2.0") + n) for n in range(256)]
    macs = set(backends.vtep_mac(ip, 1) for ip in ips)
    assert len(macs) == len(ips)
    assert backends.vtep_mac("192.0.2.10", 1) != backends.vtep_mac("192.0.2.10", 2)
    assert backends.vtep_mac("192.0.2.10", 1) != backends.vtep_mac("198.51.100.10", 1)


def test_vtep_mac_refuses_what_is_not_an_ipv4_address():
    with pytest.raises(ValueError):
        backends.vtep_mac("2001:db8::1", 1)
    with pytest.raises(ValueError):
        backends.vtep_mac("host1", 1)


def test_lease_data_of_each_type():
    vxlan = normalise({"Type": "vxlan", "VNI": 7})
    assert backends.lease_data(vxlan, "192.0.2.10") == {"VNI": 7, "VtepMAC": backends.vtep_mac("192.0.2.10", 7)}
    assert backends.lease_data(vxlan, "192.0.2.10")["VtepMAC"] == "0e:07:c0:00:02:0a"
    assert backends.lease_data(normalise({"Type": "vxlan"}), "192.0.2.11") == {"VNI": 1, "VtepMAC": "0e:01:c0:00:02:0b"}
    assert backends.lease_data(normalise({"Type": "udp"}), "192.0.2.10") is None
    assert backends.lease_data(normalise({"Type": "host-gw"}), "192.0.2.10") is None


# -- reading a peer's lease --------------------------------------------------------------------------------------

@pytest.mark.parametrize("data, vni, mac", [
    ({"VNI": 1, "VtepMAC": "0e:01:c0:00:02:0a"}, 1, "0e:01:c0:00:02:0a"),
    ({"VNI": 1, "VtepMAC": "0E:01:C0:00:02:0A"}, 1, "0e:01:c0:00:02:0a"),
    ({"VtepMAC": "aa:bb:cc:dd:ee:ff"}, 5, "aa:bb:cc:dd:ee:ff"),  # no VNI: flanneld's older leases
    ({"VNI": 300, "VtepMAC": "Aa:bB:cc:dd:ee:0f", "Extra": 1}, 300, "aa:bb:cc:dd:ee:0f"),
])
def test_vxlan_peer_returns_the_mac_in_lower_case(data, vni, mac):
    assert backends.vxlan_peer(data, vni) == mac


def test_vxlan_peer_reads_what_lease_data_writes():
    backend = normalise({"Type": "vxlan", "VNI": 12})
    data = backends.lease_data(backend, "203.0.113.9")
    assert backends.vxlan_peer(data, 12) == backends.vtep_mac("203.0.113.9", 12)


@pytest.mark.parametrize("data, vni, rule, words", [
    (None, 1, "BackendData", "BackendData of a vxlan lease must be an object, got None"),
    ("0e:01:c0:00:02:0a", 1, "BackendData", "must be an object"),
    ([1], 1, "BackendData", "must be an object"),
    ({}, 1, "VtepMAC", "BackendData.VtepMAC None is not a MAC address"),
    ({"VtepMAC": 42}, 1, "VtepMAC", "BackendData.VtepMAC 42 is not a MAC address"),
    ({"VtepMAC": "0e:01:c0:00:02"}, 1, "VtepMAC", "'0e:01:c0:00:02' is not a MAC address"),
    ({"VtepMAC": "0e-01-c0-00-02-0a"}, 1, "VtepMAC", "is not a MAC address"),
    ({"VtepMAC": "0e:01:c0:00:02:0g"}, 1, "VtepMAC", "is not a MAC address"),
    ({"VtepMAC": "0e:01:c0:00:02:0a:ff"}, 1, "VtepMAC", "is not a MAC address"),
    ({"VNI": 2, "VtepMAC": "0e:01:c0:00:02:0a"}, 1, "VNI", "BackendData.VNI 2 is not the network's VNI 1"),
    ({"VNI": "1", "VtepMAC": "0e:01:c0:00:02:0a"}, 1, "VNI", "BackendData.VNI '1' is not the network's VNI 1"),
    ({"VNI": None, "VtepMAC": "0e:01:c0:00:02:0a"}, 1, "VNI", "not the network's VNI 1"),
])
def test_vxlan_peer_refuses_naming_the_problem(data, vni, rule, words):
    with pytest.raises(BackendError) as err:
        backends.vxlan_peer(data, vni)
    assert err.value.rule == rule
    assert words in str(err.value)


def test_vxlan_peer_refuses_a_mac_with_a_trailing_newline():
    # A regex ending in $ would let "...:0a\n" through (and hand the newline to the FDB).
    with pytest.raises(BackendError):
        backends.vxlan_peer({"VtepMAC": "0e:01:c0:00:02:0a\n"}, 1)


@pytest.mark.parametrize("network_type, lease_type, matches", [
    ("udp", "udp", True),
    ("udp", "", True),
    ("udp", None, True),
    ("vxlan", "vxlan", True),
    ("host-gw", "host-gw", True),
    ("vxlan", "", False),
    ("vxlan", "udp", False),
    ("udp", "vxlan", False),
    ("host-gw", "vxlan", False),
    ("vxlan", "host-gw", False),
])
def test_lease_type_matches(network_type, lease_type, matches):
    assert backends.lease_type_matches(network_type, lease_type) is matches


def test_booleans_are_no_numbers():
    # JSON false is no port 0 (the default) and true is no VNI 1.
    with pytest.raises(backends.BackendError, match="Backend.Port of the udp backend"):
        backends.normalise({"Type": "udp", "Port": False})
    with pytest.raises(backends.BackendError, match="VNI"):
        backends.vxlan_peer({"VNI": True, "VtepMAC": "0e:01:0a:00:00:01"}, 1)
