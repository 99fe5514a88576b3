"""The TUN's batch API: reads that hand over plain IPv4 packets, writes that take them (coalescing when it can).

``TunReader.read()`` takes one packet from the TUN; ``packets_into()``
then lays out the plain, MTU-sized packets it carries back to back in the
caller's buffer: a TSO super packet cut up (tun.segment), a packet whose
checksum the kernel left partial finished, any other copied.  Between the
two the caller decides on the packet's IPv4 header (route, TTL): for a
super packet it is the header every segment copies, so the decision is
made once, as the kernel's forwarding path makes it once for a GSO packet
before the device segments it.

``TunWriter`` writes checked packets: one by one on a plain TUN; with the
virtio header, consecutive TCP segments of a flow merged into one super
packet (tun.coalesce).  It holds the last run of a receive back
(``write_runs``) while the next receive may continue it, and writes it on
``flush()`` or before anything else.

Both only need a file descriptor and whether it carries the virtio
header (``TunIO``), so the tests run them on a socketpair.
"""

from __future__ import annotations

import functools
import os

from .coalesce import MAX_IP_PACKET, Run, coalesce
from .segment import complete_checksum, segment
from .virtio import F_NEEDS_CSUM, GSO_NONE, VNET, VNET_HDR_LEN, ZERO_VNET_HDR, VirtioNetHdr

TUN_WRITE_ERROR = "tun_write_error"
# One read: the virtio header, the largest IPv4 packet, one byte more (a read
# that fills the buffer was cut short).
READ_SIZE = VNET_HDR_LEN + MAX_IP_PACKET + 1
# Where received payloads are copied for merging: a held run (at most a
# batch) ends before MERGE_SPACE // 2, and one more batch fits after it.
MERGE_SPACE = 4 * 65536


class TunReader:
    """One TUN read at a time; ``buf[base:base + length]`` is the packet ``read()`` returned the length of."""

    __slots__ = ("vnet", "base", "buf", "read", "_view", "_segment_tcp4")

    def __init__(self, fd: int, vnet: bool, segment_tcp4):
        self.vnet = vnet
        self.base = VNET_HDR_LEN if vnet else 0  # the packet's offset in buf
        self.buf = bytearray(READ_SIZE)
        # read(): one packet into buf; returns the bytes read (the packet's length is that less base).
        # BlockingIOError when none is queued.  (os.readv itself, bound: no Python frame per packet.)
        self.read = functools.partial(os.readv, fd, (self.buf,))
        self._view = memoryview(self.buf)
        self._segment_tcp4 = segment_tcp4

    def packets_into(self, out, off: int, length: int) -> tuple:
        """The plain packets of the packet just read (*length* bytes), back to back in ``out[off:]``.

        Returns (bytes written, size of every packet but the last, packets).
        Raises ``PacketError`` for a super packet that cannot be cut.
        """
        buf, base = self.buf, self.base
        if self.vnet and (buf[1] or buf[0] & F_NEEDS_CSUM):  # (else: a plain packet, complete)
            flags, gso_type, hdr_len, gso_size, csum_start, csum_offset = VNET.unpack_from(buf, 0)
            if gso_type != GSO_NONE:
                hdr = VirtioNetHdr(flags, gso_type, hdr_len, gso_size, csum_start, csum_offset)
                return segment(hdr, self._view[base : base + length], out[off:], length, self._segment_tcp4)
            if flags & F_NEEDS_CSUM:
                complete_checksum(buf, base, length, csum_start, csum_offset)
        out[off : off + length] = self._view[base : base + length]
        return length, length, 1


class TunWriter:
    """Writes checked packets to the TUN, counting the writes (``tun_packets``) and their failures in *stats*."""

    __slots__ = ("vnet", "merged", "_fd", "_st", "_pending", "_end", "_pos")

    def __init__(self, fd: int, vnet: bool, stats):
        self.vnet = vnet
        self.merged = bytearray(MERGE_SPACE)
        self._fd = fd
        self._st = stats
        self._pending = None  # the held run
        self._end = 0  # where its payload ends in merged
        self._pos = 0  # where room() put the last receive's payloads

    def room(self) -> int:
        """Where in ``merged`` the next receive's payloads may go (after the held run's, if there is room)."""
        if self._pending is None:
            self._pos = 0
        elif self._end > MERGE_SPACE // 2:
            self.flush()
            self._pos = 0
        else:
            self._pos = self._end
        return self._pos

    def write_runs(self, runs: list) -> None:
        """Write the runs of one receive (their payloads copied to ``merged`` at ``room()``, in order, back to back),
        holding the last back if it may continue; the first continues the held run when it can."""
        end = self._pos
        for run in runs:
            end += run.plen
        pending, self._pending = self._pending, None
        if pending is not None:
            if pending.try_extend(runs[0]):
                runs[0] = pending
            else:
                self._write(pending)
        last = runs.pop()
        for run in runs:
            self._write(run)
        if last.open:
            self._pending = last
            self._end = end
        else:
            self._write(last)

    def write_packets(self, buf, spans) -> None:
        """Write the checked packets ``buf[off:off + length]`` of *spans*, in order, merging what merges.

        The first run may continue the held one, and the last is held back
        if it may continue (its payloads then copied to ``merged``: *buf*
        is the next receive's).
        """
        mv = memoryview(buf)
        fd, st, writev = self._fd, self._st, os.writev
        if not self.vnet:
            for off, ln in spans:
                try:
                    os.write(fd, mv[off : off + ln])
                    st.tun_packets += 1
                except OSError:
                    st.drop(TUN_WRITE_ERROR)
            return
        if len(spans) == 1 and self._pending is None:  # a lone datagram (ACKs, pings, a UDP stream)
            off, ln = spans[0]
            try:
                writev(fd, (ZERO_VNET_HDR, mv[off : off + ln]))
                st.tun_packets += 1
            except OSError:
                st.drop(TUN_WRITE_ERROR)
            return
        pos = 0 if self._pending is None else self.room()
        runs = coalesce(buf, spans)
        pending, self._pending = self._pending, None
        if pending is not None:
            if isinstance(runs[0], Run) and pending.try_extend(runs[0]):
                runs[0] = pending
            else:
                self._write(pending)
        last = runs.pop()
        for run in runs:
            if isinstance(run, Run):
                self._write(run)
            else:
                try:
                    writev(fd, (ZERO_VNET_HDR, run))
                    st.tun_packets += 1
                except OSError:
                    st.drop(TUN_WRITE_ERROR)
        if isinstance(last, Run) and last.open:
            self._hold(last, buf, pos)
        elif isinstance(last, Run):
            self._write(last)
        else:
            try:
                writev(fd, (ZERO_VNET_HDR, last))
                st.tun_packets += 1
            except OSError:
                st.drop(TUN_WRITE_ERROR)

    def _hold(self, run, buf, pos: int) -> None:
        """Hold *run* back, its payloads in *buf* copied to ``merged[pos:]`` (its header too: a view of *buf*)."""
        merged = memoryview(self.merged)
        payloads = []
        for p in run.payloads:
            if p.obj is buf:
                n = len(p)
                merged[pos : pos + n] = p
                p = merged[pos : pos + n]
                pos += n
            payloads.append(p)
        run.payloads = payloads
        run.hdr = bytes(run.hdr)
        self._pending = run
        self._end = pos

    def write_packet(self, packet) -> bool:
        """Write one packet of our own (an ICMP error), not counted; False when the write failed."""
        try:
            if self.vnet:
                os.writev(self._fd, (ZERO_VNET_HDR, packet))
            else:
                os.write(self._fd, packet)
            return True
        except OSError:
            return False

    def flush(self) -> None:
        """Write the held run, if any."""
        pending, self._pending = self._pending, None
        if pending is not None:
            self._write(pending)

    def _write(self, run) -> None:
        try:
            os.writev(self._fd, run.iov())
            self._st.tun_packets += 1
        except OSError:
            self._st.drop(TUN_WRITE_ERROR, run.count)


class TunIO:
    """The batch API of a TUN file descriptor: ``fd`` and ``vnet_hdr`` (each read and write has the virtio header)."""

    fd: int
    vnet_hdr: bool

    def reader(self, segment_tcp4) -> TunReader:
        """Reads of this TUN; *segment_tcp4* (a way's) cuts TCP super packets."""
        return TunReader(self.fd, self.vnet_hdr, segment_tcp4)

    def writer(self, stats) -> TunWriter:
        """Writes to this TUN, counted in *stats* (a DirectionStats)."""
        return TunWriter(self.fd, self.vnet_hdr, stats)
