"""Dual-stack (IPv4 + IPv6) in the pure core: the lease key both ways, flannel's IPv6 config rules and the choice
of a pair for a host (flannel-compat.md; flannel's pkg/subnet/config.go and subnet.go)."""

import ipaddress
import json
import random

import pytest

from ansible_collections.overlay.flannel.plugins.module_utils import backends, netconfig
from ansible_collections.overlay.flannel.plugins.module_utils import leases as L
from ansible_collections.overlay.flannel.plugins.module_utils import subnets as s
from ansible_collections.overlay.flannel.plugins.module_utils.netconfig import ConfigError, from_dict
from ansible_collections.overlay.flannel.plugins.module_utils.store import host_attrs

PREFIX = "/coreos.com/network"
V4, V6 = ipaddress.IPv4Network, ipaddress.IPv6Network
DUAL = {"Network": "10.5.0.0/16", "EnableIPv6": True, "IPv6Network": "fd00:5::/48", "Backend": {"Type": "vxlan"}}


def dual(**extra):
    raw = dict(DUAL)
    raw.update(extra)
    return raw


# --- the key -------------------------------------------------------------------------------------------------------

def test_the_dual_stack_key_appends_the_compressed_ipv6_half():
    assert s.subnet_key_name(V4("10.5.34.0/24"), V6("fd00:5:0:22::/64")) == "10.5.34.0-24&fd00:5:0:22::-64"
    assert s.lease_key("/coreos.com/network/", V4("10.5.34.0/24"), V6("fd00:0005:0000:0022:0000::/64")) == \
        "/coreos.com/network/subnets/10.5.34.0-24&fd00:5:0:22::-64"
    # An IPv4-only key as ever.
    assert s.subnet_key_name(V4("10.5.34.0/24")) == "10.5.34.0-24"
    assert s.claim_key(PREFIX, V6("fd00:5:0:22::/64")) == PREFIX + "/claims/fd00:5:0:22::-64"
    assert s.claim_key(PREFIX, V4("10.5.34.0/24")) == PREFIX + "/claims/10.5.34.0-24"
    assert s.parse_claim_name("fd00:5:0:22::-64") == V6("fd00:5:0:22::/64")
    assert s.parse_claim_name("10.5.34.0-24") == V4("10.5.34.0/24")


@pytest.mark.parametrize("v4, v6", [
    ("10.5.34.0/24", "fd00:5:0:22::/64"), ("10.5.0.4/30", "fd00::/126"), ("10.5.1.0/24", "2001:db8:0:ff00::/56"),
    ("10.5.1.0/24", None),
])
def test_the_key_round_trips(v4, v6):
    pair = (V4(v4), V6(v6) if v6 else None)
    name = s.subnet_key_name(*pair)
    assert s.parse_subnet_key_pair(name) == pair
    assert s.parse_lease_key_pair(PREFIX, s.lease_key(PREFIX, *pair)) == pair
    # The IPv4 reader still takes the IPv4 half of every key.
    assert s.parse_subnet_key_name(name) == pair[0]


@pytest.mark.parametrize("name, words", [
    ("10.5.34.0-24&zz::-64", "its IPv6 half 'zz::-64' is not of the form ADDR-LEN"),
    ("10.5.34.0-24&FD00::-64", "lower-case hex"),  # flanneld's reader takes lower case only
    ("10.5.34.0-24&fd00::", "not of the form ADDR-LEN"),
    ("10.5.34.0-24&::ffff:1.2.3.4-64", "not of the form ADDR-LEN"),
    ("10.5.34.0-24&fd00::1-64", "host bits set"),
    ("10.5.34.0-24&fd00::-129", "not a valid IPv6 subnet"),
    ("10.5.34.0-24&fd00:::1-64", "not a valid IPv6 subnet"),
    ("10.5.34.0-24&", "not of the form ADDR-LEN"),
])
def test_a_garbage_ipv6_half_is_refused_naming_the_key(name, words):
    with pytest.raises(s.SubnetError) as err:
        s.parse_subnet_key_pair(name)
    assert words in str(err.value) and repr(name) in str(err.value)
    assert s.ipv6_half_of_key_name(name) is None


def test_a_garbage_ipv4_half_is_refused_as_ever():
    with pytest.raises(s.SubnetError, match="'fd00::-64&10.5.34.0-24' is not a valid subnet"):
        s.parse_subnet_key_pair("fd00::-64&10.5.34.0-24")


def test_ipv6_parsers_name_what_they_parse():
    assert s.parse_cidr6("fd00:5::/48", "ipv6_network") == V6("fd00:5::/48")
    with pytest.raises(s.SubnetError, match="ipv6_network 'fd00:5::1/48' has host bits set .did you mean fd00:5::/48"):
        s.parse_cidr6("fd00:5::1/48", "ipv6_network")
    with pytest.raises(s.SubnetError, match="ipv6_subnet '10.5.0.0/16' is not an IPv6 CIDR"):
        s.parse_cidr6("10.5.0.0/16", "ipv6_subnet")
    assert str(s.parse_ipv6("2001:DB8::0001", "public_ipv6")) == "2001:db8::1"
    with pytest.raises(s.SubnetError, match="public_ipv6 '192.0.2.1' is not an IPv6 address"):
        s.parse_ipv6("192.0.2.1", "public_ipv6")
    assert s.gateway(V6("fd00:5:0:22::/64")) == "fd00:5:0:22::1/64"


def test_free_iteration_takes_ipv6_ranges():
    smin, smax = V6("fd00:5:0:1::/64"), V6("fd00:5:0:4::/64")
    taken = {int(V6("fd00:5:0:2::/64").network_address)}
    assert [str(x) for x in s.iter_free(smin, smax, taken)] == ["fd00:5:0:1::/64", "fd00:5:0:3::/64",
                                                                "fd00:5:0:4::/64"]
    assert s.count_subnets(V6("fd00:5::/64"), V6("fd00:5:ffff:ffff::/64")) == 2 ** 32


# --- the config ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("ipv6_network, subnet_len, smin, smax", [
    ("fd00:5::/48", 64, "fd00:5:0:1::", "fd00:5:0:ffff::"),
    ("fd00::/62", 64, "fd00:0:0:1::", "fd00:0:0:3::"),
    ("fd00::/63", 65, "fd00::8000:0:0:0", "fd00:0:0:1:8000::"),
    ("fd00::/120", 122, "fd00::40", "fd00::c0"),
    ("fd00::/124", 126, "fd00::4", "fd00::c"),
])
def test_ipv6_defaults_filled_as_flannel_does(ipv6_network, subnet_len, smin, smax):
    cfg = from_dict(dual(IPv6Network=ipv6_network))
    assert cfg.dual_stack
    assert {k: v for k, v in cfg.to_dict().items() if k.startswith(("IPv6", "Enable"))} == {
        "EnableIPv6": True, "IPv6Network": ipv6_network, "IPv6SubnetLen": subnet_len,
        "IPv6SubnetMin": smin, "IPv6SubnetMax": smax}
    # The IPv4 half is what it would be alone.
    assert {k: v for k, v in cfg.to_dict().items() if k not in netconfig.IPV6_KEYS} == \
        from_dict({"Network": "10.5.0.0/16", "Backend": {"Type": "vxlan"}}).to_dict()


def test_ipv4_only_configs_have_no_ipv6_keys_and_enable_ipv4_defaults_to_true():
    cfg = from_dict({"Network": "10.5.0.0/16", "EnableIPv4": True})
    assert not cfg.dual_stack and cfg.ipv6_network is None
    assert cfg.to_dict() == from_dict({"Network": "10.5.0.0/16"}).to_dict()
    assert not any(k in cfg.to_dict() for k in netconfig.IPV6_KEYS)
    # flanneld ignores the IPv6 keys unless EnableIPv6 is true; so does the parser.
    assert from_dict({"Network": "10.5.0.0/16", "IPv6Network": "fd00::/48", "EnableIPv6": False}) == cfg
    assert from_dict({"Network": "10.5.0.0/16", "IPv6Network": "fd00::/48"}) == cfg


@pytest.mark.parametrize("raw, rule, words", [
    (dual(IPv6SubnetLen=127), "IPv6SubnetLen-max", "IPv6SubnetLen must be less than /127"),
    (dual(IPv6SubnetLen=49), "IPv6SubnetLen-min", "at least four subnets: IPv6SubnetLen must be /50 or longer"),
    (dual(IPv6Network="fd00::/125"), "IPv6Network-too-small", "Minimum useful network prefix is /124"),
    (dual(IPv6Network="fd00::/125", IPv6SubnetLen=126), "IPv6SubnetLen-min", "at least four subnets"),
    (dual(IPv6Network=None), "IPv6Network-required", "IPv6Network is required with EnableIPv6"),
    (dual(IPv6Network="10.6.0.0/16"), "IPv6Network-cidr", "not an IPv6 CIDR"),
    (dual(IPv6SubnetMin="fd00:6::"), "IPv6SubnetMin-in-network", "not in the range of the IPv6Network fd00:5::/48"),
    (dual(IPv6SubnetMax="fd00:4:ffff:ffff::"), "IPv6SubnetMax-in-network", "not in the range of the IPv6Network"),
    (dual(IPv6SubnetMin="fd00:5:0:1::1"), "IPv6SubnetMin-boundary", "not on a IPv6SubnetLen boundary (/64)"),
    (dual(IPv6SubnetMax="fd00:5:0:9:8000::"), "IPv6SubnetMax-boundary", "IPv6SubnetLen boundary"),
    (dual(IPv6SubnetMin="fd00:5:0:9::", IPv6SubnetMax="fd00:5:0:8::"), "IPv6SubnetMin-le-IPv6SubnetMax", "greater"),
    (dual(IPv6SubnetMin="10.5.1.0"), "type", "IPv6SubnetMin '10.5.1.0' is not an IPv6 address"),
    (dual(IPv6SubnetLen="64"), "type", "IPv6SubnetLen must be an integer"),
    (dual(EnableIPv6="yes"), "type", "EnableIPv6 must be true or false"),
    (dual(Backend={"Type": "udp"}), "ipv6", "the udp backend has no IPv6"),
    (dual(Backend=None), "ipv6", "EnableIPv6 needs Backend.Type vxlan or host-gw"),
    (dual(EnableIPv4=False), "ipv4", "IPv6-only is out of scope"),
    ({"Network": "10.5.0.0/16", "EnableIPv4": False}, "ipv4", "EnableIPv4 false (an IPv6-only network) is not supported"),
])
def test_ipv6_rules_reject_with_a_message_naming_the_rule(raw, rule, words):
    raw = dict((k, v) for k, v in raw.items() if v is not None)
    with pytest.raises(ConfigError) as err:
        from_dict(raw)
    assert err.value.rule == rule
    assert words in str(err.value)


@pytest.mark.parametrize("extra", [
    dict(IPv6SubnetLen=126), dict(IPv6SubnetLen=50), dict(IPv6Network="fd00::/124"),
    dict(IPv6SubnetMin="fd00:5:0:10::", IPv6SubnetMax="fd00:5:0:10::"),
    dict(IPv6SubnetMin="fd00:5:0:10::/64", IPv6SubnetMax="fd00:5:0:20::/64"),  # the CIDR form too
    dict(Backend={"Type": "host-gw"}),
])
def test_ipv6_rules_accept_the_edges(extra):
    assert from_dict(dual(**extra)).ipv6_capacity >= 1


def test_compare_by_meaning_with_ipv6():
    desired = from_dict(dual())
    written = json.dumps(dict(desired.to_dict(), EnableIPv4=True), indent=2)
    assert netconfig.same_meaning(written, desired)
    assert netconfig.same_meaning(json.dumps(dual(IPv6SubnetLen=64, IPv6SubnetMax="fd00:5:0:ffff::",
                                                  IPv6Network="fd00:5:0::/48")), desired)
    assert not netconfig.same_meaning(json.dumps(dual(IPv6SubnetLen=80)), desired)
    assert not netconfig.same_meaning(json.dumps(dual(EnableIPv6=False)), desired)
    assert not netconfig.same_meaning(json.dumps(dual(IPv6Network="fd00:6::/48")), desired)


def lease(v4, ip, v6=None, lease_id=1, ipv6=None, btype="vxlan"):
    net4, net6 = V4(v4), V6(v6) if v6 else None
    attrs = {"PublicIP": ip, "PublicIPv6": ipv6, "BackendType": btype, "BackendData": None}
    return L.Lease(s.lease_key(PREFIX, net4, net6), net4, attrs, lease_id, 5, net6)


def test_stranded_counts_an_ipv6_half_outside_the_range_not_a_missing_one():
    cfg = from_dict(dual(IPv6SubnetMin="fd00:5:0:10::", IPv6SubnetMax="fd00:5:0:20::"))
    held = [lease("10.5.1.0/24", "192.0.2.1"), lease("10.5.2.0/24", "192.0.2.2", "fd00:5:0:10::/64"),
            lease("10.5.3.0/24", "192.0.2.3", "fd00:5:0:30::/64"), lease("10.6.4.0/24", "192.0.2.4")]
    assert [x.public_ip for x in netconfig.stranded(cfg, held)] == ["192.0.2.3", "192.0.2.4"]
    # Back to IPv4-only: the IPv6 halves are dropped, nothing stranded but the IPv4 misfit.
    assert [x.public_ip for x in netconfig.stranded(from_dict({"Network": "10.5.0.0/16"}), held)] == ["192.0.2.4"]


# --- lease values and the choice of a pair -------------------------------------------------------------------------

def test_a_dual_stack_value_carries_public_ipv6_and_backend_v6_data():
    v6data = {"VNI": 1, "VtepMAC": backends.vtep_mac6("192.0.2.10", 1)}
    text = L.encode_value("192.0.2.10", "vxlan", {"VNI": 1, "VtepMAC": "0e:01:c0:00:02:0a"}, "2001:db8::10", v6data)
    assert text == ('{"PublicIP":"192.0.2.10","PublicIPv6":"2001:db8::10","BackendType":"vxlan",'
                    '"BackendData":{"VNI":1,"VtepMAC":"0e:01:c0:00:02:0a"},'
                    '"BackendV6Data":{"VNI":1,"VtepMAC":"1e:01:c0:00:02:0a"}}')
    assert L.decode_value(text)["BackendV6Data"] == v6data
    # The IPv4-only value is byte for byte flanneld's, without BackendV6Data.
    assert L.encode_value("10.8.65.53") == '{"PublicIP":"10.8.65.53","PublicIPv6":null,"BackendType":"udp","BackendData":null}'
    assert "BackendV6Data" not in L.decode_value(L.encode_value("10.8.65.53"))


def test_host_attrs_need_public_ipv6_on_a_dual_stack_network():
    cfg = from_dict(dual())
    with pytest.raises(L.LeaseError, match="public_ipv6 is required: the network 10.5.0.0/16 is dual-stack"):
        host_attrs(cfg, [], "192.0.2.10", "vxlan", None)
    # A host whose lease names its IPv6 address keeps it (the forwarder re-creating its lease).
    mine = [lease("10.5.1.0/24", "192.0.2.10", "fd00:5:0:1::/64", ipv6="2001:db8::10")]
    assert host_attrs(cfg, mine, "192.0.2.10", "vxlan", None)["PublicIPv6"] == "2001:db8::10"
    assert host_attrs(cfg, [], "192.0.2.10", "vxlan", None, "2001:db8::10")["BackendV6Data"] == \
        {"VNI": 1, "VtepMAC": "1e:01:c0:00:02:0a"}
    # IPv4-only: no IPv6 attribute, whatever is given.
    v4 = from_dict({"Network": "10.5.0.0/16"})
    assert host_attrs(v4, [], "192.0.2.10", "udp", None, "2001:db8::10")["PublicIPv6"] is None


CFG = from_dict(dual())
ATTRS = {"PublicIP": "192.0.2.10", "PublicIPv6": "2001:db8::10", "BackendType": "vxlan", "BackendData": None}


def plan(held, bad=(), **kw):
    return L.plan_lease(kw.pop("config", CFG), held, list(bad), "192.0.2.10", dict(ATTRS), rng=random.Random(1), **kw)


def test_a_new_host_gets_a_pair_free_in_both_families():
    held = [lease("10.5.1.0/24", "192.0.2.1", "fd00:5:0:1::/64"), lease("10.5.2.0/24", "192.0.2.2", "fd00:5:0:2::/64")]
    got = plan(held)
    assert got.action == "create" and got.fresh == {4, 6}
    assert got.subnet not in [x.subnet for x in held] and got.subnet6 not in [x.subnet6 for x in held]
    assert CFG.fits(got.subnet, got.subnet6)


def test_a_host_keeps_its_pair_and_previous_pairs_come_back_half_by_half():
    mine = lease("10.5.7.0/24", "192.0.2.10", "fd00:5:0:7::/64", ipv6="2001:db8::99")
    assert (plan([mine]).action, plan([mine]).subnet6) == ("update", mine.subnet6)  # a new PublicIPv6, same key
    mine.attrs = dict(ATTRS)
    assert (plan([mine]).action, plan([mine]).current) == ("keep", mine)
    got = plan([], previous=V4("10.5.9.0/24"), previous6=V6("fd00:5:0:9::/64"))
    assert (got.action, got.subnet, got.subnet6) == ("create", V4("10.5.9.0/24"), V6("fd00:5:0:9::/64"))
    # A previous IPv6 half held by another host: the IPv4 one is still reused, the IPv6 one chosen.
    other = lease("10.5.3.0/24", "192.0.2.3", "fd00:5:0:9::/64")
    got = plan([other], previous=V4("10.5.9.0/24"), previous6=V6("fd00:5:0:9::/64"))
    assert got.subnet == V4("10.5.9.0/24") and got.subnet6 not in (None, V6("fd00:5:0:9::/64"))


def test_turning_dual_stack_keeps_the_ipv4_subnet_under_a_new_key_and_back():
    v4only = lease("10.5.7.0/24", "192.0.2.10", lease_id=0)
    got = plan([v4only], previous6=V6("fd00:5:0:70::/64"))
    assert (got.action, got.subnet, got.subnet6, got.current) == \
        ("rekey", V4("10.5.7.0/24"), V6("fd00:5:0:70::/64"), v4only)
    assert got.reason == "dual-stack key"
    pair = lease("10.5.7.0/24", "192.0.2.10", "fd00:5:0:70::/64")
    back = plan([pair], config=from_dict({"Network": "10.5.0.0/16", "Backend": {"Type": "vxlan"}}))
    assert (back.action, back.subnet, back.subnet6, back.reason) == ("rekey", V4("10.5.7.0/24"), None, "IPv4-only key")


def test_a_named_half_is_taken_and_the_other_kept_if_free_else_chosen():
    pair = lease("10.5.7.0/24", "192.0.2.10", "fd00:5:0:70::/64")
    got = plan([pair], requested6=V6("fd00:5:0:71::/64"))
    assert (got.action, got.subnet, got.subnet6, got.fresh) == \
        ("rekey", V4("10.5.7.0/24"), V6("fd00:5:0:71::/64"), frozenset())
    got = plan([pair], requested=V4("10.5.8.0/24"))
    assert (got.action, got.subnet, got.subnet6, got.release) == \
        ("create", V4("10.5.8.0/24"), V6("fd00:5:0:70::/64"), [pair])
    got = plan([pair], requested=V4("10.5.8.0/24"), requested6=V6("fd00:5:0:80::/64"))
    assert (got.subnet, got.subnet6) == (V4("10.5.8.0/24"), V6("fd00:5:0:80::/64"))
    # The host's own IPv6 half is held by another host too (a duplicate from before): it is chosen anew.
    dup = lease("10.5.3.0/24", "192.0.2.3", "fd00:5:0:70::/64")
    got = plan([pair, dup], requested=V4("10.5.8.0/24"))
    assert got.subnet6 not in (None, V6("fd00:5:0:70::/64")) and 6 in got.fresh


@pytest.mark.parametrize("kw, words", [
    (dict(requested6=V6("fd00:6::/64")), "IPv6 subnet fd00:6::/64 is not a leasable subnet of fd00:5::/48 (/64 subnets"),
    (dict(requested6=V6("fd00:5:0:1::/64")), "IPv6 subnet fd00:5:0:1::/64 is leased to 192.0.2.1"),
    (dict(requested6=V6("fd00:5:0:1::/64"), config=from_dict({"Network": "10.5.0.0/16"})), "is IPv4-only"),
])
def test_a_named_half_that_cannot_be_had_is_an_error(kw, words):
    held = [lease("10.5.1.0/24", "192.0.2.1", "fd00:5:0:1::/64")]
    with pytest.raises(L.LeaseError) as err:
        plan(held, **kw)
    assert words in str(err.value)


def test_garbage_keys_hold_both_their_halves():
    held, bad = L.read_leases(PREFIX, [
        (PREFIX + "/subnets/10.5.1.0-24&fd00:5:0:1::-64", b"not json", 0, 3),
        (PREFIX + "/subnets/10.5.2.0-24&fd00:5:0:2::9-64", L.encode_value("192.0.2.2"), 0, 4),
        (PREFIX + "/subnets/10.5.3.0-24&fd00:5:0:3::-64", L.encode_value("192.0.2.3"), 0, 5),
    ])
    assert [(str(x.subnet), str(x.subnet6)) for x in held] == [("10.5.3.0/24", "fd00:5:0:3::/64")]
    assert [b.key.rsplit("/", 1)[1] for b in bad] == ["10.5.1.0-24&fd00:5:0:1::-64", "10.5.2.0-24&fd00:5:0:2::9-64"]
    assert "10.5.2.0-24&fd00:5:0:2::9-64" in bad[1].error and "host bits set" in bad[1].error
    assert L.taken_networks6(held, bad) == {int(V6(n).network_address) for n in ("fd00:5:0:1::/64", "fd00:5:0:3::/64")}
    assert int(V4("10.5.2.0/24").network_address) in L.taken_networks(held, bad)
    with pytest.raises(L.LeaseError, match="IPv6 subnet fd00:5:0:1::/64 is taken"):
        plan(held, bad, requested6=V6("fd00:5:0:1::/64"))


def test_ipv6_exhaustion_is_its_own_message():
    cfg = from_dict(dual(IPv6Network="fd00::/124"))  # /126s: ::4, ::8, ::c
    held = [lease("10.5.%d.0/24" % i, "192.0.2.%d" % i, "fd00::%x/126" % (4 * i)) for i in (1, 2, 3)]
    with pytest.raises(L.ExhaustedError, match=r"no free IPv6 subnet in fd00::4/126..fd00::c/126 \(3 leased\)"):
        plan(held, config=cfg)


def test_lease_entries_show_both_halves_of_a_dual_stack_lease_only():
    entries = L.lease_entries([lease("10.5.1.0/24", "192.0.2.1", "fd00:5:0:1::/64", 0, ipv6="2001:db8::1"),
                               lease("10.5.2.0/24", "192.0.2.2", lease_id=0)], {}, 0)
    assert (entries[0]["ipv6_subnet"], entries[0]["public_ipv6"]) == ("fd00:5:0:1::/64", "2001:db8::1")
    assert "ipv6_subnet" not in entries[1]
