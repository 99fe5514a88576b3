"""Internet checksum (RFC 1071) and TCP/UDP pseudo-header sums, tuned for CPython.

The ones'-complement sum of big-endian 16-bit words is congruent to the
whole buffer read as one big-endian integer modulo 0xFFFF (because
2**16 == 1 mod 0xFFFF).  ``int.from_bytes`` and ``%`` both run in C, which
makes this the cheapest pure-CPython method measured (see
bench/checksum_bench.py).  Pure Python: the numpy way of the data path
(udp/ways/numpy.py) sums whole batches with numpy itself.

Conventions: a *sum* is the ones'-complement sum folded to 16 bits, not
inverted, in the range 0..0xFFFF where 0 only stands for "all words zero".
A *checksum* is the inverted sum, as it goes on the wire.
"""

from __future__ import annotations

_from_bytes = int.from_bytes


def fold(total: int) -> int:
    """Fold a non-negative integer sum of 16-bit words to 16 bits (end-around carry).

    Gives exactly what RFC 1071's carry folding gives: 0 only when *total*
    is 0, otherwise a value in 1..0xFFFF.
    """
    r = total % 0xFFFF
    if r == 0 and total:
        return 0xFFFF
    return r


def ones_sum(data) -> int:
    """Ones'-complement sum of *data* (bytes-like), odd length padded with a zero byte."""
    x = _from_bytes(data, "big")
    if len(data) & 1:
        x <<= 8
    r = x % 0xFFFF
    if r == 0 and x:
        return 0xFFFF
    return r


def raw_sum(data) -> int:
    """A value congruent to the ones'-complement sum mod 0xFFFF (cheaper: no fold).

    Meant to be added to other partial sums before one final ``fold``.
    """
    if len(data) & 1:
        return (_from_bytes(data, "big") << 8) % 0xFFFF
    return _from_bytes(data, "big") % 0xFFFF


def checksum(data) -> int:
    """The internet checksum of *data* (what goes into an IPv4/ICMP header field)."""
    return ~ones_sum(data) & 0xFFFF


def pseudo_header_sum(src: int, dst: int, proto: int, length: int) -> int:
    """Unfolded sum of the IPv4 pseudo header (addresses as 32-bit ints)."""
    return (src >> 16) + (src & 0xFFFF) + (dst >> 16) + (dst & 0xFFFF) + proto + length


def transport_checksum(src: int, dst: int, proto: int, segment, udp: bool = False) -> int:
    """TCP/UDP checksum of *segment* (header with a zero checksum field, then data).

    For UDP a computed 0 is sent as 0xFFFF (RFC 768): 0 means "no checksum".
    """
    total = pseudo_header_sum(src, dst, proto, len(segment)) + raw_sum(segment)
    c = ~fold(total) & 0xFFFF
    if udp and c == 0:
        return 0xFFFF
    return c


def segment_sums(buf, start: int, seg_len: int, count: int) -> list:
    """Partial sums (congruent mod 0xFFFF) of *count* consecutive segments of *seg_len* bytes.

    The segments start at byte *start* of *buf*; the caller sums the shorter
    tail segment itself.  Values are suitable for adding before ``fold``.
    """
    mv = memoryview(buf)
    fb = _from_bytes
    end = start + seg_len * count
    if seg_len & 1:
        return [(fb(mv[o : o + seg_len], "big") << 8) % 0xFFFF for o in range(start, end, seg_len)]
    return [fb(mv[o : o + seg_len], "big") % 0xFFFF for o in range(start, end, seg_len)]


def reference_checksum(data) -> int:
    """Word-by-word RFC 1071 checksum: slow, obviously correct; for tests and benchmarks."""
    b = bytes(data)
    if len(b) & 1:
        b += b"\0"
    s = 0
    for i in range(0, len(b), 2):
        s += (b[i] << 8) | b[i + 1]
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF
