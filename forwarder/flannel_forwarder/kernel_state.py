"""The kernel state of the vxlan and host-gw backends, as data (pure: no netlink here).

``desired()`` turns the peer leases into the entries the kernel must hold,
``plan()`` compares them with the entries it holds and says what to change,
in flanneld's order: for a peer on the VXLAN device first the neighbour (ARP)
entry "peer subnet's network address -> VtepMAC", then the FDB entry
"VtepMAC -> PublicIP", then the route "peer subnet via its network address
onlink"; removals in the reverse order (route, FDB, neighbour), so that a
route never points at a next hop the kernel cannot resolve.  kernel.py does
the I/O.

A dual-stack network adds the same entries for each peer's IPv6 part, as
flanneld does: on the IPv6 VXLAN device ``flannel-v6.<VNI>`` the neighbour
"peer's IPv6 subnet's network address -> its BackendV6Data VtepMAC", the FDB
entry "that MAC -> its PublicIPv6" and the onlink route to its IPv6 subnet;
host-gw (or DirectRouting) a route "IPv6 subnet via PublicIPv6". An entry's
family is its address's (an IPv6 neighbour or FDB entry is the IPv6
device's); a peer without an IPv6 part (an IPv4-only host) gets IPv4 entries
only.
"""

from __future__ import annotations

import ipaddress
from typing import Callable, Mapping, NamedTuple, Optional

from ansible_collections.overlay.flannel.plugins.module_utils import backends


class Peer6(NamedTuple):
    """The IPv6 part of a peer lease on a dual-stack network."""
    subnet: ipaddress.IPv6Network
    public_ip: str  # its PublicIPv6
    vtep_mac: Optional[str] = None  # vxlan: BackendV6Data's VtepMAC (the MAC of its flannel-v6.<VNI>)


class VxlanPeer(NamedTuple):
    """A peer lease under a vxlan network."""
    public_ip: str
    vtep_mac: str
    v6: Optional[Peer6] = None  # its IPv6 part (lease_events sets it; None: reached over IPv4 only)


class GwPeer(NamedTuple):
    """A peer lease under a host-gw network."""
    public_ip: str
    v6: Optional[Peer6] = None


class Neigh(NamedTuple):
    dst: str  # the peer subnet's network address
    mac: str


class Fdb(NamedTuple):
    mac: str
    dst: str  # the peer's public IP (its PublicIPv6: an entry of the IPv6 device)


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


def peer6_of(backend, lease):
    """The IPv6 part (Peer6) of a dual-stack lease (one with an IPv6 half) under the network's `backend`; raises
    BackendError when its PublicIPv6 or (vxlan) BackendV6Data cannot be used: the lease's IPv4 side still is."""
    try:
        public_ipv6 = str(ipaddress.IPv6Address(lease.attrs.get("PublicIPv6") or ""))
    except ValueError:
        raise backends.BackendError("PublicIPv6", "PublicIPv6 %r of a lease with an IPv6 subnet is no IPv6 address"
                                    % (lease.attrs.get("PublicIPv6"),)) from None
    mac = None
    if backend["Type"] == backends.VXLAN:
        mac = backends.vxlan_peer(lease.attrs.get("BackendV6Data"), backend["VNI"], "BackendV6Data")
    return Peer6(lease.subnet6, public_ipv6, mac)


def is_ipv6(address):
    """Is this entry's address (a neighbour's or route's destination, an FDB entry's dst) an IPv6 one?"""
    return ":" in address


def on_link(networks):
    """A test `ip -> bool`: is the address (IPv4 or IPv6) inside one of the underlay interface's connected
    networks (of its family)?"""
    nets = [ipaddress.ip_network(n, strict=False) for n in networks]

    def direct(ip):
        addr = ipaddress.ip_address(ip)
        return any(addr.version == net.version and addr in net for net in nets)
    return direct


def desired(backend, peers: Mapping, device: str | None, underlay: str, direct: Callable[[str], bool],
            device6: str | None = None):
    """(State, [unreachable (subnet, public_ip)]) the kernel must hold for `peers` ({subnet: peer}).

    host-gw: a route "subnet via PublicIP" on the underlay for every peer the underlay reaches directly;
    the others are returned as unreachable (host-gw needs one L2 network). vxlan: neighbour, FDB entry and
    onlink route on `device`; with DirectRouting a peer on the underlay's own network gets the host-gw
    route instead. A peer's IPv6 part (peer.v6) gets the same in IPv6: its IPv6 subnet via its PublicIPv6
    (host-gw), or the entries on `device6` (vxlan; None: this host runs no IPv6 side, so none).
    """
    neighs, fdbs, routes, unreachable = set(), set(), set(), []
    btype = backend["Type"]

    def add(subnet, public_ip, mac, dev):
        dst = str(subnet)
        if btype == backends.HOST_GW or (backend.get("DirectRouting") and direct(public_ip)):
            if direct(public_ip):
                routes.add(Route(dst, public_ip, underlay, False))
            else:
                unreachable.append((subnet, public_ip))
            return
        gateway = str(subnet.network_address)
        neighs.add(Neigh(gateway, mac))
        fdbs.add(Fdb(mac, public_ip))
        routes.add(Route(dst, gateway, dev, True))

    for subnet, peer in peers.items():
        add(subnet, peer.public_ip, getattr(peer, "vtep_mac", None), device)
        v6 = getattr(peer, "v6", None)
        if v6 is not None and (btype == backends.HOST_GW or device6 is not None):
            add(v6.subnet, v6.public_ip, v6.vtep_mac, device6)
    return State(frozenset(neighs), frozenset(fdbs), frozenset(routes)), unreachable


def plan(want: State, have: State):
    """The changes that make `have` equal to `want`: [(op, entry)], op "set" (add or replace) or "del".

    Entries are keyed as the kernel keys them (a neighbour by its address, an FDB entry by its MAC on its
    family's device, a route by its destination), so a changed value is one "set" (a replace), never a delete
    and an add.
    """
    def keyed(entries, key):
        return {key(e): e for e in entries}

    out = []
    kinds = ((want.neighs, have.neighs, lambda e: e.dst),
             (want.fdbs, have.fdbs, lambda e: (e.mac, is_ipv6(e.dst))),
             (want.routes, have.routes, lambda e: e.dst))
    dels = []
    for wanted, held, key in kinds:
        w, h = keyed(wanted, key), keyed(held, key)
        out += [("set", e) for k, e in sorted(w.items()) if h.get(k) != e]
        dels.append([("del", e) for k, e in sorted(h.items()) if k not in w])
    for batch in reversed(dels):
        out += batch
    return out
