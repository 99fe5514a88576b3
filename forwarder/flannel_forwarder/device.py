"""The two forwarding loops: TUN -> UDP (segment, route, send) and UDP -> TUN (check, coalesce, write).

``Device(tun, conn, peers, stats)`` moves packets between a ``TunDevice``
and a ``UdpConn`` using a ``PeerTable`` that another thread may change at
any time.  One thread serves both directions by default (measured faster
on one core than a thread per direction, which remains an option).
Malformed or unwanted input is dropped and counted, never raised.

``python -m flannel_forwarder.device ...`` runs the data path with a static
peer table, for debugging and benchmarks (see ``main``).
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import select
import signal
import socket
import struct
import sys
import threading

from . import vector
from .conn import UdpConn
from .offload import (
    F_NEEDS_CSUM,
    GSO_NONE,
    MAX_SEGMENTED,
    VNET_HDR_LEN,
    ZERO_VNET_HDR,
    VirtioNetHdr,
    coalesce,
    complete_checksum,
    segment,
)
from .packet import (
    BAD_CHECKSUM,
    BAD_HEADER,
    BAD_LENGTH,
    BAD_VERSION,
    SHORT,
    TTL_EXCEEDED,
    decrement_ttl,
    icmp_net_unreachable,
)
from .packet import PacketError
from .routes import PeerTable
from .stats import Stats
from .tun import TunDevice

log = logging.getLogger(__name__)

# Drop reasons of the loops themselves (packet parsing ones come from packet.py).
NOT_IPV4 = "not_ipv4"
NO_ROUTE = "no_route"  # TX: no peer for the destination (answered with ICMP)
UNKNOWN_SENDER = "unknown_sender"  # RX: datagram from an address that is no peer
SPOOFED = "spoofed"  # RX: inner source outside the sending peer's subnets
TRUNCATED = "truncated"
SEND_ERROR = "send_error"
TUN_WRITE_ERROR = "tun_write_error"

_VNET = struct.Struct("<BBHHHH")
# Reads (TX) or receives (RX) per turn before the loop looks at the other side
# (measured: 4-16 are alike; 64 starves the ACKs of the other direction).
LOOP_BUDGET = 8
_READ_SIZE = VNET_HDR_LEN + 65535 + 1
# Pending segments (< one send) + one segmented super packet (its payload plus
# one header per segment: segment() refuses more than MAX_SEGMENTED bytes),
# with room to spare before compaction: a read starts with at least
# _OUT_SIZE // 2 free, so whether a packet fits never depends on what is pending.
_OUT_SIZE = 2 * MAX_SEGMENTED


class Device:
    """The data path of one host: ``run()`` blocks until ``stop()``.

    By default both directions share one thread that polls the TUN and the
    socket together: no GIL hand-offs and fewer wake-ups, measurably faster
    on one core than ``threads=True`` (a thread per direction; see
    bench/datapath.py --threads).
    """

    def __init__(
        self, tun: TunDevice, conn: UdpConn, peers: PeerTable, stats: Stats | None = None, *, threads: bool = False
    ):
        self.tun = tun
        self.conn = conn
        self.peers = peers
        self.stats = stats if stats is not None else Stats()
        self.threads = threads
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._threads: list[threading.Thread] = []
        self.failed = False  # a loop died of an unexpected exception (a bug)
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

    def _guard(self, loop) -> None:
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
        sleep), True otherwise.  Buffers and state live in the closure, so
        a call costs no set-up.

        Segments of consecutive super packets to one peer are sent together
        (``out[start:fill]`` is the pending run): a 64 KB TSO packet is 46
        MTU-sized datagrams but one UDP_SEGMENT send only takes ~44, so
        sending per read would cost two sends (and two receives and TUN
        writes on the peer) per super packet.  The run is flushed when it
        can no longer grow: other peer or size, a short segment, or the TUN
        has nothing more to read right now.  A plain packet is a run of one
        segment, so a burst of equal-sized small packets (e.g. a UDP stream)
        to one peer is batched the same way, and a lone packet still leaves
        at once (the TUN is empty right after it).
        """
        st = self.stats.tx
        conn = self.conn
        fd = self.tun.fd
        vnet = self.tun.vnet_hdr
        base = VNET_HDR_LEN if vnet else 0
        buf = bytearray(_READ_SIZE)
        mv = memoryview(buf)
        bufs = (buf,)
        out = bytearray(_OUT_SIZE)
        omv = memoryview(out)
        readv = os.readv
        lookup = self.peers.lookup
        send_segments = conn.send_segments
        chunk_bytes = conn.chunk_bytes
        chunk_sizes: dict = {}  # seg size -> bytes per send (conn.gso does not come back once off)
        send_run = self._send_run
        unreachable = self._unreachable
        unpack_vnet = _VNET.unpack_from
        stopped = self._stop.is_set
        start = fill = p_seg = 0
        p_peer = None

        def step(budget: int):
            nonlocal start, fill, p_seg, p_peer
            did = 0
            while did < budget:
                try:
                    n = readv(fd, bufs)
                except BlockingIOError:
                    if fill > start:
                        st.batches += send_run(omv, start, fill, p_seg, p_peer)
                        start = fill = 0
                    return did > 0
                except InterruptedError:
                    continue
                except OSError as e:
                    if stopped() or e.errno == errno.EBADF:
                        return False
                    raise
                did += 1
                st.tun_packets += 1
                plen = n - base
                if plen < 20:
                    st.drop(SHORT)
                    continue
                if buf[base] >> 4 != 4:
                    st.drop(NOT_IPV4)  # e.g. IPv6, should the device ever get an address
                    continue
                peer = lookup(int.from_bytes(buf[base + 16 : base + 20], "big"))
                if peer is None:
                    unreachable(mv[base:n], st)
                    continue
                if not decrement_ttl(buf, base):
                    st.drop(TTL_EXCEEDED)
                    continue
                try:
                    if vnet:
                        flags, gso_type, _hdr_len, gso_size, csum_start, csum_offset = unpack_vnet(buf, 0)
                    if vnet and gso_type != GSO_NONE:
                        res = segment(
                            VirtioNetHdr(flags, gso_type, 0, gso_size, csum_start, csum_offset),
                            mv[base:n],
                            omv[fill:],
                            plen,
                        )
                        total, seg, count = res
                    else:
                        # One packet: a run of one segment, so that a burst of
                        # equal-sized packets to one peer also leaves in one send.
                        if vnet and flags & F_NEEDS_CSUM:
                            complete_checksum(buf, base, plen, csum_start, csum_offset)
                        out[fill : fill + plen] = mv[base:n]
                        seg = total = plen
                        count = 1
                    if fill > start and (peer != p_peer or seg != p_seg or (fill - start) % p_seg):
                        st.batches += send_run(omv, start, fill, p_seg, p_peer)
                        start = fill
                    p_peer, p_seg = peer, seg
                    fill += total
                    st.packets += count
                    st.bytes += total
                    size = chunk_sizes.get(seg) or chunk_sizes.setdefault(seg, chunk_bytes(seg))
                    while fill - start >= size:
                        st.batches += send_segments(omv[start : start + size], size, seg, peer)
                        start += size
                    if (fill - start) % seg:  # ends with a short segment: cannot grow
                        st.batches += send_run(omv, start, fill, seg, peer)
                        start = fill
                    if start == fill:
                        start = fill = 0
                    elif fill > _OUT_SIZE // 2:
                        out[: fill - start] = out[start:fill]
                        fill -= start
                        start = 0
                except PacketError as e:
                    st.drop(e.reason)
                except OSError as e:
                    if stopped() and e.errno == errno.EBADF:
                        return False
                    # ENOBUFS, EHOSTUNREACH, ECONNREFUSED...: what was pending is
                    # lost, like on a wire (and must not be sent again and again).
                    st.drop(SEND_ERROR, max(1, (fill - start) // (p_seg or 1)))
                    start = fill = 0
            return True

        return step

    def _send_run(self, omv, start: int, fill: int, seg: int, peer) -> int:
        try:
            return self.conn.send_segments(omv[start:fill], fill - start, seg, peer)
        except OSError:
            self.stats.tx.drop(SEND_ERROR)
            return 0

    def _unreachable(self, pkt, st) -> None:
        st.drop(NO_ROUTE)
        reply = icmp_net_unreachable(pkt, self.tun.address_int)
        if reply is None:
            return
        try:
            if self.tun.vnet_hdr:
                self.tun.writev((ZERO_VNET_HDR, reply))
            else:
                self.tun.write(reply)
            self.stats.icmp_unreachable += 1
        except OSError:
            st.drop(TUN_WRITE_ERROR)

    # -- UDP -> TUN -----------------------------------------------------------

    def _rx_step(self):
        """Build the UDP -> TUN step: ``step(budget)`` handles up to *budget* receives; False when none was queued.

        The last run of TCP segments of a receive is held back (``pending``)
        while more receives follow: the next one often continues it (one
        TSO packet of the sender split over two UDP_SEGMENT sends), and then
        both go to the TUN in one write.  It is written before this step
        returns, and before anything else is written.
        """
        st = self.stats.rx
        fd = self.tun.fd
        vnet = self.tun.vnet_hdr
        buf = bytearray(65535 + 8192)  # room for a whole last row in the numpy view
        mv = memoryview(buf)
        merged = bytearray(4 * 65536)
        recv = self.conn.recv_into
        writev = os.writev
        write = os.write
        sender_subnets = self.peers.sender_subnets
        from_bytes = int.from_bytes
        dontwait = int(socket.MSG_DONTWAIT)
        fast = vnet  # vector.rx_tcp_runs has a plain Python path when numpy is missing
        rx_tcp_runs = vector.rx_tcp_runs
        stopped = self._stop.is_set
        zero_vnet = ZERO_VNET_HDR
        pending = None

        def put(run) -> None:
            try:
                writev(fd, run.iov(merged))
                st.tun_packets += 1
            except OSError:
                st.drop(TUN_WRITE_ERROR, run.count)

        def step(budget: int):
            nonlocal pending
            did = 0
            try:
                while did < budget:
                    try:
                        n, seg, addr = recv(buf, dontwait)
                    except BlockingIOError:
                        return did > 0
                    except InterruptedError:
                        continue
                    except OSError as e:
                        if stopped() or e.errno == errno.EBADF:
                            return False
                        st.drop("recv_error")
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
                    if len(nets) == 1:
                        ((net, mask),) = nets
                        if fast and n > seg:
                            # The common case, TCP segments, checked and cut into runs in a few numpy calls.
                            pos = 0
                            if pending is not None:
                                pos = pending.pos + pending.plen
                                if pos > 2 * 65536:
                                    put(pending)
                                    pending = None
                                    pos = 0
                            runs = rx_tcp_runs(buf, n, seg, net, mask, merged, pos)
                            if runs is not None:
                                st.packets += -(-n // seg)
                                st.bytes += n
                                if pending is not None:
                                    if pending.try_extend(runs[0]):
                                        runs[0] = pending
                                    else:
                                        put(pending)
                                    pending = None
                                for run in runs[:-1]:
                                    put(run)
                                run = runs[-1]
                                if run.open:
                                    pending = run
                                else:
                                    put(run)
                                continue
                    else:
                        net = mask = -1
                    if pending is not None:  # keep the order of writes
                        put(pending)
                        pending = None
                    spans = []
                    nbytes = 0
                    for off in range(0, n, seg):
                        ln = n - off if n - off < seg else seg
                        if ln < 20:
                            st.drop(SHORT)
                            continue
                        b0 = buf[off]
                        if b0 != 0x45:
                            if b0 >> 4 != 4:
                                st.drop(BAD_VERSION)
                                continue
                            hl = (b0 & 0x0F) << 2
                            if hl < 20 or hl > ln:
                                st.drop(BAD_HEADER)
                                continue
                        else:
                            hl = 20
                        if (buf[off + 2] << 8) | buf[off + 3] != ln:
                            st.drop(BAD_LENGTH)
                            continue
                        if from_bytes(buf[off : off + hl], "big") % 0xFFFF:
                            st.drop(BAD_CHECKSUM)
                            continue
                        src = from_bytes(buf[off + 12 : off + 16], "big")
                        if src & mask != net:
                            if mask != -1 or not any(src & m == nt for nt, m in nets):
                                st.drop(SPOOFED)
                                continue
                        if not decrement_ttl(buf, off):
                            st.drop(TTL_EXCEEDED)
                            continue
                        spans.append((off, ln))
                        nbytes += ln
                    if not spans:
                        continue
                    st.packets += len(spans)
                    try:
                        if not vnet:
                            for off, ln in spans:
                                write(fd, mv[off : off + ln])
                                st.tun_packets += 1
                        elif len(spans) == 1:  # a lone datagram (ACKs, pings): nothing to merge
                            off, ln = spans[0]
                            writev(fd, (zero_vnet, mv[off : off + ln]))
                            st.tun_packets += 1
                        else:
                            for iov in coalesce(buf, spans):
                                writev(fd, iov)
                                st.tun_packets += 1
                        st.bytes += nbytes
                    except OSError as e:
                        if stopped() and e.errno == errno.EBADF:
                            return False
                        st.drop(TUN_WRITE_ERROR)
                return True
            finally:
                if pending is not None:
                    put(pending)
                    pending = None

        return step


# -- debug entry point ------------------------------------------------------------


def _hostport(s: str, default_port: int = 8285) -> tuple[str, int]:
    host, sep, port = s.rpartition(":")
    return (host, int(port)) if sep else (s, default_port)


def _underlay_mtu(ip: str) -> int | None:
    try:
        from pyroute2 import IPRoute

        with IPRoute() as ipr:
            for a in ipr.get_addr(family=socket.AF_INET):
                if a.get_attr("IFA_ADDRESS") == ip:
                    link = ipr.get_links(a["index"])[0]
                    return link.get_attr("IFLA_MTU")
    except Exception as e:  # the MTU is a convenience; --mtu overrides
        log.debug("underlay MTU lookup: %s", e)
    return None


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m flannel_forwarder.device",
        description="Run the flannel udp data path with a static peer table (debugging, benchmarks).",
    )
    p.add_argument("--tun-name", default="flannel0")
    p.add_argument("--network", required=True, help="the whole overlay, e.g. 10.5.0.0/16")
    p.add_argument("--subnet", required=True, help="this host's subnet, e.g. 10.5.1.0/24")
    p.add_argument("--bind", required=True, help="underlay IP[:PORT] to bind (port 8285 by default)")
    p.add_argument("--peer", action="append", default=[], metavar="SUBNET=IP[:PORT]")
    p.add_argument("--mtu", type=int, help="TUN MTU (default: underlay MTU - 28)")
    p.add_argument("--no-offload", action="store_true", help="no TSO/GSO/GRO: one packet per syscall")
    p.add_argument("--threads", action="store_true", help="one thread per direction (default: one thread)")
    p.add_argument("--stats-file", help="write counters as JSON here every second and at exit")
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


def _write_stats(path: str, stats: Stats) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(stats.snapshot(), f)
    os.replace(tmp, path)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    bind_ip, port = _hostport(args.bind)
    peers = PeerTable({subnet: _hostport(hp) for subnet, _eq, hp in (p.partition("=") for p in args.peer)})
    mtu = args.mtu or ((_underlay_mtu(bind_ip) or 1500) - 28)
    offload = not args.no_offload
    conn = UdpConn(bind_ip, port, offload=offload)
    stats = Stats()
    try:
        tun = TunDevice(args.tun_name, network=args.network, subnet=args.subnet, mtu=mtu, offload=offload)
    except BaseException:
        conn.close()
        raise
    dev = Device(tun, conn, peers, stats, threads=args.threads)
    signal.signal(signal.SIGTERM, lambda *_: dev.stop())
    signal.signal(signal.SIGINT, lambda *_: dev.stop())
    print(
        json.dumps(
            {
                "ready": True,
                "tun": tun.name,
                "mtu": mtu,
                "vnet_hdr": tun.vnet_hdr,
                "tun_offload_flags": tun.offload_flags,
                "udp_gso": conn.gso,
                "udp_gro": conn.gro,
                "numpy": vector.AVAILABLE,
                "threads": dev.threads,
                "pid": os.getpid(),
            }
        ),
        flush=True,
    )
    try:
        dev.start()
        while not dev.stopped:
            if args.stats_file:
                _write_stats(args.stats_file, stats)
            dev._stop.wait(1.0 if args.stats_file else 0.5)
            if not dev.healthy:
                break
    finally:
        dev.close()
        tun.close()
        conn.close()
        if args.stats_file:
            _write_stats(args.stats_file, stats)
    return 1 if dev.failed else 0


if __name__ == "__main__":
    sys.exit(main())
