"""numpy fast paths for the common case: a TSO super packet out, a GRO batch of one TCP flow in (pure).

Optional: ``AVAILABLE`` is False without numpy (or with
FLANNEL_FORWARDER_NO_NUMPY set) and callers then use the per-packet code
in offload.py, which is the reference these functions are tested against.
Each function does the whole batch in a fixed number of numpy calls
instead of a Python loop per segment; that is where the forwarder's CPU
time goes (see bench/checksum_bench.py).
"""

from __future__ import annotations

import os
import struct
import sys

try:
    if os.environ.get("FLANNEL_FORWARDER_NO_NUMPY"):
        raise ImportError("disabled by FLANNEL_FORWARDER_NO_NUMPY")
    import numpy as np
except ImportError:  # pragma: no cover - depends on the environment
    np = None

from .checksum import fold, pseudo_header_sum, raw_sum

AVAILABLE = np is not None

# virtio_net_hdr values, as in offload.py (which imports this module, so they
# cannot be imported from there without a cycle; a unit test keeps them equal).
VNET_HDR_LEN = 10
F_NEEDS_CSUM = 1
GSO_TCPV4 = 1
ZERO_VNET_HDR = bytes(VNET_HDR_LEN)
_VNET = struct.Struct("<BBHHHH")
_NATIVE16 = struct.Struct("=H")
_LITTLE = sys.byteorder == "little"
_TCP_FIN, _TCP_PSH, _TCP_ACK, _TCP_CWR = 0x01, 0x08, 0x10, 0x80

if AVAILABLE:
    _U8, _U16, _U32, _U64 = np.uint8, np.uint16, np.uint32, np.uint64
    _BE16, _BE32 = np.dtype(">u2"), np.dtype(">u4")
    _ARANGE = np.arange(1024, dtype=np.uint64)


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


def row_sums(buf, start: int, length: int, rows: int, stride: int | None = None):
    """Folded (1..0xFFFF, 0xFFFF for zero) ones'-complement sums of *rows* byte ranges (see row_partial_sums)."""
    return (row_partial_sums(buf, start, length, rows, stride) - 1) % 0xFFFF + 1


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
    """Vectorised twin of offload._segment_tcp4 (same output, byte for byte); returns bytes written.

    Needs count >= 2 and an even mss (the caller falls back otherwise).
    One header template (total length, IP checksum and TCP flags of the
    middle segments) is copied to every row, the first and last rows are
    patched, then each segment's TCP header and payload are summed in one
    pass over the output rows.  With DF set every segment keeps the super
    packet's IP identifier (see offload.segment), so the IP header is the
    same for all full segments and needs no per-row work.
    """
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
    h[iphl + 13] = flags0 & ~(_TCP_FIN | _TCP_PSH | _TCP_CWR)
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
    out[iphl + 13] = flags0 & ~(_TCP_FIN | _TCP_PSH)
    out[lo + iphl + 13] = flags0 & ~_TCP_CWR
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


class Run:
    """Consecutive TCP segments of one flow, payloads back to back in a buffer, not yet written.

    ``hdr`` is the first segment's IPv4+TCP header as received; ``iov()``
    builds what one TUN write needs.  ``can_extend`` tells whether the
    next batch's first run may continue it (see ``try_extend``).
    """

    __slots__ = ("hdr", "pos", "plen", "count", "mss", "next_seq", "key", "flags", "open")

    def __init__(self, hdr, pos, plen, count, mss, next_seq, key, flags, open_):
        self.hdr = hdr
        self.pos = pos
        self.plen = plen
        self.count = count
        self.mss = mss
        self.next_seq = next_seq
        self.key = key
        self.flags = flags
        self.open = open_

    def try_extend(self, other: "Run", max_size: int = 65535) -> bool:
        """Append *other* (whose payload must follow this one's in the buffer) if it continues this run."""
        if (
            self.open
            and other.pos == self.pos + self.plen
            and other.mss == self.mss
            and other.key == self.key
            and (self.next_seq == (int.from_bytes(other.hdr[24:28], "big")))
            and len(self.hdr) + self.plen + other.plen <= max_size
        ):
            self.plen += other.plen
            self.count += other.count
            self.next_seq = other.next_seq
            self.flags = other.flags
            self.open = other.open
            return True
        return False

    def iov(self, out) -> tuple:
        """(header, payload) for one TUN write: TTL decremented, checksums as the kernel wants them."""
        hl = len(self.hdr)
        h = bytearray(VNET_HDR_LEN + hl)
        h[VNET_HDR_LEN:] = self.hdr
        ip = VNET_HDR_LEN
        h[ip + 8] -= 1  # TTL (checked > 1 before); the IP checksum is recomputed below
        if self.count > 1:
            _VNET.pack_into(h, 0, F_NEEDS_CSUM, GSO_TCPV4, hl, self.mss, 20, 16)
            total = hl + self.plen
            h[ip + 2] = total >> 8
            h[ip + 3] = total & 0xFF
            h[ip + 33] = self.flags  # the last segment's (PSH)
            src = int.from_bytes(h[ip + 12 : ip + 16], "big")
            dst = int.from_bytes(h[ip + 16 : ip + 20], "big")
            ps = fold(pseudo_header_sum(src, dst, 6, total - 20))
            h[ip + 36] = ps >> 8
            h[ip + 37] = ps & 0xFF
        # (a lone segment keeps its own, complete TCP checksum and a zero virtio header)
        h[ip + 10] = h[ip + 11] = 0
        c = ~fold(raw_sum(h[ip : ip + 20])) & 0xFFFF
        h[ip + 10] = c >> 8
        h[ip + 11] = c & 0xFF
        return (h, memoryview(out)[self.pos : self.pos + self.plen])


def _row_ok(buf, o: int, doff: int, net: int, mask: int) -> bool:
    """The per-row checks every receive path makes: IPv4 without options, TCP, not a
    fragment, TTL > 1, data offset *doff*, source inside net/mask."""
    return not (
        buf[o] != 0x45
        or buf[o + 9] != 6
        or buf[o + 6] & 0x3F
        or buf[o + 7]
        or buf[o + 8] <= 1
        or buf[o + 32] != doff
        or int.from_bytes(buf[o + 12 : o + 16], "big") & mask != net
    )


def rx_tcp_runs(buf, n: int, seg: int, net: int, mask: int, out, pos: int = 0):
    """Check a GRO batch of TCP segments and cut it into runs, or return None.

    ``buf[:n]`` holds datagrams of *seg* bytes (the last may be shorter),
    each one IPv4 packet; *buf* must have room for a full last row.
    Returns a list of ``Run`` (payloads copied to ``out[pos:]``, back to
    back, in order) when every datagram is a valid IPv4 packet without
    options (total length == datagram, header checksum, TTL > 1, source
    inside net/mask) carrying TCP with flags ACK or ACK|PSH and the same
    data offset.  Runs are what offload.coalesce would merge: consecutive
    rows with equal invariant header bytes and TCP options, contiguous
    sequence numbers, no PSH before the last.  Otherwise None: the caller
    takes the per-packet path, which handles and counts every other case.
    """
    k = -(-n // seg)
    last = n - (k - 1) * seg
    if k < 2 or last < 40 or seg < 40 or buf[0] != 0x45:
        return None
    if k <= SMALL_BATCH or np is None:
        return _rx_tcp_runs_small(buf, n, seg, k, last, net, mask, out, pos)
    doff = buf[32]
    thl = (doff >> 4) << 2
    hl = 20 + thl
    if thl < 20 or last <= hl or seg <= hl:
        return None
    if k <= _FEW_RUNS_MAX:
        runs = _rx_few_runs(buf, k, seg, last, hl, doff, net, mask, out, pos)
        if runs is not None:
            return runs
    a = np.ndarray((k, seg), _U8, buf, 0, (seg, 1))  # last row: only its first *last* bytes are data
    # Per row: TCP flags, total length, header checksum.  Everything else
    # that must hold (version/IHL, fragment, TTL, protocol, data offset,
    # source address) is among the invariant bytes that every row of a run
    # shares with the run's first row: checked once per run, below.
    f = a[:, 33]
    if not ((f | _TCP_PSH) == _TCP_ACK | _TCP_PSH).all():
        return None
    tot = _field(buf, 2, k, seg, _BE16)
    if not (tot[:-1] == seg).all() or int(tot[-1]) != last:
        return None
    # a valid header sums to 0xFFFF, i.e. to 0 mod 0xFFFF
    if (row_partial_sums(buf, 0, 20, k, seg) % 0xFFFF).any():
        return None
    # Run boundaries: a row starts a new run unless it continues the previous one.
    cols = _INVARIANT_COLS.get(hl)
    if cols is None:
        cols = _INVARIANT_COLS[hl] = np.array(
            [0, 1, 6, 7, 8, 9, *range(12, 24), *range(28, 33), 34, 35, 38, 39, *range(40, hl)]
        )
    h = a[:, cols]
    mss = seg - hl
    seqs = _field(buf, 24, k, seg, _BE32).astype(_U64)
    cont = (h[1:] == h[:-1]).all(axis=1)
    cont &= seqs[1:] == (seqs[:-1] + mss) & 0xFFFFFFFF
    cont &= f[:-1] == _TCP_ACK
    if cont.all():
        starts = [0]
    else:
        starts = [0, *(np.flatnonzero(~cont) + 1).tolist()]
    for r0 in starts:
        if not _row_ok(buf, r0 * seg, doff, net, mask):
            return None
    starts.append(k)
    bounds = [(r0, r1, int(seqs[r0]), h[r0].tobytes()) for r0, r1 in zip(starts, starts[1:])]
    return _runs(buf, bounds, k, seg, last, hl, out, pos)


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
    runs = []
    for r0, r1, seq, key in bounds:
        count = r1 - r0
        rlast = last if r1 == k else seg  # length of the run's last datagram
        plen = (count - 1) * mss + rlast - hl
        o0 = r0 * seg
        flags = buf[(r1 - 1) * seg + 33]
        runs.append(
            Run(
                bytes(buf[o0 : o0 + hl]),
                pos + r0 * mss,
                plen,
                count,
                mss,
                (seq + plen) & 0xFFFFFFFF,
                key,
                flags,
                rlast == seg and flags == _TCP_ACK,
            )
        )
    return runs


# Per header length: native 32-bit words of an IPv4+TCP header, with the bytes
# that may differ between the rows of one run zeroed (identifier, header
# checksum, sequence number, TCP checksum).  The TCP flags are compared: a
# row with PSH (or anything but a plain ACK) stops the comparison.
_SAME_MASKS: dict = {}
# Sequence number offsets of the rows of one run: (k, mss) -> uint32 array.
_SEQ_STEPS: dict = {}
_FEW_RUNS_MAX = 1024  # batches of up to this many rows try _rx_few_runs first (0: never)


def _rx_few_runs(buf, k, seg, last, hl, doff, net, mask, out, pos):
    """rx_tcp_runs with fewer numpy calls for batches of a few runs (typically one or two).

    Returns the runs, or None when a check fails (the caller then takes
    the general path, which decides and gives the same answer).  A run
    starting at row r (flags ACK) takes the following rows whose
    invariant bytes and flags equal row r's (one masked XOR of 32-bit
    words against row r) and whose sequence numbers continue row r's; the
    first row that differs still ends the run when it differs only by
    PSH.  A row r with PSH is a run of its own.  The last row's total
    length is patched to *seg* for the comparison (after checking it) and
    restored.
    """
    lo = (k - 1) * seg
    if (buf[lo + 2] << 8 | buf[lo + 3]) != last:
        return None
    # every header checksum: a valid header sums to 0 mod 0xFFFF
    if (np.ndarray((k, 5), _U32, buf, 0, (seg, 4)).sum(axis=1, dtype=_U64) % 0xFFFF).any():
        return None
    m = _SAME_MASKS.get(hl)
    if m is None:
        mb = bytearray(b"\xff" * hl)
        for i in (4, 5, 10, 11, 24, 25, 26, 27, 36, 37):
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
                or flags | _TCP_PSH != _TCP_ACK | _TCP_PSH
            ):
                return None
            seq = from_bytes(buf[o + 24 : o + 28], "big")
            key = _invariant_key(buf, o, hl)
            if flags != _TCP_ACK:
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
                        buf[oe + 33] == _TCP_ACK | _TCP_PSH
                        and from_bytes(buf[oe + 24 : oe + 28], "big") == (seq + i * mss) & 0xFFFFFFFF
                        and _invariant_key(buf, oe, hl) == key
                    ):
                        e += 1
            bounds.append((r, e, seq, key))
            r = e
    finally:
        buf[lo + 2] = last >> 8
        buf[lo + 3] = last & 0xFF
    return _runs(buf, bounds, k, seg, last, hl, out, pos)  # (after the restore: a run may start at the last row)


# Below this many datagrams a plain Python pass is cheaper than numpy's fixed cost per call.
SMALL_BATCH = 6


def _invariant_key(buf, o: int, hl: int) -> bytes:
    """The bytes of one header at the _INVARIANT_COLS positions (same key as the numpy path)."""
    return bytes(
        buf[o : o + 2] + buf[o + 6 : o + 10] + buf[o + 12 : o + 24] + buf[o + 28 : o + 33]
        + buf[o + 34 : o + 36] + buf[o + 38 : o + hl]
    )


def _rx_tcp_runs_small(buf, n, seg, k, last, net, mask, out, pos):
    """rx_tcp_runs for a few datagrams, in plain Python (same checks, same runs)."""
    doff = buf[32]
    thl = (doff >> 4) << 2
    hl = 20 + thl
    if thl < 20 or last <= hl or seg <= hl:
        return None
    mss = seg - hl
    from_bytes = int.from_bytes
    runs = []
    run = None
    p = pos
    for r in range(k):
        o = r * seg
        ln = seg if r < k - 1 else last
        if (
            not _row_ok(buf, o, doff, net, mask)
            or buf[o + 33] | _TCP_PSH != _TCP_ACK | _TCP_PSH
            or (buf[o + 2] << 8 | buf[o + 3]) != ln
            or from_bytes(buf[o : o + 20], "big") % 0xFFFF
        ):
            return None
        key = _invariant_key(buf, o, hl)
        seq = from_bytes(buf[o + 24 : o + 28], "big")
        plen = ln - hl
        out[p : p + plen] = buf[o + hl : o + ln]
        flags = buf[o + 33]
        if run is not None and run.key == key and run.next_seq == seq and run.flags == _TCP_ACK and run.open:
            run.plen += plen
            run.count += 1
            run.next_seq = (seq + plen) & 0xFFFFFFFF
            run.flags = flags
            run.open = ln == seg and flags == _TCP_ACK
        else:
            run = Run(bytes(buf[o : o + hl]), p, plen, 1, mss, (seq + plen) & 0xFFFFFFFF, key, flags,
                      ln == seg and flags == _TCP_ACK)
            runs.append(run)
        p += plen
    return runs


_INVARIANT_COLS: dict = {}
_VALID_COLS = [0, 6, 7, 8, 9, 32] if AVAILABLE else None
