"""The peer table: host subnets -> (public IP, port), longest-prefix match, anti-spoofing (pure).

Readers (the two data path loops) never lock: every change builds a new
immutable ``_Snapshot`` and swaps one reference, which is atomic in
CPython.  Writers (the etcd watcher, later) serialise on a lock so that
concurrent ``update``/``remove``/``apply`` calls do not lose each other's
changes.  A change costs a copy of the table's dicts (C speed) plus the
changed subnets, and ``apply`` swaps in many changes at once (the lease
watch gives it each etcd watch response whole).
"""

from __future__ import annotations

import ipaddress
import threading
from typing import Iterable, Mapping, NamedTuple, Union

NetworkLike = Union[str, ipaddress.IPv4Network]


class Peer(NamedTuple):
    public_ip: str
    port: int = 8285

    @property
    def sockaddr(self) -> tuple[str, int]:
        return (self.public_ip, self.port)


def _net(n: NetworkLike) -> ipaddress.IPv4Network:
    net = n if isinstance(n, ipaddress.IPv4Network) else ipaddress.IPv4Network(n, strict=True)
    if net.version != 4:
        raise ValueError(f"not an IPv4 network: {n}")
    return net


def parse_peer(text: str, default_port: int = 8285) -> Peer:
    """``IP[:PORT]`` as a Peer (the port 8285 by default); ValueError when it is not one."""
    host, _colon, port = text.rpartition(":")
    return _valid(Peer(host, int(port)) if host else Peer(text, default_port))


def _peer(p) -> Peer:
    if isinstance(p, str):
        return parse_peer(p)
    return _valid(p if isinstance(p, Peer) else Peer(str(p[0]), int(p[1])))


def _valid(peer: Peer) -> Peer:
    ipaddress.IPv4Address(peer.public_ip)
    if not 0 < peer.port < 65536:
        raise ValueError(f"bad port {peer.port}")
    return peer


class _Snapshot:
    """Immutable lookup structures derived from one {subnet: peer} mapping.

    ``by_len``: (mask, {network int: sockaddr}) per distinct prefix length,
    longest first: a lookup costs one dict probe per prefix length (one for a
    flannel network, whose leases all have its SubnetLen), whatever the
    number of peers.  ``senders``: public IP -> its (network, mask) pairs.
    A change derives the next snapshot from this one (``derive``): C-level
    dict copies and work for the changed subnets only, never a rebuild.
    """

    __slots__ = ("peers", "tables", "by_len", "senders")

    def __init__(self, peers: Mapping[ipaddress.IPv4Network, Peer], _derived=None):
        if _derived is not None:
            self.peers, self.tables, self.senders = _derived
        else:
            self.peers = dict(peers)
            self.tables: dict[int, dict[int, tuple[str, int]]] = {}
            senders: dict[str, list[tuple[int, int]]] = {}
            for net, peer in self.peers.items():
                self.tables.setdefault(net.prefixlen, {})[int(net.network_address)] = peer.sockaddr
                senders.setdefault(peer.public_ip, []).append((int(net.network_address), _mask(net.prefixlen)))
            self.senders = {ip: tuple(nets) for ip, nets in senders.items()}
        # Longest prefix first; one dict per distinct prefix length.
        self.by_len = tuple((_mask(plen), self.tables[plen]) for plen in sorted(self.tables, reverse=True))

    def derive(self, changes: Mapping[ipaddress.IPv4Network, Peer | None]) -> "_Snapshot":
        """The snapshot with `changes` applied (a Peer: set; None: remove)."""
        peers = dict(self.peers)
        tables = dict(self.tables)
        senders = dict(self.senders)
        copied: set = set()

        def table(plen):
            if plen not in copied:
                tables[plen] = dict(tables.get(plen, ()))
                copied.add(plen)
            return tables[plen]

        for net, peer in changes.items():
            old = peers.get(net)
            if old == peer:
                continue
            network, plen = int(net.network_address), net.prefixlen
            pair = (network, _mask(plen))
            if old is not None:
                kept = tuple(p for p in senders[old.public_ip] if p != pair)
                if kept:
                    senders[old.public_ip] = kept
                else:
                    del senders[old.public_ip]
            if peer is None:
                del peers[net]
                t = table(plen)
                del t[network]
                if not t:
                    del tables[plen]
                continue
            peers[net] = peer
            table(plen)[network] = peer.sockaddr
            senders[peer.public_ip] = senders.get(peer.public_ip, ()) + (pair,)
        return _Snapshot(None, _derived=(peers, tables, senders))


def source_allowed(nets, src: int) -> bool:
    """The anti-spoofing rule: may a sender whose subnets are *nets* ((network, mask) int pairs, from
    ``PeerTable.sender_subnets``) send packets from the inner source address *src* (a 32-bit int)?"""
    for net, mask in nets:
        if src & mask == net:
            return True
    return False


def _mask(plen: int) -> int:
    return (0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF


class PeerTable:
    """Maps host subnets to peers; safe to read from the data path while another thread writes."""

    def __init__(self, peers: Mapping[NetworkLike, object] | Iterable = ()):
        self._lock = threading.Lock()
        self._snap = _Snapshot(self._normalise(peers))

    @staticmethod
    def _normalise(peers) -> dict:
        items = peers.items() if isinstance(peers, Mapping) else peers
        return {_net(n): _peer(p) for n, p in items}

    # -- reads (lock-free) -------------------------------------------------

    def lookup(self, dst: int):
        """The (public_ip, port) of the peer whose subnet holds *dst* (a 32-bit int), or None."""
        for mask, table in self._snap.by_len:
            hit = table.get(dst & mask)
            if hit is not None:
                return hit
        return None

    def lookup_address(self, address) -> tuple[str, int] | None:
        return self.lookup(int(ipaddress.IPv4Address(address)))

    def sender_subnets(self, public_ip: str):
        """The (network, mask) int pairs a datagram from *public_ip* may carry sources from, or None."""
        return self._snap.senders.get(public_ip)

    def accepts(self, public_ip: str, inner_src) -> bool:
        """Anti-spoofing: is *public_ip* a known peer and *inner_src* inside one of its subnets?"""
        nets = self._snap.senders.get(str(public_ip))
        if nets is None:
            return False
        return source_allowed(nets, inner_src if isinstance(inner_src, int) else int(ipaddress.IPv4Address(inner_src)))

    def snapshot(self) -> dict[ipaddress.IPv4Network, Peer]:
        return dict(self._snap.peers)

    def __len__(self) -> int:
        return len(self._snap.peers)

    def __contains__(self, subnet) -> bool:
        return _net(subnet) in self._snap.peers

    # -- writes (atomic swap) ----------------------------------------------

    def replace(self, peers) -> None:
        """Replace the whole table (e.g. after an etcd re-list)."""
        new = _Snapshot(self._normalise(peers))
        with self._lock:
            self._snap = new

    def update(self, subnet: NetworkLike, peer) -> None:
        """Add or change the peer of one subnet."""
        self.apply({_net(subnet): _peer(peer)})

    def remove(self, subnet: NetworkLike) -> bool:
        """Forget one subnet; returns whether it was there."""
        return bool(self.apply({_net(subnet): None}))

    def apply(self, changes) -> list[ipaddress.IPv4Network]:
        """Set and remove many subnets in one swap: `changes` maps (or lists pairs of) subnet -> peer, or None
        to remove it (of a list, the last pair of a subnet counts).  Returns the removed subnets that were
        there.  The cost is one copy of the table plus the changed subnets, however many they are."""
        items = changes.items() if isinstance(changes, Mapping) else changes
        norm = {_net(n): (None if p is None else _peer(p)) for n, p in items}
        with self._lock:
            snap = self._snap
            removed = [net for net, p in norm.items() if p is None and net in snap.peers]
            if any(snap.peers.get(net) != p for net, p in norm.items()):
                self._snap = snap.derive(norm)
            return removed
