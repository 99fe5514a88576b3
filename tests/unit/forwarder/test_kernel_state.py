"""The kernel state of the vxlan and host-gw backends, as data (kernel_state: desired, plan, peer_of)."""

import ipaddress

import pytest

from ansible_collections.overlay.flannel.plugins.module_utils import backends
from ansible_collections.overlay.flannel.plugins.module_utils.leases import Lease

from flannel_forwarder import kernel_state as ks

VXLAN = backends.normalise({"Type": "vxlan"})
DIRECT = backends.normalise({"Type": "vxlan", "DirectRouting": True})
HOSTGW = backends.normalise({"Type": "host-gw"})
NET = ipaddress.IPv4Network
ON_LINK = ks.on_link(["192.0.2.1/24"])


def lease(subnet, ip, btype="vxlan", data="derive"):
    if data == "derive":
        data = backends.lease_data(VXLAN, ip) if btype == "vxlan" else None
    return Lease("/k/" + subnet, NET(subnet), {"PublicIP": ip, "PublicIPv6": None, "BackendType": btype,
                                               "BackendData": data})


def test_peer_of_each_backend_and_the_leases_it_skips():
    assert ks.peer_of(VXLAN, lease("10.5.2.0/24", "192.0.2.2")) == ks.VxlanPeer(
        "192.0.2.2", backends.vtep_mac("192.0.2.2", 1))
    assert ks.peer_of(HOSTGW, lease("10.5.2.0/24", "192.0.2.2", "host-gw")) == ks.GwPeer("192.0.2.2")
    with pytest.raises(backends.BackendError, match="lease of a udp host under a vxlan network"):
        ks.peer_of(VXLAN, lease("10.5.2.0/24", "192.0.2.2", "udp"))
    with pytest.raises(backends.BackendError, match="lease of a vxlan host under a host-gw network"):
        ks.peer_of(HOSTGW, lease("10.5.2.0/24", "192.0.2.2"))
    with pytest.raises(backends.BackendError, match="VtepMAC"):
        ks.peer_of(VXLAN, lease("10.5.2.0/24", "192.0.2.2", data={"VNI": 1, "VtepMAC": "nope"}))
    with pytest.raises(backends.BackendError, match="not the network's VNI 1"):
        ks.peer_of(VXLAN, lease("10.5.2.0/24", "192.0.2.2", data={"VNI": 2, "VtepMAC": "0e:02:c0:00:02:02"}))


def test_vxlan_desired_state_is_flanneld_shape():
    peers = {NET("10.5.2.0/24"): ks.VxlanPeer("192.0.2.2", "0e:01:c0:00:02:02"),
             NET("10.5.3.0/24"): ks.VxlanPeer("198.51.100.3", "0e:01:c6:33:64:03")}
    state, unreachable = ks.desired(VXLAN, peers, "flannel.1", "eth0", ON_LINK)
    assert unreachable == []
    assert state.neighs == {ks.Neigh("10.5.2.0", "0e:01:c0:00:02:02"), ks.Neigh("10.5.3.0", "0e:01:c6:33:64:03")}
    assert state.fdbs == {ks.Fdb("0e:01:c0:00:02:02", "192.0.2.2"), ks.Fdb("0e:01:c6:33:64:03", "198.51.100.3")}
    assert state.routes == {ks.Route("10.5.2.0/24", "10.5.2.0", "flannel.1", True),
                            ks.Route("10.5.3.0/24", "10.5.3.0", "flannel.1", True)}
    assert state.count() == {"neighbour": 2, "fdb": 2, "route": 2}


def test_direct_routing_routes_peers_on_the_underlay_network_plainly():
    peers = {NET("10.5.2.0/24"): ks.VxlanPeer("192.0.2.2", "0e:01:c0:00:02:02"),
             NET("10.5.3.0/24"): ks.VxlanPeer("198.51.100.3", "0e:01:c6:33:64:03")}
    state, _unreachable = ks.desired(DIRECT, peers, "flannel.1", "eth0", ON_LINK)
    assert state.routes == {ks.Route("10.5.2.0/24", "192.0.2.2", "eth0", False),
                            ks.Route("10.5.3.0/24", "10.5.3.0", "flannel.1", True)}
    assert state.neighs == {ks.Neigh("10.5.3.0", "0e:01:c6:33:64:03")}
    assert state.fdbs == {ks.Fdb("0e:01:c6:33:64:03", "198.51.100.3")}


def test_hostgw_routes_reachable_peers_and_names_the_others():
    peers = {NET("10.5.2.0/24"): ks.GwPeer("192.0.2.2"), NET("10.5.3.0/24"): ks.GwPeer("198.51.100.3")}
    state, unreachable = ks.desired(HOSTGW, peers, None, "eth0", ON_LINK)
    assert state.routes == {ks.Route("10.5.2.0/24", "192.0.2.2", "eth0", False)}
    assert not state.neighs and not state.fdbs
    assert unreachable == [(NET("10.5.3.0/24"), "198.51.100.3")]


def test_plan_orders_adds_neighbour_fdb_route_and_removals_the_other_way():
    old = ks.State(frozenset({ks.Neigh("10.5.9.0", "0e:01:00:00:00:09")}),
                   frozenset({ks.Fdb("0e:01:00:00:00:09", "192.0.2.9")}),
                   frozenset({ks.Route("10.5.9.0/24", "10.5.9.0", "flannel.1", True)}))
    new = ks.State(frozenset({ks.Neigh("10.5.2.0", "0e:01:00:00:00:02")}),
                   frozenset({ks.Fdb("0e:01:00:00:00:02", "192.0.2.2")}),
                   frozenset({ks.Route("10.5.2.0/24", "10.5.2.0", "flannel.1", True)}))
    ops = ks.plan(new, old)
    assert [(op, type(e).__name__) for op, e in ops] == [
        ("set", "Neigh"), ("set", "Fdb"), ("set", "Route"), ("del", "Route"), ("del", "Fdb"), ("del", "Neigh")]
    assert ks.plan(new, new) == []


def test_plan_replaces_a_changed_entry_in_place():
    have = ks.State(frozenset({ks.Neigh("10.5.2.0", "0e:01:00:00:00:02")}), frozenset(),
                    frozenset({ks.Route("10.5.2.0/24", "10.5.2.0", "flannel.1", True)}))
    want = ks.State(frozenset({ks.Neigh("10.5.2.0", "0e:01:00:00:00:22")}), frozenset(),
                    frozenset({ks.Route("10.5.2.0/24", "192.0.2.2", "eth0", False)}))
    assert ks.plan(want, have) == [("set", ks.Neigh("10.5.2.0", "0e:01:00:00:00:22")),
                                   ("set", ks.Route("10.5.2.0/24", "192.0.2.2", "eth0", False))]


def test_on_link():
    direct = ks.on_link(["192.0.2.1/24", "10.214.0.11/24"])
    assert direct("192.0.2.200") and direct("10.214.0.12")
    assert not direct("192.0.3.1")


# -- the IPv6 side of a dual-stack network -------------------------------------------------------------------

NET6 = ipaddress.IPv6Network
ON_LINK6 = ks.on_link(["192.0.2.1/24", "fd00:a::1/64"])
V6A = ks.Peer6(NET6("fd00:5:0:2::/64"), "fd00:a::2", "1e:01:c0:00:02:02")
V6B = ks.Peer6(NET6("fd00:5:0:3::/64"), "fd00:b::3", "5a:1b:2c:3d:4e:60")


def dual_lease(subnet, subnet6, ip, ipv6, btype="vxlan", v6data="derive"):
    found = lease(subnet, ip, btype)
    found.subnet6 = NET6(subnet6)
    found.attrs["PublicIPv6"] = ipv6
    if v6data == "derive":
        v6data = backends.lease_data6(VXLAN, ip)
    if v6data is not None:
        found.attrs["BackendV6Data"] = v6data
    return found


def test_peer6_of_reads_public_ipv6_and_backend_v6_data():
    got = ks.peer6_of(VXLAN, dual_lease("10.5.2.0/24", "fd00:5:0:2::/64", "192.0.2.2", "fd00:a::2"))
    assert got == ks.Peer6(NET6("fd00:5:0:2::/64"), "fd00:a::2", backends.vtep_mac6("192.0.2.2", 1))
    assert ks.peer6_of(HOSTGW, dual_lease("10.5.2.0/24", "fd00:5:0:2::/64", "192.0.2.2", "fd00:a::2", "host-gw",
                                          None)) == ks.Peer6(NET6("fd00:5:0:2::/64"), "fd00:a::2", None)
    with pytest.raises(backends.BackendError, match="BackendV6Data of a vxlan lease must be an object"):
        ks.peer6_of(VXLAN, dual_lease("10.5.2.0/24", "fd00:5:0:2::/64", "192.0.2.2", "fd00:a::2", v6data=None))
    with pytest.raises(backends.BackendError, match="PublicIPv6 'nope' of a lease"):
        ks.peer6_of(VXLAN, dual_lease("10.5.2.0/24", "fd00:5:0:2::/64", "192.0.2.2", "nope"))


def test_vxlan_desired_ipv6_entries_are_flanneld_shape_beside_ipv4_only_peers():
    peers = {NET("10.5.2.0/24"): ks.VxlanPeer("192.0.2.2", "0e:01:c0:00:02:02", V6A),
             NET("10.5.3.0/24"): ks.VxlanPeer("198.51.100.3", "0e:01:c6:33:64:03", V6B),
             NET("10.5.4.0/24"): ks.VxlanPeer("192.0.2.4", "0e:01:c0:00:02:04")}  # an IPv4-only host
    state, unreachable = ks.desired(VXLAN, peers, "flannel.1", "eth0", ON_LINK6, "flannel-v6.1")
    assert unreachable == []
    assert {n for n in state.neighs if ":" in n.dst} == {ks.Neigh("fd00:5:0:2::", V6A.vtep_mac),
                                                         ks.Neigh("fd00:5:0:3::", V6B.vtep_mac)}
    assert {f for f in state.fdbs if ":" in f.dst} == {ks.Fdb(V6A.vtep_mac, "fd00:a::2"),
                                                       ks.Fdb(V6B.vtep_mac, "fd00:b::3")}
    assert {r for r in state.routes if ":" in r.dst} == {
        ks.Route("fd00:5:0:2::/64", "fd00:5:0:2::", "flannel-v6.1", True),
        ks.Route("fd00:5:0:3::/64", "fd00:5:0:3::", "flannel-v6.1", True)}
    assert state.count() == {"neighbour": 5, "fdb": 5, "route": 5}
    # No IPv6 device of ours (an IPv4-only network): the peers' IPv6 parts give nothing.
    state4, _u = ks.desired(VXLAN, peers, "flannel.1", "eth0", ON_LINK6)
    assert state4.count() == {"neighbour": 3, "fdb": 3, "route": 3}


def test_hostgw_and_direct_routing_route_ipv6_subnets_via_public_ipv6():
    peers = {NET("10.5.2.0/24"): ks.GwPeer("192.0.2.2", V6A), NET("10.5.3.0/24"): ks.GwPeer("192.0.2.3", V6B)}
    state, unreachable = ks.desired(HOSTGW, peers, None, "eth0", ON_LINK6)
    assert {r for r in state.routes if ":" in r.dst} == {ks.Route("fd00:5:0:2::/64", "fd00:a::2", "eth0", False)}
    assert unreachable == [(NET6("fd00:5:0:3::/64"), "fd00:b::3")]  # not on the underlay's IPv6 network
    vx = {NET("10.5.2.0/24"): ks.VxlanPeer("192.0.2.2", "0e:01:c0:00:02:02", V6A),
          NET("10.5.3.0/24"): ks.VxlanPeer("198.51.100.3", "0e:01:c6:33:64:03", V6B)}
    state, _u = ks.desired(DIRECT, vx, "flannel.1", "eth0", ON_LINK6, "flannel-v6.1")
    assert {r for r in state.routes if ":" in r.dst} == {
        ks.Route("fd00:5:0:2::/64", "fd00:a::2", "eth0", False),
        ks.Route("fd00:5:0:3::/64", "fd00:5:0:3::", "flannel-v6.1", True)}


def test_plan_keys_fdb_entries_by_mac_per_family():
    # The same MAC on both devices (a peer whose IPv4 and IPv6 VTEPs share one) is two entries, not a replace.
    same = "5a:1b:2c:3d:4e:5f"
    want = ks.State(frozenset(), frozenset({ks.Fdb(same, "192.0.2.2"), ks.Fdb(same, "fd00:a::2")}), frozenset())
    have = ks.State(frozenset(), frozenset({ks.Fdb(same, "192.0.2.2")}), frozenset())
    assert ks.plan(want, have) == [("set", ks.Fdb(same, "fd00:a::2"))]


def test_on_link_of_both_families():
    assert ON_LINK6("fd00:a::99") and ON_LINK6("192.0.2.9")
    assert not ON_LINK6("fd00:b::3") and not ON_LINK6("10.0.0.1")
