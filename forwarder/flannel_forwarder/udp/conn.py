"""The underlay UDP socket behind a batch API: ``SendBatch`` (UDP_SEGMENT) and ``UdpConn.recv_batch`` (UDP_GRO).

UDP_SEGMENT lets one sendmsg carry many equal-sized datagrams (the last
may be shorter) to one destination; the kernel cuts them, often as late as
the driver.  UDP_GRO is the receive-side twin: one recvmsg returns many
datagrams of one sender back to back, with their size in a control
message.  Either is switched off (with a plain sendto/recvfrom per
datagram) when the kernel does not have it or the way runs without
offloads.
"""

from __future__ import annotations

import errno
import logging
import socket
import struct

log = logging.getLogger(__name__)

SOL_UDP = 17
UDP_SEGMENT = 103
UDP_GRO = 104
# The kernel refuses more segments per send (UDP_MAX_SEGMENTS is 64 on older kernels).
MAX_SEGMENTS = 64
# Largest UDP payload of one (super) datagram over IPv4.
MAX_UDP_PAYLOAD = 65507

_U16_NATIVE = struct.Struct("=H")
_I32_NATIVE = struct.Struct("=i")
_GRO_CMSG_SPACE = socket.CMSG_SPACE(4)
_MSG_TRUNC = int(socket.MSG_TRUNC)  # plain int: IntFlag arithmetic is slow in a hot loop
SEND_ERROR = "send_error"


class UdpConn:
    """A UDP socket bound to (bind_ip, port) carrying raw IPv4 packets, one per datagram."""

    def __init__(self, bind_ip: str, port: int, *, offload: bool = True, bufsize: int = 4 << 20):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            for opt, force in ((socket.SO_RCVBUF, 33), (socket.SO_SNDBUF, 32)):  # *BUFFORCE need root
                try:
                    self.sock.setsockopt(socket.SOL_SOCKET, force, bufsize)
                except OSError:
                    self.sock.setsockopt(socket.SOL_SOCKET, opt, bufsize)
            self.sock.bind((bind_ip, port))
        except BaseException:
            self.sock.close()
            raise
        self.local_address = self.sock.getsockname()
        self.gso = offload and self._try(UDP_SEGMENT, 0)
        self.gro = offload and self._try(UDP_GRO, 1)
        self._seg_cache: dict[int, list] = {}

    def _try(self, opt: int, value: int) -> bool:
        try:
            self.sock.setsockopt(SOL_UDP, opt, value)
            return True
        except OSError as e:
            log.warning("UDP option %d unavailable (%s): falling back", opt, e)
            return False

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()

    # -- send ---------------------------------------------------------------

    def sender(self, stats, size: int) -> "SendBatch":
        """A batch of datagrams to send (see SendBatch), counted in *stats*; room for *size* bytes."""
        return SendBatch(self, stats, size)

    def chunk_bytes(self, seg_size: int) -> int:
        """How many bytes of *seg_size* datagrams one send carries at most."""
        if not self.gso:
            return seg_size
        return max(1, min(MAX_SEGMENTS, MAX_UDP_PAYLOAD // seg_size)) * seg_size

    def send_segments(self, buf, total: int, seg_size: int, addr) -> int:
        """Send ``buf[:total]`` as datagrams of *seg_size* bytes (the last may be shorter).

        Returns the number of syscalls used.
        """
        mv = memoryview(buf)
        if total <= seg_size:
            self.sock.sendto(mv[:total], addr)
            return 1
        if not self.gso:
            sendto = self.sock.sendto
            n = 0
            for o in range(0, total, seg_size):
                sendto(mv[o : min(o + seg_size, total)], addr)
                n += 1
            return n
        cmsg = self._seg_cache.get(seg_size)
        if cmsg is None:
            cmsg = self._seg_cache[seg_size] = [(SOL_UDP, UDP_SEGMENT, _U16_NATIVE.pack(seg_size))]
        per_call = self.chunk_bytes(seg_size)
        calls = 0
        o = 0
        while o < total:
            end = min(o + per_call, total)
            try:
                if end - o <= seg_size:
                    self.sock.sendto(mv[o:end], addr)
                else:
                    self.sock.sendmsg((mv[o:end],), cmsg, 0, addr)
            except OSError as e:
                if e.errno in (errno.EIO, errno.EINVAL, errno.EOPNOTSUPP):
                    # Some paths cannot do UDP GSO at all: stop trying, resend plainly.
                    log.warning("UDP_SEGMENT send failed (%s): disabling GSO", e)
                    self.gso = False
                    return calls + self.send_segments(mv[o:total], total - o, seg_size, addr)
                raise
            calls += 1
            o = end
        return calls

    # -- receive ------------------------------------------------------------

    def recv_batch(self, buf, flags: int = 0):
        """Receive datagrams into *buf*; returns (nbytes, seg_size, (ip, port)).

        With GRO, ``buf[:nbytes]`` holds datagrams of *seg_size* bytes back to
        back (the last may be shorter); without, one datagram and seg_size ==
        nbytes.  A datagram cut short by the buffer gives seg_size 0.
        Raises BlockingIOError with MSG_DONTWAIT when nothing is queued.
        """
        if self.gro:
            n, anc, mflags, addr = self.sock.recvmsg_into((buf,), _GRO_CMSG_SPACE, flags)
            if mflags & _MSG_TRUNC:
                return n, 0, addr
            seg = n
            for level, typ, data in anc:
                if level == SOL_UDP and typ == UDP_GRO and len(data) >= 4:
                    seg = _I32_NATIVE.unpack_from(data)[0] or n
            return n, seg, addr
        n, addr = self.sock.recvfrom_into(buf, 0, flags)
        return n, n, addr


class SendBatch:
    """Datagrams to send, written by the caller back to back into ``view``, sent in as few sends as possible.

    The caller writes *count* datagrams of *seg* bytes (the last may be
    shorter) at ``view[fill:]`` and calls ``add(peer, total, seg)``.
    Consecutive datagrams of one size to one peer form the pending run: a
    64 KB TSO packet is 46 MTU-sized datagrams but one UDP_SEGMENT send
    only takes ~44, so sending per TUN read would cost two sends (and two
    receives and TUN writes on the peer) per super packet.  Whole sends
    leave as soon as the run holds them; the rest leaves when the run can
    no longer grow (other peer or size, a short datagram) or on
    ``flush()`` (the caller: the TUN has nothing more to read now).  A lone
    packet is a run of one, so a burst of equal-sized small packets to one
    peer also leaves in one send.  Sends count in ``stats.batches``; a
    send that fails (ENOBUFS, EHOSTUNREACH, ECONNREFUSED...) loses what was
    pending, like a wire, counted as SEND_ERROR per datagram.
    """

    __slots__ = ("buf", "view", "fill", "_start", "_seg", "_peer", "_compact_at", "_conn", "_st", "_chunks")

    def __init__(self, conn: UdpConn, stats, size: int):
        self.buf = bytearray(size)
        self.view = memoryview(self.buf)
        self.fill = 0  # where the caller writes the next datagrams
        self._start = 0  # the pending run: view[_start:fill]
        self._seg = 0
        self._peer = None
        # Past half the buffer the pending run (less than one send) moves to the front, so whatever is
        # added next (at most MAX_SEGMENTED bytes, with size >= 2 * MAX_SEGMENTED) always fits behind it.
        self._compact_at = size // 2
        self._conn = conn
        self._st = stats
        self._chunks: dict = {}  # seg size -> bytes per send (conn.gso does not come back once off)

    def add(self, peer, total: int, seg: int) -> None:
        """Queue the *total* bytes of datagrams of *seg* bytes just written at ``view[fill:]`` for *peer*."""
        start = self._start
        fill = self.fill
        if (total == seg and seg == self._seg and peer == self._peer and fill + seg - start < self._chunks[seg]
                and fill + seg <= self._compact_at):
            self.fill = fill + seg  # one more datagram of the pending run's size, no send due: the common case
            return
        if fill > start and (peer != self._peer or seg != self._seg or (fill - start) % seg):
            self._send(start, fill)
            start = fill
        self._peer = peer
        self._seg = seg
        fill += total
        size = self._chunks.get(seg) or self._chunk(seg)
        if fill - start >= size:
            while fill - start >= size:
                if not self._send(start, start + size):
                    rest = fill - start - size  # lost with it
                    if rest:
                        self._st.drop(SEND_ERROR, -(-rest // seg))
                    start = fill
                    break
                start += size
        if (fill - start) % seg:  # ends with a short datagram: cannot grow
            self._send(start, fill)
            start = fill
        if start == fill:
            self._start = self.fill = 0
        elif fill > self._compact_at:
            self.buf[: fill - start] = self.buf[start:fill]
            self._start = 0
            self.fill = fill - start
        else:
            self._start = start
            self.fill = fill

    def _chunk(self, seg: int) -> int:
        size = self._chunks[seg] = self._conn.chunk_bytes(seg)
        return size

    def flush(self) -> None:
        """Send the pending run."""
        if self.fill > self._start:
            self._send(self._start, self.fill)
        self._start = self.fill = 0

    def _send(self, start: int, end: int) -> bool:
        try:
            self._st.batches += self._conn.send_segments(self.view[start:end], end - start, self._seg, self._peer)
            return True
        except OSError:
            self._st.drop(SEND_ERROR, -(-(end - start) // self._seg))
            return False
