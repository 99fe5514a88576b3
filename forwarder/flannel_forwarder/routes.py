"""The peer table: host subnets -> (public IP, port), longest-prefix match, anti-spoofing (pure).

Readers (the two data path loops) never lock: every change builds a new
immutable ``_Snapshot`` and swaps one reference, which is atomic in
CPython.  Writers (the etcd watcher, later) serialise on a lock so that
concurrent ``update``/``remove`` calls do not lose each other's changes.
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


def _peer(p) -> Peer:
    if isinstance(p, Peer):
        peer = p
    elif isinstance(p, str):
        host, _, port = p.rpartition(":")
        peer = Peer(host, int(port)) if host else Peer(p)
    else:
        peer = Peer(str(p[0]), int(p[1]))
    ipaddress.IPv4Address(peer.public_ip)  # validate
    if not 0 < peer.port < 65536:
        raise ValueError(f"bad port {peer.port}")
    return peer


class _Snapshot:
    """Immutable lookup structures derived from one {subnet: peer} mapping."""

    __slots__ = ("peers", "by_len", "senders")

    def __init__(self, peers: Mapping[ipaddress.IPv4Network, Peer]):
        self.peers = dict(peers)
        tables: dict[int, dict[int, tuple[str, int]]] = {}
        senders: dict[str, list[tuple[int, int]]] = {}
        for net, peer in self.peers.items():
            mask = int(net.netmask)
            tables.setdefault(net.prefixlen, {})[int(net.network_address)] = peer.sockaddr
            senders.setdefault(peer.public_ip, []).append((int(net.network_address), mask))
        # Longest prefix first; one dict per distinct prefix length.
        self.by_len = tuple(
            ((0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF, tables[plen]) for plen in sorted(tables, reverse=True)
        )
        self.senders = {ip: tuple(nets) for ip, nets in senders.items()}


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
        src = inner_src if isinstance(inner_src, int) else int(ipaddress.IPv4Address(inner_src))
        for net, mask in nets:
            if src & mask == net:
                return True
        return False

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
        net, p = _net(subnet), _peer(peer)
        with self._lock:
            peers = dict(self._snap.peers)
            peers[net] = p
            self._snap = _Snapshot(peers)

    def remove(self, subnet: NetworkLike) -> bool:
        """Forget one subnet; returns whether it was there."""
        net = _net(subnet)
        with self._lock:
            if net not in self._snap.peers:
                return False
            peers = dict(self._snap.peers)
            del peers[net]
            self._snap = _Snapshot(peers)
            return True
