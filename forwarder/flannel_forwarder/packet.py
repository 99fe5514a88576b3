"""IPv4 header parsing, validation, TTL rewrite and ICMP "net unreachable" (pure).

Functions work on a bytes-like buffer plus an offset so the data path can
use them on slices of a reused receive buffer without copying.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from .checksum import checksum, ones_sum

PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17

TCP_FIN = 0x01
TCP_SYN = 0x02
TCP_RST = 0x04
TCP_PSH = 0x08
TCP_ACK = 0x10
TCP_URG = 0x20
TCP_ECE = 0x40
TCP_CWR = 0x80

IPV4_MIN_HEADER = 20
IPV4_MAX_HEADER = 60
ICMP_DEST_UNREACH = 3
ICMP_NET_UNREACH = 0
# flanneld's udp proxy sends its ICMP errors with this TTL.
ICMP_REPLY_TTL = 8

# Drop reasons: stable strings, used as counter labels.
SHORT = "short"
BAD_VERSION = "bad_version"
BAD_HEADER = "bad_header"  # IHL out of range
BAD_LENGTH = "bad_length"  # total length disagrees with the buffer
BAD_CHECKSUM = "bad_checksum"
TTL_EXCEEDED = "ttl_exceeded"

DROP_REASONS = (SHORT, BAD_VERSION, BAD_HEADER, BAD_LENGTH, BAD_CHECKSUM, TTL_EXCEEDED)


class PacketError(ValueError):
    """A packet that must be dropped; ``reason`` is one of the drop reason strings."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class IPv4Header(NamedTuple):
    header_len: int  # bytes, 20..60
    total_len: int
    ttl: int
    proto: int
    src: int  # address as a 32-bit int
    dst: int
    frag: int  # flags + fragment offset word


_IPV4 = struct.Struct(">BBHHHBBH4s4s")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")


def check_ipv4_rows(buf, n: int, seg: int, drop) -> list:
    """The header rules every forwarded packet must pass, over each datagram of ``buf[:n]``.

    The datagrams are *seg* bytes each, the last may be shorter; each must
    be exactly one IPv4 packet: at least a minimal header, version 4, a
    header length inside the packet, the total length field equal to the
    datagram's, and a header checksum that verifies (a valid header sums to
    0 mod 0xFFFF).  Returns the offsets of those that pass; ``drop(reason)``
    is called once for each other.  (Rows at a time: the receive loop's
    cost per packet is here.)
    """
    ok = []
    from_bytes = int.from_bytes
    for off in range(0, n, seg):
        ln = n - off if n - off < seg else seg
        if ln < 20:
            drop(SHORT)
            continue
        b0 = buf[off]
        if b0 != 0x45:  # (the common case: no options)
            if b0 >> 4 != 4:
                drop(BAD_VERSION)
                continue
            hl = (b0 & 0x0F) << 2
            if hl < 20 or hl > ln:
                drop(BAD_HEADER)
                continue
        else:
            hl = 20
        if (buf[off + 2] << 8) | buf[off + 3] != ln:
            drop(BAD_LENGTH)
            continue
        if from_bytes(buf[off : off + hl], "big") % 0xFFFF:
            drop(BAD_CHECKSUM)
            continue
        ok.append(off)
    return ok


def check_ipv4(buf, off: int, length: int) -> int:
    """``check_ipv4_rows`` for the one packet ``buf[off:off+length]``: its header length, or ``PacketError``."""
    reasons = []
    if not check_ipv4_rows(memoryview(buf)[off : off + length], length, length or 1, reasons.append):
        raise PacketError(reasons[0] if reasons else SHORT, f"{length} bytes")
    return (buf[off] & 0x0F) << 2


def parse_ipv4(buf, off: int = 0, length: int | None = None) -> IPv4Header:
    """Validate the IPv4 packet at ``buf[off:off+length]`` (``check_ipv4``) and return its header fields."""
    if length is None:
        length = len(buf) - off
    hl = check_ipv4(buf, off, length)
    return IPv4Header(
        hl,
        length,
        buf[off + 8],
        buf[off + 9],
        int.from_bytes(buf[off + 12 : off + 16], "big"),
        int.from_bytes(buf[off + 16 : off + 20], "big"),
        (buf[off + 6] << 8) | buf[off + 7],
    )


def decrement_ttl(buf, off: int = 0) -> bool:
    """Decrement the TTL of the IPv4 header at *off* in place, patching the checksum.

    Returns False (and leaves the packet untouched) when the TTL would reach
    0: the packet must be dropped.  The TTL is the high byte of its 16-bit
    word, so the ones' complement sum drops by 0x100 and the checksum rises
    by 0x100, with the end-around carry (as the kernel's ip_decrease_ttl;
    a result of 0xFFFF, the other zero, is stored as 0).
    """
    ttl = buf[off + 8]
    if ttl <= 1:
        return False
    buf[off + 8] = ttl - 1
    hc = ((buf[off + 10] << 8) | buf[off + 11]) + 0x100
    if hc >= 0xFFFF:
        hc -= 0xFFFF
    buf[off + 10] = hc >> 8
    buf[off + 11] = hc & 0xFF
    return True


def icmp_net_unreachable(offender, src: int) -> bytes | None:
    """ICMP destination unreachable / net unreachable (type 3 code 0) for *offender*.

    Mirrors flanneld's udp proxy: sent from *src* (the TUN's address, a
    32-bit int) to the offender's source, TTL 8, quoting the offender's IP
    header and the first 8 bytes of its payload.  Returns None where RFC
    792/1812 say not to answer: the offender is ICMP, a non-first
    fragment, or is itself malformed/too short to quote.
    """
    n = len(offender)
    if n < IPV4_MIN_HEADER or offender[0] >> 4 != 4:
        return None
    hl = (offender[0] & 0x0F) << 2
    if hl < IPV4_MIN_HEADER or n < hl + 8:
        return None
    if offender[9] == PROTO_ICMP:
        return None
    if ((offender[6] << 8) | offender[7]) & 0x1FFF:
        return None
    quote = bytes(offender[: hl + 8])
    icmp = bytearray(8 + len(quote))
    icmp[0] = ICMP_DEST_UNREACH
    icmp[1] = ICMP_NET_UNREACH
    icmp[8:] = quote
    _U16.pack_into(icmp, 2, checksum(icmp))
    total = 20 + len(icmp)
    ip = bytearray(
        _IPV4.pack(0x45, 0, total, 0, 0, ICMP_REPLY_TTL, PROTO_ICMP, 0, _U32.pack(src), bytes(offender[12:16]))
    )
    _U16.pack_into(ip, 10, checksum(ip))
    return bytes(ip + icmp)


def build_ipv4_header(
    src: int,
    dst: int,
    proto: int,
    payload_len: int,
    *,
    ttl: int = 64,
    ident: int = 0,
    tos: int = 0,
    flags_frag: int = 0x4000,
    options: bytes = b"",
) -> bytes:
    """An IPv4 header with a valid checksum (helper for tests, benchmarks and probes)."""
    if len(options) % 4:
        raise ValueError("IPv4 options must be a multiple of 4 bytes")
    hl = 20 + len(options)
    hdr = bytearray(
        _IPV4.pack(
            0x40 | (hl >> 2),
            tos,
            hl + payload_len,
            ident,
            flags_frag,
            ttl,
            proto,
            0,
            _U32.pack(src),
            _U32.pack(dst),
        )
        + options
    )
    _U16.pack_into(hdr, 10, ~ones_sum(hdr) & 0xFFFF)
    return bytes(hdr)
