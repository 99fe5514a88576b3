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
