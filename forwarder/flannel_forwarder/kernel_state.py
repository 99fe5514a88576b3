"""The kernel state of the vxlan and host-gw backends, as data (pure: no netlink here).

``desired()`` turns the peer leases into the entries the kernel must hold,
``plan()`` compares them with the entries it holds and says what to change,
in flanneld's order: for a peer on the VXLAN device first the neighbour (ARP)
entry "peer subnet's network address -> VtepMAC", then the FDB entry
"VtepMAC -> PublicIP", then the route "peer subnet via its network address
onlink"; removals in the reverse order (route, FDB, neighbour), so that a
route never points at a next hop the kernel cannot resolve.  kernel.py does
the I/O.
"""

from __future__ import annotations

import ipaddress
from typing import Callable, Mapping, NamedTuple

from ansible_collections.overlay.flannel.plugins.module_utils import backends


class VxlanPeer(NamedTuple):
    """A peer lease under a vxlan network."""
    public_ip: str
    vtep_mac: str


class GwPeer(NamedTuple):
    """A peer lease under a host-gw network."""
    public_ip: str


class Neigh(NamedTuple):
    dst: str  # the peer subnet's network address
    mac: str


class Fdb(NamedTuple):
    mac: str
    dst: str  # the peer's public IP


class Route(NamedTuple):
    dst: str  # "10.5.2.0/24"
    gateway: str
    dev: str  # device name: flannel.<VNI>, or the underlay interface
    onlink: bool


class State(NamedTuple):
    neighs: frozenset
    fdbs: frozenset
    routes: frozenset

    def count(self):
        return {"neighbour": len(self.neighs), "fdb": len(self.fdbs), "route": len(self.routes)}


EMPTY = State(frozenset(), frozenset(), frozenset())


def peer_of(backend, lease):
    """The peer a lease gives under the network's `backend` (normalised); raises BackendError for a lease
    that is of another backend or whose BackendData cannot be used (the caller logs it and skips it)."""
    btype = backend["Type"]
    if not backends.lease_type_matches(btype, lease.attrs.get("BackendType")):
        raise backends.BackendError("BackendType", "lease of a %s host under a %s network"
                                    % (lease.attrs.get("BackendType") or "udp", btype))
    if btype == backends.VXLAN:
        return VxlanPeer(lease.public_ip, backends.vxlan_peer(lease.attrs.get("BackendData"), backend["VNI"]))
    return GwPeer(lease.public_ip)


def on_link(networks):
    """A test `ip -> bool`: is the address inside one of the underlay interface's connected networks?"""
    nets = [ipaddress.IPv4Network(n, strict=False) for n in networks]

    def direct(ip):
        addr = ipaddress.IPv4Address(ip)
        return any(addr in net for net in nets)
    return direct


def desired(backend, peers: Mapping, device: str | None, underlay: str, direct: Callable[[str], bool]):
    """(State, [unreachable (subnet, public_ip)]) the kernel must hold for `peers` ({subnet: peer}).

    host-gw: a route "subnet via PublicIP" on the underlay for every peer the underlay reaches directly;
    the others are returned as unreachable (host-gw needs one L2 network). vxlan: neighbour, FDB entry and
    onlink route on `device`; with DirectRouting a peer on the underlay's own network gets the host-gw
    route instead.
    """
    neighs, fdbs, routes, unreachable = set(), set(), set(), []
    btype = backend["Type"]
    for subnet, peer in peers.items():
        dst = str(subnet)
        if btype == backends.HOST_GW or (backend.get("DirectRouting") and direct(peer.public_ip)):
            if direct(peer.public_ip):
                routes.add(Route(dst, peer.public_ip, underlay, False))
            else:
                unreachable.append((subnet, peer.public_ip))
            continue
        gateway = str(subnet.network_address)
        neighs.add(Neigh(gateway, peer.vtep_mac))
        fdbs.add(Fdb(peer.vtep_mac, peer.public_ip))
        routes.add(Route(dst, gateway, device, True))
    return State(frozenset(neighs), frozenset(fdbs), frozenset(routes)), unreachable


def plan(want: State, have: State):
    """The changes that make `have` equal to `want`: [(op, entry)], op "set" (add or replace) or "del".

    Entries are keyed as the kernel keys them (a neighbour by its address, an FDB entry by its MAC, a
    route by its destination), so a changed value is one "set" (a replace), never a delete and an add.
    """
    def keyed(entries, key):
        return {key(e): e for e in entries}

    out = []
    kinds = ((want.neighs, have.neighs, lambda e: e.dst), (want.fdbs, have.fdbs, lambda e: e.mac),
             (want.routes, have.routes, lambda e: e.dst))
    dels = []
    for wanted, held, key in kinds:
        w, h = keyed(wanted, key), keyed(held, key)
        out += [("set", e) for k, e in sorted(w.items()) if h.get(k) != e]
        dels.append([("del", e) for k, e in sorted(h.items()) if k not in w])
    for batch in reversed(dels):
        out += batch
    return out
