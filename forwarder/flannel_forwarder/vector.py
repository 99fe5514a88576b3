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
import sys

try:
    if os.environ.get("FLANNEL_FORWARDER_NO_NUMPY"):
        raise ImportError("disabled by FLANNEL_FORWARDER_NO_NUMPY")
    import numpy as np
except ImportError:  # pragma: no cover - depends on the environment
    np = None

from .checksum import fold, pseudo_header_sum, raw_sum

AVAILABLE = np is not None
_LITTLE = sys.byteorder == "little"
_TCP_FIN, _TCP_PSH, _TCP_ACK, _TCP_CWR = 0x01, 0x08, 0x10, 0x80

if AVAILABLE:
    _U8, _U16, _U32, _U64 = np.uint8, np.uint16, np.uint32, np.uint64
    _BE16, _BE32 = np.dtype(">u2"), np.dtype(">u4")
    _ARANGE = np.arange(1024, dtype=np.uint64)


def _fold_vec(s):
    """End-around-carry fold of non-zero sums: x mod 0xFFFF with 0 read as 0xFFFF."""
    r = s % 0xFFFF
    r[r == 0] = 0xFFFF
    return r


def _csum_vec(s):
    """Checksums (inverted folded sums) of non-zero sums."""
    return 0xFFFF - _fold_vec(s)


def _field(buf, offset: int, rows: int, stride: int, dtype):
    """A strided view of one big-endian header field in each of *rows* packets."""
    return np.ndarray((rows,), dtype, buf, offset, (stride,))


def row_sums(buf, start: int, length: int, rows: int, stride: int | None = None):
    """Folded (0..0xFFFF) ones'-complement sums of *rows* byte ranges of *length* bytes.

    Row r covers ``buf[start + r*stride : start + r*stride + length]``;
    stride defaults to length (back to back).  *length* must be even.
    """
    stride = length if stride is None else stride
    if length % 4 == 0:
        a = np.ndarray((rows, length >> 2), _U32, buf, start, (stride, 4))
        s = _fold_vec(a.sum(axis=1, dtype=_U64))
        if _LITTLE:
            s = ((s & 0xFF) << 8) | (s >> 8)
        return s
    a = np.ndarray((rows, length >> 1), _BE16, buf, start, (stride, 2))
    return _fold_vec(a.sum(axis=1, dtype=_U64))


def segment_tcp4(pkt, length: int, iphl: int, thl: int, mss: int, count: int, last: int, out) -> int:
    """Vectorised twin of offload._segment_tcp4 (same output, byte for byte); returns bytes written.

    Needs count >= 2 and an even mss (the caller falls back otherwise).
    """
    hl = iphl + thl
    seg = hl + mss
    full = count - 1
    src = np.frombuffer(pkt, _U8, length)
    o = np.ndarray((count, seg), _U8, out, 0, (seg, 1))
    o[:, :hl] = src[:hl]
    o[:full, hl:] = src[hl : hl + full * mss].reshape(full, mss)
    o[full, hl : hl + last] = src[hl + full * mss : length]

    tmpl = bytearray(pkt[:hl])
    s_ip = int.from_bytes(tmpl[12:16], "big")
    d_ip = int.from_bytes(tmpl[16:20], "big")
    ident0 = (tmpl[4] << 8) | tmpl[5]
    seq0 = int.from_bytes(tmpl[iphl + 4 : iphl + 8], "big")
    offword = tmpl[iphl + 12] << 8
    flags0 = tmpl[iphl + 13]
    tmpl[2:6] = b"\0\0\0\0"
    tmpl[10:12] = b"\0\0"
    ip_base = raw_sum(tmpl[:iphl])
    tmpl[iphl + 4 : iphl + 8] = b"\0\0\0\0"
    tmpl[iphl + 12 : iphl + 14] = b"\0\0"
    tmpl[iphl + 16 : iphl + 18] = b"\0\0"
    tcp_base = raw_sum(tmpl[iphl:hl]) + pseudo_header_sum(s_ip, d_ip, 6, 0)

    i = _ARANGE[:count] if count <= 1024 else np.arange(count, dtype=_U64)
    tot = np.full(count, seg, dtype=_U64)
    tot[full] = hl + last
    ident = (i + ident0) & 0xFFFF
    seq = (i * mss + seq0) & 0xFFFFFFFF
    flags = np.full(count, flags0 & ~(_TCP_FIN | _TCP_PSH | _TCP_CWR), dtype=_U64)
    flags[0] = flags0 & ~(_TCP_FIN | _TCP_PSH)
    flags[full] = flags0 & ~_TCP_CWR
    psum = np.empty(count, dtype=_U64)
    psum[:full] = row_sums(pkt, hl, mss, full)
    psum[full] = raw_sum(pkt[hl + full * mss : length])
    ipc = _csum_vec(tot + ident + ip_base)
    tcs = _csum_vec(tcp_base + thl + (tot - hl) + (seq >> 16) + (seq & 0xFFFF) + (flags | offword) + psum)

    _field(out, 2, count, seg, _BE16)[:] = tot
    _field(out, 4, count, seg, _BE16)[:] = ident
    _field(out, 10, count, seg, _BE16)[:] = ipc
    _field(out, iphl + 4, count, seg, _BE32)[:] = seq
    o[:, iphl + 13] = flags
    _field(out, iphl + 16, count, seg, _BE16)[:] = tcs
    return full * seg + hl + last


def rx_tcp_runs(buf, n: int, seg: int, net: int, mask: int, out):
    """Check a GRO batch of TCP segments and merge it into runs, or return None.

    ``buf[:n]`` holds datagrams of *seg* bytes (the last may be shorter),
    each one IPv4 packet; *buf* must have room for a full last row.
    Returns a list of ``(iov, count)``, one per TUN write, when every
    datagram is a valid IPv4 packet without options (total length ==
    datagram, header checksum, TTL > 1, source inside net/mask) carrying
    TCP with flags ACK or ACK|PSH and the same data offset.  Runs are what
    offload.coalesce would merge: consecutive rows with equal invariant
    header bytes and TCP options, contiguous sequence numbers, no PSH
    before the last.  Otherwise None: the caller takes the per-packet
    path, which handles and counts every other case.  *out* receives the
    merged payloads.
    """
    from .offload import F_NEEDS_CSUM, GSO_TCPV4, VNET_HDR_LEN, ZERO_VNET_HDR, _VNET  # no import cycle

    k = -(-n // seg)
    last = n - (k - 1) * seg
    if k < 2 or last < 40 or seg < 40 or buf[0] != 0x45:
        return None
    doff = buf[32]
    thl = (doff >> 4) << 2
    hl = 20 + thl
    if thl < 20 or last <= hl or seg <= hl:
        return None
    a = np.ndarray((k, seg), _U8, buf, 0, (seg, 1))  # last row: only its first *last* bytes are data
    # Validity of every row.
    if not (
        (a[:, 0] == 0x45).all()
        and (a[:, 9] == 6).all()
        and (a[:, 32] == doff).all()
        and (a[:, 8] > 1).all()
        and not (a[:, 6] & 0x3F).any()
        and not a[:, 7].any()
        and (a[:, 33] | _TCP_PSH == _TCP_ACK | _TCP_PSH).all()
    ):
        return None
    tot = _field(buf, 2, k, seg, _BE16)
    if not (tot[:-1] == seg).all() or int(tot[-1]) != last:
        return None
    if not ((_field(buf, 12, k, seg, _BE32) & mask) == net).all():
        return None
    if not (row_sums(buf, 0, 20, k, seg) == 0xFFFF).all():
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
    cont &= a[:-1, 33] == _TCP_ACK
    if cont.all():
        starts = [0]
    else:
        starts = [0, *(np.flatnonzero(~cont) + 1).tolist()]
    starts.append(k)
    writes = []
    pos = 0
    mv = memoryview(out)
    for r0, r1 in zip(starts, starts[1:]):
        count = r1 - r0
        rlast = last if r1 == k else seg  # length of the run's last datagram
        plen = (count - 1) * mss + rlast - hl
        o0 = r0 * seg
        hdr = bytearray(VNET_HDR_LEN + hl)
        hdr[VNET_HDR_LEN:] = buf[o0 : o0 + hl]
        ip = VNET_HDR_LEN
        hdr[ip + 8] -= 1  # TTL; the checksum is recomputed below
        if count == 1:
            hdr[:VNET_HDR_LEN] = ZERO_VNET_HDR
            payload = buf[o0 + hl : o0 + rlast]
        else:
            _VNET.pack_into(hdr, 0, F_NEEDS_CSUM, GSO_TCPV4, hl, mss, 20, 16)
            total = hl + plen
            hdr[ip + 2] = total >> 8
            hdr[ip + 3] = total & 0xFF
            hdr[ip + 33] = buf[(r1 - 1) * seg + 33]  # the last segment's flags (PSH)
            src = int.from_bytes(hdr[ip + 12 : ip + 16], "big")
            dst = int.from_bytes(hdr[ip + 16 : ip + 20], "big")
            ps = fold(pseudo_header_sum(src, dst, 6, total - 20))
            hdr[ip + 36] = ps >> 8
            hdr[ip + 37] = ps & 0xFF
            full = count if r1 < k else count - 1
            np.ndarray((full, mss), _U8, out, pos, (mss, 1))[:] = a[r0 : r0 + full, hl:]
            if full < count:
                lo = (k - 1) * seg
                out[pos + full * mss : pos + plen] = buf[lo + hl : lo + last]
            payload = mv[pos : pos + plen]
            pos += plen
        hdr[ip + 10] = hdr[ip + 11] = 0
        c = ~fold(raw_sum(hdr[ip : ip + 20])) & 0xFFFF
        hdr[ip + 10] = c >> 8
        hdr[ip + 11] = c & 0xFF
        writes.append(((hdr, payload), count))
    return writes


_INVARIANT_COLS: dict = {}
