"""The numpy way: each step over a whole batch in a fixed number of array operations (the default).

Segmenting a TSO super packet (``segment_tcp4``) and checking a received
GRO batch and cutting it into runs (``rx_runs``) are where the
forwarder's CPU time goes in Python (bench/checksum_bench.py); done per
segment they cost several times more.  Same interface and same results as
the python way, byte for byte: tests/unit/forwarder/test_ways.py runs
every way against the reference over the same inputs.
"""

from __future__ import annotations

import struct
import sys

import numpy as np

from ...checksum import pseudo_header_sum, raw_sum
from ...packet import PROTO_TCP, TCP_ACK, TCP_CWR, TCP_FIN, TCP_PSH, decrement_ttl
from ..tun.coalesce import VARYING, Run, invariant_key
from ..tun.segment import segment_tcp4 as _reference_segment_tcp4

NAME = "numpy"
DESCRIPTION = "offloads (TSO, UDP GSO/GRO), each batch in a few numpy operations"
OFFLOAD = True

_NATIVE16 = struct.Struct("=H")
_LITTLE = sys.byteorder == "little"
_U8, _U16, _U32, _U64 = np.uint8, np.uint16, np.uint32, np.uint64
_BE16, _BE32 = np.dtype(">u2"), np.dtype(">u4")


def _csum_vec(s):
    """Checksums (inverted end-around-carry folds) of non-zero unfolded sums.

    (s - 1) % 0xFFFF + 1 is the RFC 1071 fold: a multiple of 0xFFFF folds to
    0xFFFF, never to 0; the checksum is its complement.
    """
    return 0xFFFE - (s - 1) % 0xFFFF


def _field(buf, offset: int, rows: int, stride: int, dtype):
    """A strided view of one big-endian header field in each of *rows* packets."""
    return np.ndarray((rows,), dtype, buf, offset, (stride,))


def row_partial_sums(buf, start: int, length: int, rows: int, stride: int | None = None):
    """Sums of *rows* byte ranges of *length* bytes, congruent mod 0xFFFF to their ones'-complement sums.

    Row r covers ``buf[start + r*stride : start + r*stride + length]``;
    stride defaults to length (back to back).  *length* must be even.
    Values are unfolded (below 2**50): add them to other terms, fold once.
    """
    stride = length if stride is None else stride
    if length % 4 == 0:
        a = np.ndarray((rows, length >> 2), _U32, buf, start, (stride, 4))
        s = a.sum(axis=1, dtype=_U64)
        # Native little-endian words: the sum of byte-swapped 16-bit words is
        # the swapped sum, and swapping the bytes of x is x * 256 mod 0xFFFF.
        return s * 256 if _LITTLE else s
    a = np.ndarray((rows, length >> 1), _BE16, buf, start, (stride, 2))
    return a.sum(axis=1, dtype=_U64)


# Per-shape arrays of segment_tcp4 that do not depend on the packet's contents.
_SEG_CACHE: dict = {}
_ZEROS = bytes(65536)


def _seg_steps(count: int, mss: int):
    """(0..count-1 as uint16, i * mss mod 2**32 as uint32), cached per shape."""
    key = (count, mss)
    hit = _SEG_CACHE.get(key)
    if hit is None:
        if len(_SEG_CACHE) > 256:
            _SEG_CACHE.clear()
        i = np.arange(count, dtype=_U64)
        hit = _SEG_CACHE[key] = (i.astype(_U16), (i * mss & 0xFFFFFFFF).astype(_U32))
    return hit


def segment_tcp4(pkt, length: int, iphl: int, thl: int, mss: int, count: int, last: int, out) -> int:
    """tun.segment.segment_tcp4 over all the segments at once (same output, byte for byte); returns bytes written.

    Fewer than 3 segments or an odd mss (numpy's 16-bit views need even
    rows) go to the reference, which is cheaper for so few anyway.  One header template (total length, IP checksum and TCP flags of the
    middle segments) is copied to every row, the first and last rows are
    patched, then each segment's TCP header and payload are summed in one
    pass over the output rows.  With DF set every segment keeps the super
    packet's IP identifier (see offload.segment), so the IP header is the
    same for all full segments and needs no per-row work.
    """
    if count < 3 or mss & 1:
        return _reference_segment_tcp4(pkt, length, iphl, thl, mss, count, last, out)
    hl = iphl + thl
    seg = hl + mss
    full = count - 1
    lo = full * seg  # start of the last segment in *out*
    ltot = hl + last

    h = bytearray(pkt[:hl])
    s_ip = int.from_bytes(h[12:16], "big")
    d_ip = int.from_bytes(h[16:20], "big")
    ident0 = (h[4] << 8) | h[5]
    seq0 = int.from_bytes(h[iphl + 4 : iphl + 8], "big")
    flags0 = h[iphl + 13]
    fixed_id = h[6] & 0x40  # DF
    h[2:6] = b"\0\0\0\0"
    h[10:12] = b"\0\0"
    ip_base = raw_sum(h[:iphl])
    if fixed_id:
        ip_base += ident0
        h[4] = ident0 >> 8
        h[5] = ident0 & 0xFF
        c = 0xFFFE - (ip_base + seg - 1) % 0xFFFF
        h[10] = c >> 8
        h[11] = c & 0xFF
    h[2] = seg >> 8  # the total length of all segments but the last
    h[3] = seg & 0xFF
    h[iphl + 13] = flags0 & ~(TCP_FIN | TCP_PSH | TCP_CWR)
    fast = _LITTLE and not (seg - iphl) & 3
    if fast:
        # The TCP checksum field starts as the pseudo-header sum less one,
        # swapped to match the native-order row sums below (see there).
        _NATIVE16.pack_into(h, iphl + 16, (pseudo_header_sum(s_ip, d_ip, 6, thl + mss) * 256 - 1) % 0xFFFF)
    else:
        h[iphl + 16 : iphl + 18] = b"\0\0"

    o = np.ndarray((count, seg), _U8, out, 0, (seg, 1))
    o[:, :hl] = np.frombuffer(h, _U8)
    o[:full, hl:] = np.ndarray((full, mss), _U8, pkt, hl, (mss, 1))
    out[lo + hl : lo + ltot] = pkt[hl + full * mss : length]
    out[lo + 2] = ltot >> 8
    out[lo + 3] = ltot & 0xFF
    out[iphl + 13] = flags0 & ~(TCP_FIN | TCP_PSH)
    out[lo + iphl + 13] = flags0 & ~TCP_CWR
    if fast:
        _NATIVE16.pack_into(out, lo + iphl + 16, (pseudo_header_sum(s_ip, d_ip, 6, thl + last) * 256 - 1) % 0xFFFF)

    i16, i32 = _seg_steps(count, mss)
    if fixed_id:
        c = 0xFFFE - (ip_base + ltot - 1) % 0xFFFF
    else:
        # IPv4 identifiers (wrapping at 16 bits) and header checksums: every
        # segment but the last has total length *seg* (the last is redone below).
        ident = np.add(i16, ident0, dtype=_U16)
        _field(out, 4, count, seg, _BE16)[:] = ident
        ip = np.add(ident, ip_base + seg - 1, dtype=_U64)
        ip %= 0xFFFF
        np.subtract(0xFFFE, ip, out=_field(out, 10, count, seg, _BE16), casting="unsafe")
        c = 0xFFFE - (ip_base + ltot + ((ident0 + full) & 0xFFFF) - 1) % 0xFFFF
    out[lo + 10] = c >> 8
    out[lo + 11] = c & 0xFF
    np.add(i32, seq0, out=_field(out, iphl + 4, count, seg, _BE32), dtype=_U32, casting="unsafe")

    # zero the rest of the last row so that it can be summed like the others
    # (the zeros change no sum; *out* has room: callers give it a 2x margin)
    if ltot < seg:
        out[lo + ltot : lo + seg] = _ZEROS[: seg - ltot]
    if fast:
        # TCP checksums, summed in the byte order of the machine: a ones'
        # complement sum of byte-swapped words is the byte-swapped sum, so
        # the result is stored as a native 16-bit word, and the constant
        # terms in the field (pseudo header, TCP length) were swapped to
        # match (x * 256 == swap(x) mod 0xFFFF).  The field held the sum
        # less one, so 0xFFFE - s % 0xFFFF is the complement of the RFC 1071
        # fold of the true sum.
        tsum = np.ndarray((count, (seg - iphl) >> 2), _U32, out, iphl, (seg, 4)).sum(axis=1, dtype=_U64)
        tsum %= 0xFFFF
        np.subtract(0xFFFE, tsum, out=_field(out, iphl + 16, count, seg, _U16), casting="unsafe")
    else:  # big-endian hosts, or a length that is not a multiple of 4
        tsum = row_partial_sums(out, iphl, seg - iphl, count, seg)
        tsum += pseudo_header_sum(s_ip, d_ip, 6, thl + mss)
        tsum[full] += (last - mss) % 0xFFFF
        _field(out, iphl + 16, count, seg, _BE16)[:] = _csum_vec(tsum)
    return lo + ltot


def _row_ok(buf, o: int, doff: int, net: int, mask: int) -> bool:
    """What every row of a batch taken here must be, checked on the first row of each run (the others
    equal it in these bytes): IPv4 without options, TCP, not a fragment, TTL > 1, data offset *doff*,
    source inside net/mask (the sender's one subnet, routes.source_allowed)."""
    return not (
        buf[o] != 0x45
        or buf[o + 9] != PROTO_TCP
        or buf[o + 6] & 0x3F
        or buf[o + 7]
        or buf[o + 8] <= 1
        or buf[o + 32] != doff
        or int.from_bytes(buf[o + 12 : o + 16], "big") & mask != net
    )


# Per header length: native 32-bit words of an IPv4+TCP header, with the bytes
# in which the rows of one run differ (tun.coalesce.VARYING) zeroed.  The total
# length is compared too (the last row's is patched for it), and so are the TCP
# flags: a row with PSH (or anything but a plain ACK) stops the comparison.
_SAME_MASKS: dict = {}
# Sequence number offsets of the rows of one run: (k, mss) -> uint32 array.
_SEQ_STEPS: dict = {}
# Up to this many rows the per-packet path is cheaper than numpy's fixed cost per
# call (measured: 3 rows take twice as long per row here; 44 rows a few times less).
SMALL_BATCH = 6


def rx_runs(buf, n: int, seg: int, net: int, mask: int, out, room):
    """Check a GRO batch of TCP segments from one sender and cut it into ``Run``s, or return None.

    ``buf[:n]`` holds datagrams of *seg* bytes (the last may be shorter),
    each one IPv4 packet; *buf* must have room for a full last row.  When
    every datagram passes what the per-packet path checks (packet.check_ipv4_rows
    without IP options, TTL > 1, the source inside net/mask) and carries TCP
    with flags ACK or ACK|PSH and one data offset, returns the runs
    tun.coalesce.coalesce would make of them, the payloads copied to
    ``out[room():]`` back to back (*room* is asked once the batch is taken)
    and each header with its TTL decremented.
    Otherwise None: the caller takes the per-packet path, which handles and
    counts every other case.

    A run starting at row r (flags ACK) takes the following rows whose
    invariant bytes and flags equal row r's (one masked XOR of 32-bit
    words against row r) and whose sequence numbers continue row r's; the
    first row that differs still ends the run when it differs only by
    PSH.  A row r with PSH is a run of its own.  The last row's total
    length is patched to *seg* for the comparison (after checking it) and
    restored.  Typical batches hold one or two runs: a few numpy calls.
    Batches of up to SMALL_BATCH rows are left to the per-packet path.
    """
    k = -(-n // seg)
    last = n - (k - 1) * seg
    if k <= SMALL_BATCH or last <= 40 or seg <= 40 or buf[0] != 0x45 or buf[9] != PROTO_TCP:
        return None
    doff = buf[32]
    hl = 20 + ((doff >> 4) << 2)
    if hl < 40 or last <= hl or seg <= hl:
        return None
    lo = (k - 1) * seg
    if (buf[lo + 2] << 8 | buf[lo + 3]) != last:
        return None
    # every header checksum: a valid header sums to 0 mod 0xFFFF
    if (np.ndarray((k, 5), _U32, buf, 0, (seg, 4)).sum(axis=1, dtype=_U64) % 0xFFFF).any():
        return None
    m = _SAME_MASKS.get(hl)
    if m is None:
        mb = bytearray(b"\xff" * hl)
        for i in VARYING:
            mb[i] = 0
        m = _SAME_MASKS[hl] = np.frombuffer(bytes(mb), _U32)
    mss = seg - hl
    steps = _SEQ_STEPS.get((k, mss))
    if steps is None:
        if len(_SEQ_STEPS) > 256:
            _SEQ_STEPS.clear()
        steps = _SEQ_STEPS[(k, mss)] = (np.arange(k, dtype=_U64) * mss & 0xFFFFFFFF).astype(_U32)
    w = np.ndarray((k, hl >> 2), _U32, buf, 0, (seg, 4))
    seqs = _field(buf, 24, k, seg, _BE32)
    from_bytes = int.from_bytes
    bounds = []
    buf[lo + 2] = seg >> 8
    buf[lo + 3] = seg & 0xFF
    try:
        r = 0
        while r < k:
            o = r * seg
            flags = buf[o + 33]
            if (
                not _row_ok(buf, o, doff, net, mask)
                or (buf[o + 2] << 8 | buf[o + 3]) != seg
                or flags | TCP_PSH != TCP_ACK | TCP_PSH
            ):
                return None
            seq = from_bytes(buf[o + 24 : o + 28], "big")
            key = invariant_key(buf, o, hl)
            if flags != TCP_ACK:
                e = r + 1
            else:
                x = w[r:] ^ w[r]
                x &= m
                d = x.any(axis=1)
                d |= np.subtract(seqs[r:], seq, dtype=_U32) != steps[: k - r]
                i = int(d.argmax())  # row r never differs from itself: 0 means none does
                e = r + i if i else k
                if e < k:
                    # the first row that differs ends this run if it is its PSH
                    oe = e * seg
                    if (
                        buf[oe + 33] == TCP_ACK | TCP_PSH
                        and from_bytes(buf[oe + 24 : oe + 28], "big") == (seq + i * mss) & 0xFFFFFFFF
                        and invariant_key(buf, oe, hl) == key
                        and buf[oe + 8] == buf[o + 8]
                    ):
                        e += 1
            bounds.append((r, e, seq, key))
            r = e
    finally:
        buf[lo + 2] = last >> 8
        buf[lo + 3] = last & 0xFF
    return _runs(buf, bounds, k, seg, last, hl, out, room())  # (after the restore: a run may start at the last row)


def _runs(buf, bounds, k: int, seg: int, last: int, hl: int, out, pos: int) -> list:
    """Copy the payloads of all *k* rows to ``out[pos:]`` (in order, one copy) and make the ``Run`` of each bound.

    *bounds* holds (first row, end row, first sequence number, invariant
    key) per run, in order, covering every row.
    """
    mss = seg - hl
    np.ndarray((k - 1, mss), _U8, out, pos, (mss, 1))[:] = np.ndarray((k - 1, mss), _U8, buf, hl, (seg, 1))
    lo = (k - 1) * seg
    p = pos + (k - 1) * mss
    out[p : p + last - hl] = buf[lo + hl : lo + last]
    omv = memoryview(out)
    runs = []
    for r0, r1, seq, key in bounds:
        count = r1 - r0
        rlast = last if r1 == k else seg  # length of the run's last datagram
        plen = (count - 1) * mss + rlast - hl
        o0 = r0 * seg
        flags = buf[(r1 - 1) * seg + 33]
        hdr = bytearray(buf[o0 : o0 + hl])
        decrement_ttl(hdr)  # (> 1: checked)
        start = pos + r0 * mss
        runs.append(Run(hdr, [omv[start : start + plen]], plen, count, mss, seq, key, flags,
                        rlast == seg and flags == TCP_ACK))
    return runs
