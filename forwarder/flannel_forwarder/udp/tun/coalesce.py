"""GRO-style coalescing: consecutive TCP segments of one flow merged into one TUN write (pure).

The UDP -> TUN direction receives MTU-sized packets; the kernel takes a
TCP "super packet" of up to 64 KB in one TUN write (virtio header GSO
TCPV4 + NEEDS_CSUM: it finishes the checksums and cuts it again if it must
forward it).  What may merge is written here once: ``invariant_key`` (the
header bytes every segment of a run shares with the first), ``Run`` (a
run and the one TUN write it becomes) and ``coalesce``, the reference that
groups checked packets one by one.  The numpy way (``ways/numpy.py``)
finds the same runs in a whole receive batch at once, with the same key,
and is tested against ``coalesce``.
"""

from __future__ import annotations

import struct

from ...checksum import fold, pseudo_header_sum, raw_sum
from ...packet import PROTO_TCP, TCP_ACK, TCP_PSH
from .virtio import VNET_HDR_LEN, ZERO_VNET_HDR, pack_gso_tcpv4

# Largest IPv4 packet; also the ceiling of one coalesced TUN write.
MAX_IP_PACKET = 65535
_SEQ_MASK = 0xFFFFFFFF


# Header bytes (IPv4 without options, then TCP) in which the segments of one run
# differ: identifier, header checksum, sequence number, TCP checksum.  The total
# length (2, 3), the TTL (8) and the TCP flags (33) have rules of their own: the
# last segment may be shorter, the TTL is compared as forwarded (one less), and
# PSH ends a run.
VARYING = (4, 5, 10, 11, 24, 25, 26, 27, 36, 37)
OWN_RULES = (2, 3, 8, 33)


def invariant_offsets(hl: int) -> list:
    """Offsets of the header bytes every segment of a run shares with its first (all but VARYING and OWN_RULES).

    The TCP options (40..hl) are included: segments with other timestamps
    do not merge, as the kernel's GRO would not merge them either.
    """
    return [i for i in range(hl) if i not in VARYING and i not in OWN_RULES]


# invariant_offsets(hl)[:28], the fixed IPv4 + TCP part, in one unpack (the options follow on their own).
_KEY = struct.Struct(">2s4x2sxs2x12s4x5sx2s2x2s")


def invariant_key(buf, o: int, hl: int) -> tuple:
    """The bytes at ``invariant_offsets(hl)`` of the header at *o*, as one comparable key."""
    return (*_KEY.unpack_from(buf, o), bytes(buf[o + 40 : o + hl]))


class Run:
    """Consecutive TCP segments of one flow, not yet written; ``iov()`` is the one TUN write they become.

    ``hdr`` is the first segment's IPv4 + TCP header as it is forwarded
    (TTL already decremented, header checksum valid); ``payloads`` the
    segments' payloads in order; ``key`` their ``invariant_key``.  ``open`` tells whether a following
    segment may still continue the run (the last one was full-sized and
    had no PSH); ``try_extend`` appends another run that does.  A run of
    one segment is written as it is.
    """

    __slots__ = ("hdr", "payloads", "plen", "count", "mss", "seq", "next_seq", "key", "flags", "open")

    def __init__(self, hdr, payloads, plen, count, mss, seq, key, flags, open_):
        self.hdr = hdr
        self.payloads = payloads
        self.plen = plen
        self.count = count
        self.mss = mss
        self.seq = seq  # of the first segment
        self.next_seq = (seq + plen) & _SEQ_MASK
        self.key = key
        self.flags = flags  # the last segment's TCP flags
        self.open = open_

    def try_extend(self, other: "Run", max_size: int = MAX_IP_PACKET) -> bool:
        """Append *other* if it continues this run (same flow and key, next sequence number, size left)."""
        if (
            self.open
            and other.key == self.key
            and other.mss == self.mss
            and other.seq == self.next_seq
            and other.hdr[8] == self.hdr[8]
            and len(self.hdr) + self.plen + other.plen <= max_size
        ):
            self.payloads += other.payloads
            self.plen += other.plen
            self.count += other.count
            self.next_seq = other.next_seq
            self.flags = other.flags
            self.open = other.open
            return True
        return False

    def iov(self) -> tuple:
        """The buffers of one TUN write: virtio header, IPv4 + TCP header, payloads."""
        if self.count == 1:  # a packet of its own, checksums complete
            return (ZERO_VNET_HDR, self.hdr, *self.payloads)
        hl = len(self.hdr)
        h = bytearray(VNET_HDR_LEN + hl)
        pack_gso_tcpv4(h, hl, self.mss)
        h[VNET_HDR_LEN:] = self.hdr
        ip = VNET_HDR_LEN
        total = hl + self.plen
        h[ip + 2] = total >> 8
        h[ip + 3] = total & 0xFF
        h[ip + 33] = self.flags  # the last segment's (PSH)
        h[ip + 10] = h[ip + 11] = 0
        c = ~fold(raw_sum(h[ip : ip + 20])) & 0xFFFF
        h[ip + 10] = c >> 8
        h[ip + 11] = c & 0xFF
        # CHECKSUM_PARTIAL: the TCP checksum field holds the folded pseudo-header sum, not inverted.
        src = int.from_bytes(h[ip + 12 : ip + 16], "big")
        dst = int.from_bytes(h[ip + 16 : ip + 20], "big")
        ps = fold(pseudo_header_sum(src, dst, PROTO_TCP, total - 20))
        h[ip + 36] = ps >> 8
        h[ip + 37] = ps & 0xFF
        return (h, *self.payloads)


def coalesce(buf, spans, max_size: int = MAX_IP_PACKET) -> list:
    """Group the forwarded packets ``buf[off:off+len]`` (each (off, len) of *spans*, in order) into TUN writes.

    Consecutive TCP segments of one flow merge into a ``Run`` (IPv4
    without options, not a fragment, flags ACK or ACK|PSH, a payload,
    equal ``invariant_key``, contiguous sequence numbers, equal payload
    sizes but a shorter last one, no PSH before the last, at most
    *max_size* bytes); any other packet stays a memoryview of itself, to
    be written alone (a plain virtio header before it).  The packets'
    TTLs and header checksums must already be final.
    """
    mv = memoryview(buf)
    runs = []
    run = None
    for off, ln in spans:
        if ln > 40 and buf[off] == 0x45 and buf[off + 9] == PROTO_TCP and not (buf[off + 6] & 0x3F or buf[off + 7]):
            hl = 20 + ((buf[off + 32] >> 4) << 2)
            flags = buf[off + 33]
            plen = ln - hl
            if plen > 0 and hl >= 40 and flags | TCP_PSH == TCP_ACK | TCP_PSH:
                key = invariant_key(buf, off, hl)
                seq = int.from_bytes(buf[off + 24 : off + 28], "big")
                if (
                    run is not None
                    and run.open
                    and seq == run.next_seq
                    and plen <= run.mss
                    and key == run.key
                    and buf[off + 8] == run.hdr[8]
                    and hl + run.plen + plen <= max_size
                ):
                    run.payloads.append(mv[off + hl : off + ln])
                    run.plen += plen
                    run.count += 1
                    run.next_seq = (seq + plen) & _SEQ_MASK
                    run.flags = flags
                    run.open = plen == run.mss and flags == TCP_ACK
                    continue
                run = Run(mv[off : off + hl], [mv[off + hl : off + ln]], plen, 1, plen, seq, key, flags, flags == TCP_ACK)
                runs.append(run)
                continue
        run = None
        runs.append(mv[off : off + ln])
    return runs
