"""What a lease entry means to this host (lease_events): one classification for listings and watch events."""

import collections
import ipaddress
import json
import logging

import pytest

from ansible_collections.overlay.flannel.plugins.module_utils import backends
from ansible_collections.overlay.flannel.plugins.module_utils.netconfig import from_dict
from ansible_collections.overlay.flannel.plugins.module_utils.store import Snapshot

from flannel_forwarder import kernel_state as ks
from flannel_forwarder import lease_events as ev
from flannel_forwarder.backend.udp import udp_peer_of
from flannel_forwarder.routes import Peer

PREFIX = "/coreos.com/network"
OWN_IP, PEER_IP = "192.0.2.1", "192.0.2.2"
OWN = ipaddress.IPv4Network("10.5.1.0/24")
NET = ipaddress.IPv4Network
UDP = from_dict({"Network": "10.5.0.0/16"})
VXLAN = from_dict({"Network": "10.5.0.0/16", "Backend": {"Type": "vxlan"}})
MAC = backends.vtep_mac(PEER_IP, 1)
KV = collections.namedtuple("KV", "key value lease mod_revision")


def here(config=UDP):
    peer_of = udp_peer_of(8285) if config.backend_type == backends.UDP else \
        (lambda lease: ks.peer_of(config.backend, lease))
    return ev.Here(PREFIX, OWN, OWN_IP, config, peer_of)


def key(name):
    return PREFIX + "/subnets/" + name


def value(ip, btype="udp", data=None):
    return json.dumps({"PublicIP": ip, "PublicIPv6": None, "BackendType": btype, "BackendData": data})


def test_a_usable_lease_of_another_host_is_a_peer_of_the_running_backend():
    got = ev.classify(key("10.5.2.0-24"), value(PEER_IP), here(), lease_id=7, mod_revision=9)
    assert (got.kind, got.subnet, got.peer) == (ev.PEER, NET("10.5.2.0/24"), Peer(PEER_IP, 8285))
    assert got.lease.lease_id == 7 and got.lease.mod_revision == 9
    assert got.change() == (NET("10.5.2.0/24"), Peer(PEER_IP, 8285))
    vx = ev.classify(key("10.5.2.0-24"), value(PEER_IP, "vxlan", {"VNI": 1, "VtepMAC": MAC}), here(VXLAN))
    assert (vx.kind, vx.peer) == (ev.PEER, ks.VxlanPeer(PEER_IP, MAC))


def test_an_old_lease_without_a_backend_type_is_a_udp_lease():
    got = ev.classify(key("10.5.2.0-24"), json.dumps({"PublicIP": PEER_IP}), here())
    assert got.kind == ev.PEER


def test_a_deleted_key_of_another_host_is_gone():
    got = ev.classify(key("10.5.2.0-24"), None, here())
    assert (got.kind, got.subnet, got.peer) == (ev.GONE, NET("10.5.2.0/24"), None)
    assert got.change() == (NET("10.5.2.0/24"), None)


def test_the_own_key_is_the_keepers_never_a_peer():
    put = ev.classify(key("10.5.1.0-24"), value(OWN_IP), here(), lease_id=5)
    assert (put.kind, put.subnet, put.lease.lease_id) == (ev.OWN, OWN, 5) and put.change() is None
    # also when another host wrote it (the keeper decides that it lost the subnet)
    assert ev.classify(key("10.5.1.0-24"), value(PEER_IP), here()).kind == ev.OWN
    gone = ev.classify(key("10.5.1.0-24"), None, here())
    assert (gone.kind, gone.lease) == (ev.OWN, None) and gone.change() is None


@pytest.mark.parametrize("name, raw, subnet", [
    ("10.5.4.0-24", "{not json", NET("10.5.4.0/24")),
    ("10.5.5.0-24", '["192.0.2.44"]', NET("10.5.5.0/24")),
    ("10.5.8.0-24", '{"PublicIP": "not-an-ip"}', NET("10.5.8.0/24")),
    ("10.5.9.0-24", b"\xff", NET("10.5.9.0/24")),
    ("garbage", value("192.0.2.40"), None),
    ("10.5.1.0-99", value("192.0.2.41"), None),
])
def test_garbage_is_ignored_and_unroutes_the_subnet_its_key_names(name, raw, subnet):
    got = ev.classify(key(name), raw, here())
    assert (got.kind, got.reason, got.subnet, got.key) == (ev.IGNORED, ev.GARBAGE, subnet, key(name))
    assert got.why
    assert got.change() == (None if subnet is None else (subnet, None))


def test_a_deleted_garbage_key_changes_nothing():
    got = ev.classify(key("garbage"), None, here())
    assert (got.kind, got.reason, got.change()) == (ev.IGNORED, ev.NOT_A_LEASE_KEY, None)


def test_a_second_lease_of_this_host_is_no_peer():
    got = ev.classify(key("10.5.3.0-24"), value(OWN_IP), here())
    assert (got.kind, got.reason, got.change()) == (ev.IGNORED, ev.STALE_OWN, (NET("10.5.3.0/24"), None))


@pytest.mark.parametrize("name", ["10.99.0.0-24", "10.5.0.0-16", "10.5.2.0-25", "0.0.0.0-0"])
def test_a_lease_that_is_no_host_subnet_of_the_network_is_never_a_peer(name):
    got = ev.classify(key(name), value(PEER_IP), here())
    assert (got.kind, got.reason) == (ev.IGNORED, ev.OUTSIDE)
    assert got.why == "%s is no host subnet of the network 10.5.0.0/16" % got.subnet
    assert got.change() == (got.subnet, None)


@pytest.mark.parametrize("config, btype, why", [
    (UDP, "vxlan", "lease of a vxlan host under a udp network"),
    (VXLAN, "udp", "lease of a udp host under a vxlan network"),
    (VXLAN, None, "lease of a udp host under a vxlan network"),
    (VXLAN, "host-gw", "lease of a host-gw host under a vxlan network"),
])
def test_a_lease_of_another_backend_is_skipped(config, btype, why):
    got = ev.classify(key("10.5.2.0-24"), value(PEER_IP, btype), here(config))
    assert (got.kind, got.reason, got.why) == (ev.IGNORED, ev.OTHER_BACKEND, why)
    assert got.change() == (NET("10.5.2.0/24"), None)


@pytest.mark.parametrize("data, words", [
    (None, "BackendData of a vxlan lease must be an object"),
    ({"VNI": 1, "VtepMAC": "nope"}, "is not a MAC address"),
    ({"VNI": 2, "VtepMAC": MAC}, "is not the network's VNI 1"),
])
def test_a_lease_whose_backend_data_the_backend_cannot_use_is_skipped(data, words):
    got = ev.classify(key("10.5.2.0-24"), value(PEER_IP, "vxlan", data), here(VXLAN))
    assert (got.kind, got.reason) == (ev.IGNORED, ev.BAD_BACKEND_DATA) and words in got.why
    assert got.change() == (NET("10.5.2.0/24"), None)


ENTRIES = {
    "10.5.1.0-24": value(OWN_IP),
    "10.5.2.0-24": value(PEER_IP),
    "10.5.3.0-24": value("192.0.2.3"),
    "10.5.4.0-24": "{not json",
    "10.5.6.0-24": value(OWN_IP),
    "10.5.7.0-24": value("192.0.2.7", "vxlan", {"VNI": 1, "VtepMAC": backends.vtep_mac("192.0.2.7", 1)}),
    "10.99.0.0-24": value("192.0.2.50"),
    "10.5.0.0-16": value("192.0.2.51"),
    "garbage": value("192.0.2.40"),
}


@pytest.mark.parametrize("config", [UDP, VXLAN])
def test_a_listing_and_the_watch_events_of_the_same_entries_agree(config):
    kvs = [KV(key(name), raw.encode() if isinstance(raw, str) else raw, 0, 1) for name, raw in ENTRIES.items()]
    listed = ev.of_listing(Snapshot(PREFIX, 1, [], kvs), here(config))
    watched = [ev.classify(kv.key, kv.value, here(config), kv.lease, kv.mod_revision) for kv in kvs]
    by_key = {e.key: (e.kind, e.reason, e.subnet, e.peer, e.change()) for e in listed}
    assert by_key == {e.key: (e.kind, e.reason, e.subnet, e.peer, e.change()) for e in watched}
    assert ev.table(listed) == ev.table(watched)
    if config is UDP:
        assert ev.table(listed) == {NET("10.5.2.0/24"): Peer(PEER_IP, 8285), NET("10.5.3.0/24"): Peer("192.0.2.3", 8285)}
    else:
        assert ev.table(listed) == {NET("10.5.7.0/24"): ks.VxlanPeer("192.0.2.7", backends.vtep_mac("192.0.2.7", 1))}


def test_classifying_is_pure(caplog):
    caplog.set_level(logging.DEBUG)
    for name, raw in ENTRIES.items():
        ev.classify(key(name), raw, here())
        ev.classify(key(name), None, here())
    assert caplog.records == []


def test_the_keeper_logs_a_listing_and_the_same_watch_events_alike(caplog):
    # One path: the same entries listed (a start, a re-list) and watched give the same table and lines.
    from ansible_collections.overlay.flannel.plugins.module_utils.leases import Lease
    from ansible_collections.overlay.flannel.plugins.module_utils.store import FlannelStore

    from flannel_forwarder.leasekeeper import LeaseKeeper
    from flannel_forwarder.routes import PeerTable

    kvs = [KV(key(name), raw.encode() if isinstance(raw, str) else raw, 0, 1) for name, raw in ENTRIES.items()]

    def keeper():
        k = LeaseKeeper(FlannelStore(None, PREFIX), OWN_IP)
        k.config, k.peer_of = UDP, udp_peer_of(8285)
        k.lease = Lease(key("10.5.1.0-24"), OWN, {"PublicIP": OWN_IP}, 0, 1)
        k.peers = PeerTable()
        return k

    caplog.set_level(logging.INFO, logger="flannel_forwarder.lease")
    listed = keeper()._listed(Snapshot(PREFIX, 1, [], kvs), {})
    listing_lines = sorted(r.getMessage() for r in caplog.records)
    caplog.clear()
    watcher = keeper()
    watcher._apply([collections.namedtuple("Event", "kind kv")("put", kv) for kv in kvs])
    assert watcher.peers.snapshot() == listed
    assert sorted(r.getMessage() for r in caplog.records) == listing_lines
    assert "ignoring unreadable lease %s: " % key("10.5.4.0-24") in "\n".join(listing_lines)
    assert "ignoring lease %s: 10.99.0.0/24 is no host subnet of the network 10.5.0.0/16" % key("10.99.0.0-24") \
        in listing_lines
    assert "peer set subnet=10.5.2.0/24 public_ip=192.0.2.2" in listing_lines
    caplog.clear()
    # a delete of a routed peer, and of one that never was
    watcher._apply([collections.namedtuple("Event", "kind kv")("delete", KV(key(n), b"", 0, 2))
                    for n in ("10.5.2.0-24", "10.5.99.0-24")])
    assert [r.getMessage() for r in caplog.records] == ["peer removed subnet=10.5.2.0/24"]


# --- dual-stack leases: the daemon is IPv4 only, and routes their IPv4 halves --------------------------------------

DUAL_VXLAN = from_dict({"Network": "10.5.0.0/16", "EnableIPv6": True, "IPv6Network": "fd00:5::/48",
                        "Backend": {"Type": "vxlan"}})


def dual_value(ip, ipv6, data=None, data6=None, btype="vxlan"):
    return json.dumps({"PublicIP": ip, "PublicIPv6": ipv6, "BackendType": btype, "BackendData": data,
                       "BackendV6Data": data6})


@pytest.mark.parametrize("config", [VXLAN, DUAL_VXLAN])
def test_the_ipv4_half_of_a_dual_stack_peer_is_routed_as_an_ipv4_lease(config):
    data = {"VNI": 1, "VtepMAC": MAC}
    plain = ev.classify(key("10.5.2.0-24"), value(PEER_IP, "vxlan", data), here(config))
    dual = ev.classify(key("10.5.2.0-24&fd00:5:0:2::-64"),
                       dual_value(PEER_IP, "2001:db8::2", data, {"VNI": 1, "VtepMAC": backends.vtep_mac6(PEER_IP, 1)}),
                       here(config), lease_id=3, mod_revision=4)
    assert (dual.kind, dual.subnet, dual.peer, dual.change()) == (plain.kind, plain.subnet, plain.peer, plain.change())
    assert dual.change() == (NET("10.5.2.0/24"), ks.VxlanPeer(PEER_IP, MAC))
    assert dual.lease.subnet6 == ipaddress.IPv6Network("fd00:5:0:2::/64")
    # its delete unroutes the IPv4 subnet
    assert ev.classify(key("10.5.2.0-24&fd00:5:0:2::-64"), None, here(config)).change() == (NET("10.5.2.0/24"), None)
    # a udp peer's dual-stack key (flanneld never writes one; our parser reads it all the same)
    udp = ev.classify(key("10.5.3.0-24&fd00:5:0:3::-64"), dual_value("192.0.2.3", "2001:db8::3", btype="udp"), here())
    assert udp.change() == (NET("10.5.3.0/24"), Peer("192.0.2.3", 8285))


def test_the_own_dual_stack_key_is_the_keepers():
    got = ev.classify(key("10.5.1.0-24&fd00:5:0:1::-64"), dual_value(OWN_IP, "2001:db8::1"), here(DUAL_VXLAN))
    assert (got.kind, got.subnet, got.change()) == (ev.OWN, OWN, None)


@pytest.mark.parametrize("name", ["10.5.2.0-24&zz::-64", "10.5.2.0-24&fd00:5:0:2::1-64", "10.5.2.0-24&FD00::-64"])
def test_a_garbage_ipv6_half_skips_the_lease_naming_the_key_and_unroutes_its_ipv4_subnet(name):
    # The choice: the whole lease is skipped (flanneld cannot read such a key either), not its IPv4 half used.
    got = ev.classify(key(name), dual_value(PEER_IP, "2001:db8::2", {"VNI": 1, "VtepMAC": MAC}), here(DUAL_VXLAN))
    assert (got.kind, got.reason, got.subnet, got.key) == (ev.IGNORED, ev.GARBAGE, NET("10.5.2.0/24"), key(name))
    assert name in got.why and "IPv6 half" in got.why
    assert got.change() == (NET("10.5.2.0/24"), None)
    listed = ev.of_listing(Snapshot(PREFIX, 1, [], [KV(key(name), b"{}", 0, 1)]), here(DUAL_VXLAN))
    assert [(e.kind, e.reason, e.key) for e in listed] == [(ev.IGNORED, ev.GARBAGE, key(name))]


# -- the IPv6 part of a lease on a dual-stack network ---------------------------------------------------------

DUAL = from_dict({"Network": "10.5.0.0/16", "Backend": {"Type": "vxlan"}, "EnableIPv6": True,
                  "IPv6Network": "fd00:5::/48"})
MAC6 = backends.vtep_mac6(PEER_IP, 1)
PAIR = "10.5.2.0-24&fd00:5:0:2::-64"


def here6():
    return ev.Here(PREFIX, OWN, OWN_IP, DUAL, lambda lease: ks.peer_of(DUAL.backend, lease),
                   lambda lease: ks.peer6_of(DUAL.backend, lease))


def value6(public_ipv6="fd00:a::2", v6data="derive"):
    raw = {"PublicIP": PEER_IP, "PublicIPv6": public_ipv6, "BackendType": "vxlan",
           "BackendData": {"VNI": 1, "VtepMAC": MAC}}
    if v6data == "derive":
        v6data = {"VNI": 1, "VtepMAC": MAC6}
    if v6data is not None:
        raw["BackendV6Data"] = v6data
    return json.dumps(raw)


def test_a_dual_stack_lease_is_a_peer_with_its_ipv6_part():
    got = ev.classify(key(PAIR), value6(), here6())
    v6 = ks.Peer6(ipaddress.IPv6Network("fd00:5:0:2::/64"), "fd00:a::2", MAC6)
    assert (got.kind, got.subnet, got.peer, got.why6) == (ev.PEER, NET("10.5.2.0/24"), ks.VxlanPeer(PEER_IP, MAC, v6),
                                                          None)


def test_an_ipv4_only_lease_on_a_dual_stack_network_is_a_peer_over_ipv4():
    got = ev.classify(key("10.5.2.0-24"), value(PEER_IP, "vxlan", {"VNI": 1, "VtepMAC": MAC}), here6())
    assert (got.kind, got.peer, got.why6) == (ev.PEER, ks.VxlanPeer(PEER_IP, MAC), None)


@pytest.mark.parametrize("text, why", [
    (value6(v6data=None), "BackendV6Data of a vxlan lease must be an object, got None"),
    (value6(v6data={"VNI": 1, "VtepMAC": "garbage"}), "BackendV6Data.VtepMAC 'garbage' is not a MAC address"),
    (value6(v6data={"VNI": 2, "VtepMAC": MAC6}), "BackendV6Data.VNI 2 is not the network's VNI 1"),
    (value6(public_ipv6=None), "PublicIPv6 None of a lease with an IPv6 subnet is no IPv6 address"),
    (value6(public_ipv6="10.0.0.1"), "PublicIPv6 '10.0.0.1' of a lease with an IPv6 subnet is no IPv6 address"),
])
def test_a_garbage_or_half_written_ipv6_part_is_skipped_and_the_ipv4_side_used(text, why):
    got = ev.classify(key(PAIR), text, here6())
    assert (got.kind, got.peer, got.why6) == (ev.PEER, ks.VxlanPeer(PEER_IP, MAC), why)
    assert got.change() == (NET("10.5.2.0/24"), ks.VxlanPeer(PEER_IP, MAC))


def test_an_ipv6_half_outside_the_ipv6_network_is_skipped():
    got = ev.classify(key("10.5.2.0-24&fd00:6:0:2::-64"), value6(), here6())
    assert got.kind == ev.PEER and got.peer.v6 is None
    assert got.why6 == "fd00:6:0:2::/64 is no host subnet of the IPv6 network fd00:5::/48"


def test_an_ipv4_only_network_reads_no_ipv6_part():
    # (a lease keeper on an IPv4-only network passes no peer6_of: a pair's IPv6 half is not looked at)
    got = ev.classify(key(PAIR), value6(), here(VXLAN))
    assert (got.kind, got.peer, got.why6) == (ev.PEER, ks.VxlanPeer(PEER_IP, MAC), None)


def test_the_keeper_logs_a_skipped_ipv6_part_with_the_key(caplog):
    from flannel_forwarder.leasekeeper import LeaseKeeper
    keeper = LeaseKeeper(None, OWN_IP)
    event = ev.classify(key(PAIR), value6(v6data=None), here6())
    with caplog.at_level(logging.INFO, logger="flannel_forwarder.lease"):
        changes = {}
        keeper._take(event, changes, lambda subnet: None, watched=True)
    assert changes == {NET("10.5.2.0/24"): ks.VxlanPeer(PEER_IP, MAC)}
    assert "lease %s: its IPv6 part is not used (BackendV6Data of a vxlan lease must be an object" % key(PAIR) \
        in caplog.text


def test_a_rekeyed_lease_stays_a_peer_when_its_old_key_goes():
    """The subnet module re-keys a lease (the network turned dual-stack) by putting the pair's key and
    deleting the IPv4-only one in one transaction: one watch response, the put first. The old key's
    deletion removes nothing; the deletion of the key the peer is routed by still does."""
    from flannel_forwarder.leasekeeper import LeaseKeeper
    keeper = LeaseKeeper(None, OWN_IP)
    changes = {}
    put_new = ev.classify(key(PAIR), value6(), here6())
    gone_old = ev.classify(key("10.5.2.0-24"), None, here6())
    for event in (put_new, gone_old):
        keeper._take(event, changes, lambda subnet: None, watched=True)
    assert changes == {NET("10.5.2.0/24"): put_new.peer} and put_new.peer.v6 is not None
    keeper._take(ev.classify(key(PAIR), None, here6()), changes, lambda subnet: None, watched=True)
    assert changes == {NET("10.5.2.0/24"): None}
