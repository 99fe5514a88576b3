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


class RxBatch:
    """Result of ``rx_tcp_batch``: the datagrams, checked, as one super packet."""

    __slots__ = ("header", "payload", "count", "nbytes")

    def __init__(self, header, payload, count, nbytes):
        self.header = header  # bytes: virtio header + IP/TCP header of the super packet
        self.payload = payload  # buffer: all payloads back to back
        self.count = count
        self.nbytes = nbytes  # wire bytes of the datagrams


def rx_tcp_batch(buf, n: int, seg: int, net: int, mask: int, out, max_size: int = 65535):
    """Check a GRO batch that is one TCP flow's consecutive segments and merge it, or return None.

    ``buf[:n]`` holds datagrams of *seg* bytes (the last may be shorter),
    each one IPv4 packet.  Returns an ``RxBatch`` when every datagram is a
    valid IPv4 packet (no options, total length == datagram, header
    checksum, TTL > 1, source inside net/mask), the batch is a run that
    offload.coalesce would merge whole, and it fits *max_size*.  Otherwise
    None: the caller takes the per-packet path, which handles and counts
    every case.  *out* receives the payloads.
    """
    from .offload import F_NEEDS_CSUM, GSO_TCPV4, VNET_HDR_LEN, _VNET  # no cycle at import time

    k = n // seg
    last = n - k * seg
    if last:
        k += 1
    else:
        last = seg
    if k < 2 or seg < 40 or last < 40:
        return None
    if buf[0] != 0x45 or buf[9] != 6:
        return None
    thl = (buf[32] >> 4) << 2
    hl = 20 + thl
    mss = seg - hl
    if thl < 20 or mss <= 0 or last <= hl or n - (k - 1) * hl > max_size:
        return None
    a = np.ndarray((k - 1, seg), _U8, buf, 0, (seg, 1))  # the full-size datagrams
    first = a[0]
    # Invariant bytes: ver/ihl, tos, frag, ttl, proto, addresses, ports, ack,
    # data offset, window, urgent pointer, TCP options.  Same in every row,
    # also in the last datagram.
    cols = _INVARIANT_COLS.get(hl)
    if cols is None:
        cols = _INVARIANT_COLS[hl] = np.array([0, 1, 6, 7, 8, 9, *range(12, 24), *range(28, 33), 34, 35, 38, 39,
                                               *range(40, hl)])
    if not (a[:, cols] == first[cols]).all():
        return None
    lo = (k - 1) * seg
    tail = buf[lo : lo + hl]
    if not (np.frombuffer(buf, _U8, hl, lo)[cols] == first[cols]).all():
        return None
    if first[6] & 0x3F or first[7] or first[8] <= 1:
        return None
    # flags: ACK on all but the last, ACK or ACK|PSH on the last
    if not (a[:, 33] == _TCP_ACK).all() or tail[33] not in (_TCP_ACK, _TCP_ACK | _TCP_PSH):
        return None
    if not (_field(buf, 2, k - 1, seg, _BE16) == seg).all() or ((tail[2] << 8) | tail[3]) != last:
        return None
    seqs = _field(buf, 24, k - 1, seg, _BE32).astype(_U64)
    seq0 = int(seqs[0])
    expect = (_ARANGE[: k - 1] * mss + seq0) & 0xFFFFFFFF if k - 1 <= 1024 else None
    if expect is None or not (seqs == expect).all():
        return None
    if int.from_bytes(tail[24:28], "big") != (seq0 + (k - 1) * mss) & 0xFFFFFFFF:
        return None
    src = int.from_bytes(buf[12:16], "big")
    if src & mask != net:
        return None
    # header checksums: a valid header sums to 0xFFFF
    if not (row_sums(buf, 0, 20, k - 1, seg) == 0xFFFF).all():
        return None
    if int.from_bytes(buf[lo : lo + 20], "big") % 0xFFFF:
        return None

    # All good: payloads back to back into *out*, one header in front.
    plen = (k - 1) * mss + (last - hl)
    p = np.ndarray((k - 1, mss), _U8, out, 0, (mss, 1))
    p[:] = a[:, hl:]
    out[(k - 1) * mss : plen] = buf[lo + hl : lo + last]
    h = bytearray(VNET_HDR_LEN + hl)
    _VNET.pack_into(h, 0, F_NEEDS_CSUM, GSO_TCPV4, hl, mss, 20, 16)
    h[VNET_HDR_LEN:] = buf[:hl]
    ip = VNET_HDR_LEN
    total = hl + plen
    h[ip + 2] = total >> 8
    h[ip + 3] = total & 0xFF
    h[ip + 8] -= 1  # TTL; checksum recomputed below
    h[ip + 10] = h[ip + 11] = 0
    c = ~fold(raw_sum(h[ip : ip + 20])) & 0xFFFF
    h[ip + 10] = c >> 8
    h[ip + 11] = c & 0xFF
    h[ip + 33] = tail[33]
    d_ip = int.from_bytes(h[ip + 16 : ip + 20], "big")
    ps = fold(pseudo_header_sum(src, d_ip, 6, total - 20))
    h[ip + 36] = ps >> 8
    h[ip + 37] = ps & 0xFF
    return RxBatch(bytes(h), memoryview(out)[:plen], k, n)


_INVARIANT_COLS: dict = {}
