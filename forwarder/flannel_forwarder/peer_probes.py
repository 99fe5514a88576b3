"""Peer probes: every peer's gateway pinged through the overlay, small and at full MTU with DF.

What it tells: whether this host reaches each peer's containers now, the
round-trip time, and whether a peer answers small pings but not full-size
ones (an MTU black hole: a hop between the hosts that cannot carry the
encapsulated packets, the classic flannel breaker). Probes observe only:
they never touch routes, leases or the peer table.

The target is the peer subnet's gateway (its first address, docker0 there),
the source this host's gateway (bound with IP_FREEBIND, so the socket opens
before docker0 holds the address), so a probe and its answer take the path
containers' packets take, in both directions.

Pure parts (tested in tests/unit/forwarder/test_peer_probes.py):

* ``round_period``/``schedule``: each peer gets one slot per round (a small
  and a full-size echo, back to back); the round lasts the probe interval,
  or longer when the peers are many, so the total rate stays at most
  MAX_RATE probes a second (1000 peers: a 100 s round, never 1000 probes a
  second); slots are spread evenly, each jittered by a quarter slot, in a
  fresh random order each round. While a peer's state is unknown (the
  daemon just started, a peer just joined) or changed in the last SETTLE
  seconds (docker0 comes up on the hosts after their forwarders) rounds
  come every FAST seconds, so a state is known within seconds, still
  within MAX_RATE.
* ``classify``: the state of a peer from its last rounds.
* the ICMP echo and what counts as its answer (from the probed address,
  the payload we sent, byte for byte): module_utils/underlay.py, shared
  with site.yml's preflight.

The I/O part (``Prober``): one thread, one ICMP socket. The thread wakes
only for a slot (its two echoes go out together) and at the end of a round:
the answers wait in the socket meanwhile and are taken in one go at the
next wake, their round-trip times and deadlines judged by the kernel's
receive timestamps (SO_TIMESTAMPNS), so that a thread that shares the
interpreter with the udp backend's packet loop takes it from the loop as
seldom as it can: twice a round for one peer, about a millisecond of CPU a
round in all, most of it the status file (bench/README.md). Preferred: an
unprivileged ICMP socket (SOCK_DGRAM, IPPROTO_ICMP), which needs no
capability but needs the daemon's group (root: 0) in
net.ipv4.ping_group_range (Debian 13's systemd sets 0-2147483647; Debian 12
leaves the kernel's "1 0", nobody); else a raw socket, which needs
CAP_NET_RAW. The socket in use is on /metrics (peer_probe_socket_info).
"""

from __future__ import annotations

import errno
import ipaddress
import json
import logging
import os
import random
import socket
import struct
import threading
import time
from typing import NamedTuple

from ansible_collections.overlay.flannel.plugins.module_utils.underlay import (
    ECHO_REPLY,
    IP_MTU_DISCOVER,
    IP_PMTUDISC_PROBE,
    echo_payload,
    echo_request,
    parse_reply,
)

from .files import write_atomic
from .threads import name_thread

log = logging.getLogger("flannel_forwarder.probes")

MAX_RATE = 20.0  # probes (echo requests) a second, all peers together
PROBES_PER_SLOT = 2  # small, then full size
JITTER = 0.25  # of a slot, either way
CONFIRM = 2  # rounds a failure must last before a peer is down / an MTU black hole
TIMEOUT = 1.0  # seconds an answer may take
FAST = 1.0  # seconds between rounds while a peer's state is unknown or changed lately, MAX_RATE still holding
SETTLE = 60.0  # seconds after a peer's state changed during which rounds stay FAST
SMALL = 84  # bytes of the small probe's IP packet (ping's default: 56 bytes of data)

UP, DOWN, MTU, UNKNOWN = "up", "down", "mtu", "unknown"
STATES = (UP, DOWN, MTU, UNKNOWN)
STATUS_VERSION = 1

IP_FREEBIND = 15  # <linux/in.h>
SO_TIMESTAMPNS = 35  # <asm-generic/socket.h>, = SCM_TIMESTAMPNS: each datagram's arrival (CLOCK_REALTIME) beside it
_TIMESPEC = struct.Struct("@ll")  # struct timespec (64-bit time_t)
SOL_RAW, ICMP_FILTER = 255, 1  # <linux/icmp.h>: a raw ICMP socket's mask of the types it does not take
RECEIVE_MAX = 1024  # answers taken in one wake at most (the rest at the next)


# --- pure: schedule ---------------------------------------------------------------------------------------------

def round_period(peers, interval, max_rate=MAX_RATE):
    """Seconds a round over `peers` peers lasts: the interval, or longer so the rate stays within max_rate."""
    return max(float(interval), peers * PROBES_PER_SLOT / float(max_rate))


def schedule(targets, period, rng=random):
    """[(offset seconds from the round's start, target)]: one slot per target, in a random order, spaced
    period/len(targets) apart, each moved by up to JITTER of a slot either way (so hosts that started
    together drift apart); sorted by offset. Consecutive slots are at least half a slot apart, also
    across rounds (the last slot ends before the next round's first)."""
    order = list(targets)
    rng.shuffle(order)
    if not order:
        return []
    slot = period / len(order)
    return [((i + 0.5 + rng.uniform(-JITTER, JITTER)) * slot, t) for i, t in enumerate(order)]


# --- pure: state ------------------------------------------------------------------------------------------------

class Result(NamedTuple):
    """One round's outcome for one peer."""
    small: bool  # the small echo was answered
    full: bool  # the full-size (DF) echo was answered
    rtt: float | None = None  # seconds, of the small echo


def classify(history, confirm=CONFIRM):
    """The state of a peer from its results, oldest first: up as soon as a full-size echo was answered
    within the last `confirm` rounds; down / mtu only when no full-size echo was answered in `confirm`
    rounds (mtu: a small one was); unknown before that many rounds without a success."""
    recent = list(history)[-confirm:]
    if any(r.full for r in recent):
        return UP
    if len(recent) < confirm:
        return UNKNOWN
    return MTU if any(r.small for r in recent) else DOWN


def count_states(states):
    """{state: number of peers in it}, every state present."""
    counts = dict((s, 0) for s in STATES)
    for s in states:
        counts[s] += 1
    return counts


# --- pure: the rest -------------------------------------------------------------------------------------------

def gateway(subnet):
    """The first address of a subnet: docker0's there (FLANNEL_SUBNET's address)."""
    net = ipaddress.ip_network(str(subnet))
    return str(net.network_address + 1)


def status(host, peers, now):
    """The status file's content: this host, then each peer's state ({subnet: PeerState}), and counts."""
    rows = []
    for subnet, p in sorted(peers.items(), key=lambda kv: ipaddress.ip_network(kv[0])):
        rows.append({"subnet": subnet, "public_ip": p.public_ip, "gateway": p.gateway, "state": p.state,
                     "rtt_ms": None if p.rtt is None else round(p.rtt * 1000.0, 3),
                     "small_ok": p.last.small if p.last else None, "full_ok": p.last.full if p.last else None,
                     "since": p.since, "rounds": p.rounds})
    body = dict(host, version=STATUS_VERSION, updated=round(now, 3), peers=rows,
                counts=count_states(p.state for p in peers.values()))
    return json.dumps(body, indent=1, sort_keys=True) + "\n"


# --- I/O --------------------------------------------------------------------------------------------------------

class PeerState:
    __slots__ = ("public_ip", "gateway", "history", "state", "rtt", "since", "rounds", "last", "changed")

    def __init__(self, public_ip, gw, now):
        self.public_ip, self.gateway = public_ip, gw
        self.history = ()  # the last CONFIRM results, oldest first (a tuple: a deque's block is 0.5 KB a peer)
        self.state, self.rtt, self.since, self.rounds, self.last = UNKNOWN, None, round(now, 3), 0, None
        self.changed = time.monotonic()  # of the last change of state


def open_socket(source):
    """(socket, kind, has IP header): an unprivileged ICMP socket, else a raw one (CAP_NET_RAW). DF is set on
    every probe, whatever the route's cached path MTU (IP_PMTUDISC_PROBE); bound to `source` when the kernel
    lets it (IP_FREEBIND: docker0 may not hold it yet)."""
    try:
        sock, kind, raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP), "icmp_dgram", False
    except PermissionError:
        sock, kind, raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP), "raw", True
    sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_PROBE)
    sock.setsockopt(socket.IPPROTO_IP, IP_FREEBIND, 1)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    if raw:  # a raw socket gets a copy of every ICMP packet the host receives: only echo replies queue
        sock.setsockopt(SOL_RAW, ICMP_FILTER, struct.pack("I", 0xFFFFFFFF & ~(1 << ECHO_REPLY)))
    try:
        sock.bind((source, 0))
    except OSError as exc:
        log.info("probes: cannot bind to %s (%s): the kernel chooses the source address", source, exc)
    sock.setblocking(False)
    return sock, kind, raw


def arrival(ancillary, clock, sent):
    """The monotonic time a datagram arrived: its SCM_TIMESTAMPNS (realtime) moved by `clock` (monotonic -
    realtime), kept between `sent` and now (a clock step meanwhile); now when it carries none."""
    now = time.monotonic()
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= _TIMESPEC.size:
            sec, nsec = _TIMESPEC.unpack_from(data)
            return min(now, max(sent, sec + nsec * 1e-9 + clock))
    return now


class Prober:
    """Probes the peers of `peers` (a backend's peer table: snapshot() -> {subnet: peer with .public_ip})
    from this host's gateway, every `interval` seconds (or at MAX_RATE), and writes `status_file`."""

    def __init__(self, peers, own_subnet, mtu, interval, status_file="", host=None, rng=None):
        self.table = peers
        self.source = gateway(own_subnet)
        self.mtu = mtu
        self.interval = interval
        self.status_file = status_file
        self.host = dict(host or {}, subnet=str(own_subnet), gateway=self.source, mtu=mtu, interval=interval)
        self.rng = rng or random.Random()
        self.token = os.urandom(8)
        self.peers = {}  # str(subnet) -> PeerState
        self.counters = dict(((size, result), 0) for size in ("small", "full") for result in ("answered", "lost"))
        self.kind = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None
        self._sock = None
        self._seq = 0
        self._pending = {}  # seq -> (subnet, "small"/"full", sent at, data)
        self._round = {}  # subnet -> {"small": ok, "full": ok, "rtt": s}

    # -- lifecycle
    def start(self):
        try:
            self._sock, self.kind, self._raw = open_socket(self.source)
        except OSError as exc:
            # Probes only observe: without an ICMP socket the daemon forwards on, unprobed (/metrics: kind "none").
            log.warning("peer probes off: no ICMP socket (%s): the daemon's group is not in net.ipv4.ping_group_range "
                        "and it lacks CAP_NET_RAW", exc)
            return self
        log.info("peer probes: every %.1f s (at most %.0f probes/s), %d and %d bytes with DF, %s socket, from %s",
                 self.interval, MAX_RATE, SMALL, self.mtu, self.kind, self.source)
        self._thread = threading.Thread(target=self._run, name="peer-probes", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._sock is not None:
            self._sock.close()

    # -- the loop
    def _run(self):
        name_thread("peer-probes")
        try:
            while not self._stop.is_set():
                self._one_round()
        except Exception:  # a bug here must not take the data path with it: log it, stop probing
            log.exception("peer probes stopped")

    def _one_round(self):
        current = dict((str(s), p.public_ip) for s, p in self.table.snapshot().items())
        with self._lock:
            for subnet in list(self.peers):
                if subnet not in current:
                    del self.peers[subnet]
            for subnet, ip in current.items():
                if subnet not in self.peers or self.peers[subnet].public_ip != ip:
                    self.peers[subnet] = PeerState(ip, gateway(subnet), time.time())
        with self._lock:
            now = time.monotonic()
            settling = any(p.state == UNKNOWN or now - p.changed < SETTLE for p in self.peers.values())
        period = round_period(len(current), min(self.interval, FAST) if settling else self.interval)
        start = time.monotonic()
        for offset, subnet in schedule(sorted(current), period, self.rng):
            self._wait_until(start + offset)
            if self._stop.is_set():
                return
            self._probe(subnet)
        self._wait_until(start + period)
        self._write_status()

    def _wait_until(self, when):
        """Sleep until `when` (monotonic) or stop(), then take the answers that came meanwhile and expire the
        probes that had none within TIMEOUT (judged by the answers' arrival times, not by this wake's)."""
        now = time.monotonic()
        if when > now and self._stop.wait(when - now):
            return
        self._receive()
        self._expire(time.monotonic())

    def _probe(self, subnet):
        p = self.peers.get(subnet)
        if p is None:
            return
        self._round[subnet] = {}
        for size_name, size in (("small", SMALL), ("full", self.mtu)):
            self._seq = (self._seq + 1) & 0xFFFF
            data = echo_payload(self.token, self._seq, size)
            sent = time.monotonic()
            try:
                self._sock.sendto(echo_request(0, self._seq, data), (p.gateway, 0))
            except OSError as exc:  # EMSGSIZE: the full size does not fit a local MTU; unreachable; ...
                log.debug("probe %s to %s (%d bytes): %s", size_name, p.gateway, size, exc)
                self._resolve(subnet, size_name, False)
                continue
            self._pending[self._seq] = (subnet, size_name, sent, data, p.gateway)

    def _receive(self):
        """Every answer queued in the socket, each resolved by its arrival time (the kernel's timestamp)."""
        clock = time.monotonic() - time.time()  # realtime -> monotonic, now
        for _i in range(RECEIVE_MAX):
            try:
                packet, anc, _flags, addr = self._sock.recvmsg(65535, socket.CMSG_SPACE(_TIMESPEC.size))
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ECONNREFUSED):
                    continue
                raise
            got = parse_reply(packet, self._raw)
            if got is None:
                continue
            seq, data = got
            pending = self._pending.get(seq)
            # Counted only when it comes from the probed address and carries what we sent, byte for byte.
            if pending is None or addr[0] != pending[4] or data != pending[3]:
                continue
            del self._pending[seq]
            subnet, size_name, sent = pending[:3]
            rtt = arrival(anc, clock, sent) - sent
            self._resolve(subnet, size_name, rtt < TIMEOUT, rtt)

    def _expire(self, now):
        for seq, (subnet, size_name, sent, _d, _g) in list(self._pending.items()):
            if now - sent >= TIMEOUT:
                del self._pending[seq]
                self._resolve(subnet, size_name, False)

    def _resolve(self, subnet, size_name, ok, rtt=None):
        self.counters[(size_name, "answered" if ok else "lost")] += 1
        answers = self._round.get(subnet)
        if answers is None:
            return
        answers[size_name] = ok
        if size_name == "small" and ok:
            answers["rtt"] = rtt
        if "small" in answers and "full" in answers:
            del self._round[subnet]
            self._record(subnet, Result(answers["small"], answers["full"], answers.get("rtt")))

    def _record(self, subnet, result):
        changed = False
        with self._lock:
            p = self.peers.get(subnet)
            if p is None:
                return
            p.history = (p.history + (result,))[-CONFIRM:]
            p.rounds += 1
            p.last = result
            if result.rtt is not None:
                p.rtt = result.rtt
            state = classify(p.history)
            if state != p.state:
                log.info("peer %s (%s, gateway %s): %s -> %s", subnet, p.public_ip, p.gateway, p.state, state)
                p.state, p.since, p.changed, changed = state, round(time.time(), 3), time.monotonic(), True
        if changed:
            self._write_status()

    def _write_status(self):
        if not self.status_file:
            return
        with self._lock:
            text = status(self.host, self.peers, time.time())
        try:
            write_atomic(self.status_file, text, durable=False)  # rewritten every round, in /run
        except OSError as exc:
            log.warning("cannot write %s: %s", self.status_file, exc)

    # -- for /metrics
    def metrics(self):
        """[(name, kind, help, samples)] for health.render_metrics."""
        with self._lock:
            peers = sorted(self.peers.items())
        labels = [((("peer", s), ("public_ip", p.public_ip)), p) for s, p in peers]
        return [
            ("peer_probe_socket_info", "gauge", "The ICMP socket the peer probes use: icmp_dgram (no capability) "
             "or raw (CAP_NET_RAW).", [((("kind", self.kind or "none"),), 1)]),
            ("peer_up", "gauge", "1 when the peer's gateway answers full-size probes through the overlay.",
             [(lab, 1 if p.state == UP else 0) for lab, p in labels]),
            ("peer_state", "gauge", "The probed state of each peer (up, down, mtu: small probes pass, full-size "
             "ones do not; unknown: not yet probed enough).",
             [(lab + (("state", p.state),), 1) for lab, p in labels]),
            ("peer_rtt_seconds", "gauge", "Round-trip time of the last answered small probe to each peer.",
             [(lab, "%.6f" % p.rtt) for lab, p in labels if p.rtt is not None]),
            ("peers_by_state", "gauge", "Peers in each probed state.",
             [((("state", s),), n) for s, n in count_states(p.state for _s, p in peers).items()]),
            ("peer_probes_total", "counter", "Probes sent, by size and whether they were answered.",
             [((("size", size), ("result", result)), n) for (size, result), n in sorted(self.counters.items())]),
        ]
