"""Dual-stack networks against a real etcd: the network module's IPv6 options, pairs of subnets leased in one key,
no duplicate in either family under concurrency, keys rewritten in one transaction when a network turns
dual-stack and back, reservations, relets onto a named half, subnet_info."""

import ipaddress
import json

import pytest

from ansible_collections.overlay.flannel.plugins.module_utils.etcd_client import delete, put
from ansible_collections.overlay.flannel.plugins.module_utils.leases import ExhaustedError
from support.modules import lease_keys, run_module
from support.racing import acquire_all

DUAL = dict(network="10.5.0.0/16", ipv6_network="fd00:5::/48", backend={"type": "vxlan"})
V4_VXLAN = dict(network="10.5.0.0/16", backend={"type": "vxlan"})


def stored(client, prefix):
    return json.loads(client.get(prefix + "/config").value)


def claims(client, prefix):
    _rev, kvs = client.get_prefix(prefix + "/claims/")
    return {kv.key.rsplit("/", 1)[1]: kv.value.decode() for kv in kvs}


def key_name(res):
    return res["lease_key"].rsplit("/", 1)[1]


def at_revision(server, key, revision):
    """The value of `key` at `revision` (etcd's history), or None."""
    out = server.etcdctl("get", key, "--rev=%d" % revision, "--print-value-only")
    return out.strip() or None


def test_network_module_dual_stack_idempotent_check_mode_diff_and_aliases(etcd, client, prefix):
    check = run_module("network", dict(etcd, **DUAL), check=True, diff=True)
    assert check["changed"] and client.get(prefix + "/config") is None
    assert json.loads(check["diff"]["after"])["IPv6Network"] == "fd00:5::/48"
    made = run_module("network", dict(etcd, **DUAL))
    assert made["changed"], made
    assert stored(client, prefix) == {
        "Network": "10.5.0.0/16", "SubnetLen": 24, "SubnetMin": "10.5.1.0", "SubnetMax": "10.5.255.0",
        "Backend": {"Type": "vxlan", "VNI": 1, "Port": 0, "GBP": False, "Learning": False, "DirectRouting": False},
        "EnableIPv6": True, "IPv6Network": "fd00:5::/48", "IPv6SubnetLen": 64, "IPv6SubnetMin": "fd00:5:0:1::",
        "IPv6SubnetMax": "fd00:5:0:ffff::"}
    assert made["config"] == stored(client, prefix)
    # The same by meaning, under flanneld's key names (aliases), with defaults written out: no change.
    same = run_module("network", dict(etcd, Network="10.5.0.0/16", EnableIPv4=True, EnableIPv6=True,
                                      IPv6Network="fd00:5:0::/48", IPv6SubnetLen=64, IPv6SubnetMin="fd00:5:0:1::/64",
                                      backend={"Type": "vxlan"}))
    assert same["changed"] is False, same
    # A stored text spelled otherwise (order, spacing, implicit defaults) is no change either, and stays as it is.
    text = '{"Backend": {"Type": "vxlan"},  "IPv6Network": "fd00:5::/48", "EnableIPv6": true, "Network": "10.5.0.0/16"}'
    client.txn([], [put(prefix + "/config", text)])
    assert run_module("network", dict(etcd, **DUAL))["changed"] is False
    assert client.get(prefix + "/config").value.decode() == text
    change = run_module("network", dict(etcd, ipv6_subnet_len=80, **DUAL), check=True, diff=True)
    assert change["changed"] and json.loads(change["diff"]["before"])["IPv6Network"] == "fd00:5::/48"
    assert json.loads(change["diff"]["after"])["IPv6SubnetLen"] == 80
    assert client.get(prefix + "/config").value.decode() == text


@pytest.mark.parametrize("args, words", [
    (dict(network="10.5.0.0/16", ipv6_network="fd00:5::/48"),
     "enable_ipv6 with backend.type: the udp backend has no IPv6"),
    (dict(DUAL, ipv6_subnet_len=127), "ipv6_subnet_len: IPv6SubnetLen must be less than /127"),
    (dict(DUAL, ipv6_subnet_len=40), "ipv6_subnet_len: IPv6Network fd00:5::/48 must be able to accommodate"),
    (dict(DUAL, ipv6_network="fd00::/125"), "ipv6_network: IPv6Network fd00::/125 is too small"),
    (dict(DUAL, ipv6_network="fd00:5::1/48"), "ipv6_network 'fd00:5::1/48' has host bits set"),
    (dict(DUAL, ipv6_subnet_min="fd00:6::"), "ipv6_subnet_min: IPv6SubnetMin fd00:6:: is not in the range"),
    (dict(DUAL, ipv6_subnet_max="fd00:5:0:1::8"), "ipv6_subnet_max: IPv6SubnetMax fd00:5:0:1::8 is not on a"),
    (dict(V4_VXLAN, enable_ipv6=True), "ipv6_network: IPv6Network is required with EnableIPv6"),
    (dict(V4_VXLAN, ipv6_subnet_len=64), "ipv6_subnet_len given, but the network is IPv4-only (no ipv6_network)"),
    (dict(DUAL, enable_ipv6=False), "ipv6_network given, but the network is IPv4-only (enable_ipv6 false)"),
    (dict(DUAL, enable_ipv4=False), "enable_ipv4: EnableIPv4 false (an IPv6-only network) is not supported"),
])
def test_network_module_refuses_by_flannels_rules_naming_the_option(etcd, client, prefix, args, words):
    res = run_module("network", dict(etcd, **args))
    assert res.get("failed") and words in res["msg"], res["msg"]
    assert client.get(prefix + "/config") is None


@pytest.fixture
def dual_net(etcd):
    assert run_module("network", dict(etcd, **DUAL))["changed"]
    return etcd


def test_subnet_leases_a_pair_in_one_key_and_keeps_it(dual_net, client, prefix):
    first = run_module("subnet", dict(dual_net, public_ip="192.0.2.10", public_ipv6="2001:db8::10"), diff=True)
    assert first["changed"] and first["action"] == "create", first
    v4, v6 = ipaddress.IPv4Network(first["subnet"]), ipaddress.IPv6Network(first["ipv6_subnet"])
    assert key_name(first) == "%s-24&%s-64" % (v4.network_address, v6.network_address)
    assert first["ipv6_subnet_gateway"] == "%s/64" % (v6.network_address + 1)
    assert (first["ipv6_network"], first["network"]) == ("fd00:5::/48", "10.5.0.0/16")
    assert first["diff"]["after"]["ipv6_subnet"] == first["ipv6_subnet"]
    kv = lease_keys(client, prefix)[key_name(first)]
    assert json.loads(kv.value) == {
        "PublicIP": "192.0.2.10", "PublicIPv6": "2001:db8::10", "BackendType": "vxlan",
        "BackendData": {"VNI": 1, "VtepMAC": "0e:01:c0:00:02:0a"},
        "BackendV6Data": {"VNI": 1, "VtepMAC": "1e:01:c0:00:02:0a"}}
    assert kv.lease != 0
    # Both halves are claimed in the same transaction, on the same etcd lease.
    for half in ("%s-64" % v6.network_address, "%s-24" % v4.network_address):
        claim = client.get(prefix + "/claims/" + half)
        assert claim.value.decode() == first["lease_key"] and claim.lease == kv.lease
        assert claim.mod_revision == kv.mod_revision
    again = run_module("subnet", dict(dual_net, public_ip="192.0.2.10", public_ipv6="2001:db8::10"))
    assert again["changed"] is False and again["action"] == "keep", again
    assert (again["subnet"], again["ipv6_subnet"]) == (first["subnet"], first["ipv6_subnet"])
    # Retired, then back with its previous pair (subnet.env's FLANNEL_SUBNET and FLANNEL_IPV6_SUBNET forms).
    gone = run_module("subnet", dict(dual_net, public_ip="192.0.2.10", state="absent"))
    assert gone["released"] == [first["subnet"]] and gone["released_ipv6"] == [first["ipv6_subnet"]]
    assert lease_keys(client, prefix) == {} and claims(client, prefix) == {}
    back = run_module("subnet", dict(dual_net, public_ip="192.0.2.10", public_ipv6="2001:db8::10",
                                     previous_subnet=first["subnet_gateway"],
                                     previous_ipv6_subnet=first["ipv6_subnet_gateway"]))
    assert (back["subnet"], back["ipv6_subnet"]) == (first["subnet"], first["ipv6_subnet"])
    missing = run_module("subnet", dict(dual_net, public_ip="192.0.2.11"))
    assert missing["failed"] and "public_ipv6 is required" in missing["msg"] and "dual-stack" in missing["msg"]
    bad = run_module("subnet", dict(dual_net, public_ip="192.0.2.11", public_ipv6="192.0.2.11"))
    assert bad["failed"] and "public_ipv6 '192.0.2.11' is not an IPv6 address" in bad["msg"]
    assert list(lease_keys(client, prefix)) == [key_name(back)]


def test_subnet_info_shows_both_halves(dual_net, client, prefix):
    run_module("subnet", dict(dual_net, public_ip="192.0.2.1", public_ipv6="2001:db8::1", subnet="10.5.1.0/24",
                              ipv6_subnet="fd00:5:0:1::/64"))
    # A flanneld-style IPv4-only lease beside it (written before the network turned dual-stack).
    client.txn([], [put(prefix + "/subnets/10.5.2.0-24",
                        '{"PublicIP":"192.0.2.2","PublicIPv6":null,"BackendType":"vxlan","BackendData":null}')])
    info = run_module("subnet_info", dual_net)
    assert info["config"]["IPv6Network"] == "fd00:5::/48"
    first, second = info["leases"]
    assert (first["subnet"], first["ipv6_subnet"], first["public_ipv6"]) == \
        ("10.5.1.0/24", "fd00:5:0:1::/64", "2001:db8::1")
    assert first["key"] == prefix + "/subnets/10.5.1.0-24&fd00:5:0:1::-64"
    assert second["subnet"] == "10.5.2.0/24" and "ipv6_subnet" not in second
    only = run_module("subnet_info", dict(dual_net, subnet="fd00:5:0:1::/64"))
    assert [e["subnet"] for e in only["leases"]] == ["10.5.1.0/24"]


def test_ipv4_to_dual_stack_rekeys_in_one_transaction_and_back(etcd, etcd_server, client, prefix):
    assert run_module("network", dict(etcd, **V4_VXLAN))["changed"]
    lease = run_module("subnet", dict(etcd, public_ip="192.0.2.10", subnet="10.5.10.0/24", public_ipv6="2001:db8::10"))
    resv = run_module("subnet", dict(etcd, public_ip="192.0.2.20", subnet="10.5.20.0/24", ttl=0))
    assert key_name(lease) == "10.5.10.0-24" and lease["ipv6_subnet"] is None
    # An IPv4-only network ignores public_ipv6: the value is the IPv4-only one.
    assert json.loads(lease_keys(client, prefix)["10.5.10.0-24"].value)["PublicIPv6"] is None
    old_lease_id = lease_keys(client, prefix)["10.5.10.0-24"].lease

    turned = run_module("network", dict(etcd, **DUAL))
    assert turned["changed"] and turned["stranded_leases"] == [], turned
    check = run_module("subnet", dict(etcd, public_ip="192.0.2.10", public_ipv6="2001:db8::10"), check=True)
    assert check["changed"] and check["action"] == "update" and "10.5.10.0-24" in lease_keys(client, prefix)
    up = run_module("subnet", dict(etcd, public_ip="192.0.2.10", public_ipv6="2001:db8::10"), diff=True)
    assert up["changed"] and up["action"] == "update" and up["subnet"] == "10.5.10.0/24", up
    assert up["released"] == [] and up["diff"]["before"]["key"] == prefix + "/subnets/10.5.10.0-24"
    new = lease_keys(client, prefix)[key_name(up)]
    assert "10.5.10.0-24" not in lease_keys(client, prefix)
    # One transaction: the old key's delete and the new key's put are one etcd revision.
    rev = new.mod_revision
    assert at_revision(etcd_server, prefix + "/subnets/10.5.10.0-24", rev - 1) is not None
    assert at_revision(etcd_server, up["lease_key"], rev - 1) is None
    assert at_revision(etcd_server, prefix + "/subnets/10.5.10.0-24", rev) is None
    assert at_revision(etcd_server, up["lease_key"], rev) is not None
    assert new.lease == old_lease_id  # the etcd lease (its TTL) goes with the subnet
    # The reservation the same way, still a reservation.
    resv_up = run_module("subnet", dict(etcd, public_ip="192.0.2.20", public_ipv6="2001:db8::20", ttl=0))
    assert resv_up["action"] == "update" and resv_up["subnet"] == "10.5.20.0/24" and resv_up["ttl"] == 0
    assert lease_keys(client, prefix)[key_name(resv_up)].lease == 0
    assert claims(client, prefix)[resv_up["ipv6_subnet"].replace("/", "-")] == resv_up["lease_key"]
    assert run_module("subnet", dict(etcd, public_ip="192.0.2.20", public_ipv6="2001:db8::20", ttl=0))["changed"] \
        is False

    # Back to IPv4-only: the same subnets under their IPv4-only keys, the claims gone.
    assert run_module("network", dict(etcd, **V4_VXLAN))["stranded_leases"] == []
    down = run_module("subnet", dict(etcd, public_ip="192.0.2.10"))
    assert (down["action"], down["subnet"], down["ipv6_subnet"]) == ("update", "10.5.10.0/24", None), down
    assert down["released_ipv6"] == [up["ipv6_subnet"]]
    down_resv = run_module("subnet", dict(etcd, public_ip="192.0.2.20", ttl=0))
    assert down_resv["action"] == "update" and down_resv["ttl"] == 0
    kvs = lease_keys(client, prefix)
    assert sorted(kvs) == ["10.5.10.0-24", "10.5.20.0-24"] and kvs["10.5.20.0-24"].lease == 0
    assert json.loads(kvs["10.5.10.0-24"].value) == {"PublicIP": "192.0.2.10", "PublicIPv6": None,
                                                     "BackendType": "vxlan",
                                                     "BackendData": {"VNI": 1, "VtepMAC": "0e:01:c0:00:02:0a"}}
    assert claims(client, prefix) == {}


def test_relet_onto_a_named_half_keeps_the_other(dual_net, client, prefix):
    base = dict(dual_net, public_ip="192.0.2.10", public_ipv6="2001:db8::10")
    run_module("subnet", dict(dual_net, public_ip="192.0.2.9", public_ipv6="2001:db8::9", subnet="10.5.9.0/24",
                              ipv6_subnet="fd00:5:0:9::/64"))
    a = run_module("subnet", dict(base, subnet="10.5.10.0/24", ipv6_subnet="fd00:5:0:10::/64"))
    assert key_name(a) == "10.5.10.0-24&fd00:5:0:10::-64"
    six = run_module("subnet", dict(base, ipv6_subnet="fd00:5:0:11::/64"))
    assert (six["action"], six["subnet"], six["ipv6_subnet"]) == ("update", "10.5.10.0/24", "fd00:5:0:11::/64")
    assert six["released"] == [] and six["released_ipv6"] == ["fd00:5:0:10::/64"]
    four = run_module("subnet", dict(base, subnet="10.5.12.0/24"))
    assert (four["subnet"], four["ipv6_subnet"], four["released"]) == ("10.5.12.0/24", "fd00:5:0:11::/64",
                                                                       ["10.5.10.0/24"])
    # A half that is not named is kept only when it is free: a flanneld host (which writes no claims) holds the
    # host's IPv6 half too; the host named onto another IPv4 subnet gets a free IPv6 half, never that one.
    flanneld = prefix + "/subnets/10.5.30.0-24&fd00:5:0:11::-64"
    client.txn([], [put(flanneld, json.dumps({"PublicIP": "192.0.2.30", "PublicIPv6": "2001:db8::30",
                                              "BackendType": "vxlan", "BackendData": None}))])
    chosen = run_module("subnet", dict(base, subnet="10.5.13.0/24"))
    assert (chosen["subnet"], chosen["released"]) == ("10.5.13.0/24", ["10.5.12.0/24"]), chosen
    assert chosen["ipv6_subnet"] not in ("fd00:5:0:11::/64", "fd00:5:0:9::/64", None), chosen
    assert chosen["released_ipv6"] == ["fd00:5:0:11::/64"] and chosen["action"] == "create", chosen
    client.txn([], [delete(flanneld)])
    four = chosen
    taken = run_module("subnet", dict(base, ipv6_subnet="fd00:5:0:9::/64"))
    assert taken["failed"] and "IPv6 subnet fd00:5:0:9::/64 is leased to 192.0.2.9" in taken["msg"]
    outside = run_module("subnet", dict(base, ipv6_subnet="fd00:6::/64"))
    assert outside["failed"] and "IPv6 subnet fd00:6::/64 is not a leasable subnet of fd00:5::/48" in outside["msg"]
    moved = run_module("subnet", dict(base, relet=True))
    assert moved["action"] == "relet" and moved["subnet"] != four["subnet"]
    assert moved["ipv6_subnet"] != four["ipv6_subnet"] and moved["released_ipv6"] == [four["ipv6_subnet"]]
    assert sorted(lease_keys(client, prefix)) == sorted(["10.5.9.0-24&fd00:5:0:9::-64", key_name(moved)])
    assert claims(client, prefix) == {"10.5.9.0-24": prefix + "/subnets/10.5.9.0-24&fd00:5:0:9::-64",
                                      "fd00:5:0:9::-64": prefix + "/subnets/10.5.9.0-24&fd00:5:0:9::-64",
                                      moved["subnet"].replace("/", "-"): moved["lease_key"],
                                      moved["ipv6_subnet"].replace("/", "-"): moved["lease_key"]}


def test_hosts_leasing_at_once_never_share_a_subnet_of_either_family(etcd, etcd_server, prefix, client):
    # 255 IPv4 /24s but 15 IPv6 /124s: racing hosts often pick distinct IPv4 subnets and a common IPv6 one (or the
    # reverse), which the key's own guard cannot see; the claims make one of them lose.
    assert run_module("network", dict(etcd, network="10.5.0.0/16", ipv6_network="fd00::/120", ipv6_subnet_len=124,
                                      backend={"type": "vxlan"}))["changed"]
    hosts = [("192.0.2.%d" % i, "2001:db8::%x" % i) for i in range(1, 21)]
    results = acquire_all(etcd_server, prefix, hosts, backend_type="vxlan")
    won = [r for r in results.values() if not isinstance(r, Exception)]
    lost = [r for r in results.values() if isinstance(r, Exception)]
    assert len(won) == 15, lost[:3]
    for exc in lost:
        assert isinstance(exc, ExhaustedError) and str(exc) == "no free IPv6 subnet in fd00::10/124..fd00::f0/124 " \
            "(15 leased)", exc
    assert len(set(r.lease.subnet for r in won)) == 15 and len(set(r.lease.subnet6 for r in won)) == 15
    kvs = lease_keys(client, prefix)
    assert sorted(kvs) == sorted(r.lease.key.rsplit("/", 1)[1] for r in won)
    v6 = [name.split("&")[1] for name in kvs]
    assert len(set(v6)) == 15
    assert claims(client, prefix) == dict([(str(r.lease.subnet).replace("/", "-"), r.lease.key) for r in won] +
                                          [(str(r.lease.subnet6).replace("/", "-"), r.lease.key) for r in won])
    for ip, r in results.items():
        if not isinstance(r, Exception):
            assert json.loads(kvs[r.lease.key.rsplit("/", 1)[1]].value)["PublicIP"] == ip
