"""The two forwarding loops: TUN -> UDP (route, send) and UDP -> TUN (check, write), and their decisions.

``DataPath(tun, conn, peers, stats, way=...)`` moves packets between a TUN
(tun/: its batch API hands over and takes plain IPv4 packets, the virtio
header, segmentation and coalescing stay inside it) and a ``UdpConn``
(conn.py: batches of datagrams, GSO/GRO inside), using a ``PeerTable``
that another thread may change at any time.  One thread serves both
directions by default (measured faster on one core than a thread per
direction, which remains an option).  Malformed or unwanted input is
dropped and counted, never raised.

The decisions are functions of their own, the ones the unit tests test:
``DataPath.route_tx`` (a packet read from the TUN: its peer, TTL, or an
ICMP net unreachable) and ``check_datagrams`` (a received batch:
packet.check_ipv4_rows, routes.source_allowed, the TTL), or, for a batch of
TCP segments from a sender with one subnet, the way's ``rx_runs`` (the
same checks over the whole batch, tested against those).
"""

from __future__ import annotations

import errno
import logging
import os
import select
import socket
import struct
import threading

from ..packet import SHORT, TTL_EXCEEDED, PacketError, check_ipv4_rows, decrement_ttl, icmp_net_unreachable
from ..routes import PeerTable, source_allowed
from ..stats import Stats
from ..threads import name_thread
from . import ways
from .conn import SEND_ERROR, UdpConn
from .tun.io import TUN_WRITE_ERROR
from .tun.segment import MAX_SEGMENTED

log = logging.getLogger(__name__)

# Drop reasons of the loops themselves (packet parsing ones come from packet.py,
# segmentation ones from tun/segment.py).
NOT_IPV4 = "not_ipv4"
NO_ROUTE = "no_route"  # TX: no peer for the destination (answered with ICMP)
UNKNOWN_SENDER = "unknown_sender"  # RX: datagram from an address that is no peer
SPOOFED = "spoofed"  # RX: inner source outside the sending peer's subnets
TRUNCATED = "truncated"
RECV_ERROR = "recv_error"
__all__ = ["DataPath", "check_datagrams", "SEND_ERROR", "TUN_WRITE_ERROR"]

# Reads (TX) or receives (RX) per turn before the loop looks at the other side
# (measured: 4-16 are alike; 64 starves the ACKs of the other direction).
LOOP_BUDGET = 8
# The send batch: pending datagrams (< one send) + one segmented super packet
# (tun.segment refuses more than MAX_SEGMENTED bytes), with room to spare.
_SEND_SPACE = 2 * MAX_SEGMENTED
# One receive: the largest UDP payload, and room for a whole last row in the numpy way's views.
_RECV_SPACE = 65535 + 8192
_DONTWAIT = int(socket.MSG_DONTWAIT)
_SOURCE = struct.Struct(">I")  # an IPv4 address as an int


def check_datagrams(buf, n: int, seg: int, nets, stats) -> tuple:
    """The datagrams of ``buf[:n]`` (*seg* bytes each, the last may be shorter) that may go to the TUN.

    Each must be a sound IPv4 packet (packet.check_ipv4_rows) from inside
    the sender's subnets *nets* (routes.source_allowed) with a TTL left; its
    TTL is decremented in place.  The others are counted as dropped in
    *stats*.  Returns ([(offset, length)...], their bytes).
    """
    spans = []
    nbytes = 0
    source, allowed, ttl = _SOURCE.unpack_from, source_allowed, decrement_ttl
    for off in check_ipv4_rows(buf, n, seg, stats.drop):
        if not allowed(nets, source(buf, off + 12)[0]):
            stats.drop(SPOOFED)
            continue
        if not ttl(buf, off):
            stats.drop(TTL_EXCEEDED)
            continue
        ln = n - off if n - off < seg else seg
        spans.append((off, ln))
        nbytes += ln
    return spans, nbytes


class DataPath:
    """The data path of one host (the udp backend's loops; a *device* is the TUN): ``run()`` blocks until ``stop()``.

    By default both directions share one thread that polls the TUN and the
    socket together: no GIL hand-offs and fewer wake-ups, measurably faster
    on one core than ``threads=True`` (a thread per direction; see
    bench/datapath.py --threads).
    """

    def __init__(self, tun, conn: UdpConn, peers: PeerTable, stats: Stats | None = None, *, way=None,
                 threads: bool = False):
        self.tun = tun  # a tun.device.TunDevice, or any tun.io.TunIO
        self.conn = conn
        self.peers = peers
        self.stats = stats if stats is not None else Stats()
        self.way = way if way is not None else ways.choose(tun.vnet_hdr or conn.gso or conn.gro)
        self.stats.way = self.way.NAME
        self.threads = threads
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._threads: list[threading.Thread] = []
        self.failed = False  # a loop died of an unexpected exception (a bug)
        self._icmp_writer = None
        self._tx_stats = self.stats.tx
        self._lookup = peers.lookup
        tun.set_nonblocking(True)

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> None:
        if self.threads:
            loops = (("tun->udp", self._tx_loop), ("udp->tun", self._rx_loop))
        else:
            loops = (("datapath", self._single_loop),)
        for name, target in loops:
            t = threading.Thread(target=self._guard, args=(target,), name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def run(self) -> None:
        """Start the loops and block until ``stop()`` (signal handlers still run)."""
        if not self._threads:
            self.start()
        while not self._stop.wait(0.5):
            if not self.healthy:
                break
        self.stop()
        self.join()

    @property
    def healthy(self) -> bool:
        return bool(self._threads) and all(t.is_alive() for t in self._threads)

    def stop(self) -> None:
        if not self._stop.is_set():
            self._stop.set()
            try:
                os.write(self._wake_w, b"x")
            except OSError:
                pass

    def join(self, timeout: float | None = 5.0) -> None:
        for t in self._threads:
            t.join(timeout)

    def close(self) -> None:
        """Stop the loops and free the device's own resources (not the TUN or socket: the caller's)."""
        self.stop()
        self.join()
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def wait(self, timeout: float) -> bool:
        """Sleep until ``stop()`` or *timeout* seconds; True when stopped."""
        return self._stop.wait(timeout)

    def _guard(self, loop) -> None:
        name_thread(threading.current_thread().name)  # datapath, or tun->udp and udp->tun
        try:
            loop()
        except Exception:  # a bug: say so loudly, and take the process down via run()
            log.exception("%s loop died", threading.current_thread().name)
            self.failed = True
            self.stop()

    def _poller(self, *fds: int):
        p = select.poll()
        for fd in fds:
            p.register(fd, select.POLLIN)
        p.register(self._wake_r, select.POLLIN)
        return p.poll

    def _tx_loop(self) -> None:
        wait = self._poller(self.tun.fd)
        drain, stop = self._tx_step(), self._stop
        while not stop.is_set():
            if drain(LOOP_BUDGET) is False:
                wait()

    def _rx_loop(self) -> None:
        wait = self._poller(self.conn.fileno())
        drain, stop = self._rx_step(), self._stop
        while not stop.is_set():
            if drain(LOOP_BUDGET) is False:
                wait()

    def _single_loop(self) -> None:
        wait = self._poller(self.tun.fd, self.conn.fileno())
        tx, rx, stop = self._tx_step(), self._rx_step(), self._stop
        # Modest budgets: a long TX drain would hold back the ACKs coming the
        # other way, and TCP is ACK-clocked.
        budget = LOOP_BUDGET
        while not stop.is_set():
            a = tx(budget)
            b = rx(budget)
            if a is False and b is False:
                wait()

    # -- TUN -> UDP -----------------------------------------------------------

    def _tx_step(self):
        """Build the TUN -> UDP step: ``step(budget)`` forwards up to *budget* TUN reads.

        It returns False when the TUN had nothing to read (the caller may
        sleep), True otherwise.  Each read is decided on (``route_tx``),
        then its plain packets are laid out in the send batch and queued
        for their peer; the batch is flushed when the TUN is empty.
        Buffers and state live in the closure, so a call costs no set-up.
        """
        st = self.stats.tx
        reader = self.tun.reader(self.way.segment_tcp4)
        batch = self.conn.sender(st, _SEND_SPACE)
        read, packets_into, buf, base = reader.read, reader.packets_into, reader.buf, reader.base
        out, add, flush = batch.view, batch.add, batch.flush
        route = self.route_tx
        stopped = self._stop.is_set

        def step(budget: int):
            did = 0
            while did < budget:
                try:
                    plen = read() - base
                except BlockingIOError:
                    flush()
                    return did > 0
                except InterruptedError:
                    continue
                except OSError as e:
                    if stopped() or e.errno == errno.EBADF:
                        return False
                    raise
                did += 1
                st.tun_packets += 1
                peer = route(buf, base, plen)
                if peer is None:
                    continue
                try:
                    total, seg, count = packets_into(out, batch.fill, plen)
                except PacketError as e:
                    st.drop(e.reason)
                    continue
                st.packets += count
                st.bytes += total
                add(peer, total, seg)
            return True

        return step

    def route_tx(self, buf, off: int, length: int):
        """The decision on a packet read from the TUN (``buf[off:off + length]``): the (ip, port) of its peer, or None.

        IPv4 only (the kernel made the packet: its header is not checked
        further); no peer for the destination: dropped and answered with an
        ICMP net unreachable; a TTL that would reach 0: dropped.  Otherwise
        the TTL is decremented in place (for a super packet: in the header
        every segment copies).
        """
        if length < 20:
            self._tx_stats.drop(SHORT)
            return None
        if buf[off] >> 4 != 4:
            self._tx_stats.drop(NOT_IPV4)  # e.g. IPv6, should the device ever get an address
            return None
        peer = self._lookup(int.from_bytes(buf[off + 16 : off + 20], "big"))
        if peer is None:
            self._unreachable(memoryview(buf)[off : off + length])
            return None
        if not decrement_ttl(buf, off):
            self._tx_stats.drop(TTL_EXCEEDED)
            return None
        return peer

    def _unreachable(self, pkt) -> None:
        st = self.stats.tx
        st.drop(NO_ROUTE)
        reply = icmp_net_unreachable(pkt, self.tun.address_int)
        if reply is None:
            return
        if self._icmp_writer is None:
            self._icmp_writer = self.tun.writer(st)
        if self._icmp_writer.write_packet(reply):
            self.stats.icmp_unreachable += 1
        else:
            st.drop(TUN_WRITE_ERROR)

    # -- UDP -> TUN -----------------------------------------------------------

    def _rx_step(self):
        """Build the UDP -> TUN step: ``step(budget)`` handles up to *budget* receives; False when none was queued.

        A batch of TCP segments from a sender with one subnet goes to the
        way's ``rx_runs`` (checked and cut into runs at once, when the way
        has that step and the TUN takes super packets); anything else, and
        whatever ``rx_runs`` does not take, to ``check_datagrams``.  The
        TUN writer holds the last run of a receive back while more
        receives follow (the next one often continues it); it is written
        before this step returns.
        """
        st = self.stats.rx
        writer = self.tun.writer(st)
        buf = bytearray(_RECV_SPACE)
        recv = self.conn.recv_batch
        sender_subnets = self.peers.sender_subnets
        rx_runs = self.way.rx_runs if self.tun.vnet_hdr else None
        room, write_runs, write_packets, flush = writer.room, writer.write_runs, writer.write_packets, writer.flush
        merged = writer.merged
        stopped = self._stop.is_set

        def step(budget: int):
            did = 0
            try:
                while did < budget:
                    try:
                        n, seg, addr = recv(buf, _DONTWAIT)
                    except BlockingIOError:
                        return did > 0
                    except InterruptedError:
                        continue
                    except OSError as e:
                        if stopped() or e.errno == errno.EBADF:
                            return False
                        st.drop(RECV_ERROR)
                        continue
                    did += 1
                    st.batches += 1
                    if seg <= 0:
                        st.drop(TRUNCATED)
                        continue
                    nets = sender_subnets(addr[0])
                    if nets is None:
                        st.drop(UNKNOWN_SENDER, -(-n // seg))
                        continue
                    if rx_runs is not None and n > seg and len(nets) == 1:
                        ((net, mask),) = nets
                        runs = rx_runs(buf, n, seg, net, mask, merged, room)
                        if runs is not None:
                            st.packets += -(-n // seg)
                            st.bytes += n
                            write_runs(runs)
                            continue
                    spans, nbytes = check_datagrams(buf, n, seg, nets, st)
                    if spans:
                        st.packets += len(spans)
                        st.bytes += nbytes
                        write_packets(buf, spans)
                return True
            finally:
                flush()

        return step
