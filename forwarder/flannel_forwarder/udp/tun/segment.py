"""GSO segmentation: a TCP (or USO) super packet read from the TUN cut into MTU-sized IPv4 packets (pure).

With IFF_VNET_HDR and TUNSETOFFLOAD the TUN hands over TCP "super
packets" of up to 64 KB (one header, many MSS-sized payloads) whose
checksum is left to finish.  The wire format of flannel's udp backend is
one MTU-sized IPv4 packet per datagram with valid checksums, so
``segment`` cuts a super packet into packets laid out back to back in one
buffer, every one the same size except the last: the layout one
UDP_SEGMENT send wants.  The per-segment TCP work is a way's step
(``ways``: numpy does it in a fixed number of array operations; this
module's ``segment_tcp4`` is the plain reference every way is tested
against).
"""

from __future__ import annotations

import struct
from typing import Callable, NamedTuple

from ...checksum import fold, pseudo_header_sum, raw_sum, segment_sums
from ...packet import BAD_HEADER, BAD_LENGTH, PROTO_TCP, PROTO_UDP, SHORT, TCP_CWR, TCP_FIN, TCP_PSH, PacketError
from .virtio import F_NEEDS_CSUM, GSO_ECN, GSO_NONE, GSO_TCPV4, GSO_UDP_L4, VirtioNetHdr

GSO_UNSUPPORTED = "gso_unsupported"
BAD_GSO = "bad_gso"

# Most bytes one super packet may be cut into.  The kernel's gso_size is the
# MSS of the TUN's MTU, so a 64 KB packet grows by a few percent; a bad
# virtio header (gso_size 1) would ask for megabytes of headers.
MAX_SEGMENTED = 4 * 65536

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_TOT_ID = struct.Struct(">HH")


class Segmented(NamedTuple):
    total: int  # bytes written to the output buffer
    seg_size: int  # size of every segment but the last
    count: int


def _split(plen: int, mss: int) -> tuple[int, int]:
    count = -(-plen // mss) if plen else 1
    return count, plen - mss * (count - 1)


def segment(hdr: VirtioNetHdr, pkt, out, length: int | None = None, tcp4: Callable | None = None) -> Segmented:
    """Cut the GSO super packet *pkt* (IPv4, no virtio header) into *out*.

    Segments are laid out back to back, each ``seg_size`` bytes except the
    last which may be shorter, each with a complete IPv4 header (length and
    checksum rewritten, options kept) and a complete TCP or UDP header and
    checksum.  The IPv4 identifier is incremented from segment to segment,
    except for TCP with DF set: then every segment keeps the super packet's
    identifier, as a NIC with NETIF_F_TSO_MANGLEID does (RFC 6864: the
    field of an atomic datagram carries nothing), which makes every full
    segment's IP header the same.  A packet whose gso_type is
    NONE is copied with its checksum completed when NEEDS_CSUM is set.
    Raises ``PacketError``; *out* must hold the result (len(pkt) plus one
    header per segment) plus one more segment of slack; a packet whose
    segments would take more than MAX_SEGMENTED bytes is refused (BAD_GSO).
    *tcp4* does the TCP segments' work (a way's ``segment_tcp4``; by default
    this module's reference).
    """
    if length is None:
        length = len(pkt)
    if length < 20:
        raise PacketError(SHORT, f"{length} bytes")
    gso = hdr.gso_type & ~GSO_ECN
    if gso == GSO_NONE:
        out[:length] = pkt[:length]
        if hdr.flags & F_NEEDS_CSUM:
            complete_checksum(out, 0, length, hdr.csum_start, hdr.csum_offset)
        return Segmented(length, length, 1)
    if gso == GSO_TCPV4:
        return _segment_tcp4(pkt, length, hdr.gso_size, out, tcp4 or segment_tcp4)
    if gso == GSO_UDP_L4:
        return _segment_udp4(pkt, length, hdr.gso_size, out)
    raise PacketError(GSO_UNSUPPORTED, f"gso_type {hdr.gso_type}")


def _check_room(count: int, seg_size: int) -> None:
    if count * seg_size > MAX_SEGMENTED:
        raise PacketError(BAD_GSO, f"{count} segments of {seg_size} bytes")


def _ip_parts(pkt, length: int, proto: int) -> int:
    if pkt[0] >> 4 != 4:
        raise PacketError(BAD_HEADER, "GSO packet is not IPv4")
    iphl = (pkt[0] & 0x0F) << 2
    if iphl < 20 or pkt[9] != proto:
        raise PacketError(BAD_HEADER, "GSO packet header/protocol")
    if ((pkt[2] << 8) | pkt[3]) not in (length, 0):
        raise PacketError(BAD_LENGTH)
    return iphl


def _segment_tcp4(pkt, length: int, mss: int, out, tcp4) -> Segmented:
    iphl = _ip_parts(pkt, length, PROTO_TCP)
    if length < iphl + 20:
        raise PacketError(SHORT, "TCP header")
    thl = (pkt[iphl + 12] >> 4) << 2
    hl = iphl + thl
    if thl < 20 or hl > length:
        raise PacketError(BAD_HEADER, "TCP data offset")
    if mss <= 0:
        raise PacketError(BAD_GSO, "gso_size 0")
    plen = length - hl
    count, last = _split(plen, mss)
    seg_size = hl + mss
    _check_room(count, seg_size)
    return Segmented(tcp4(pkt, length, iphl, thl, mss, count, last, out), seg_size, count)


def segment_tcp4(pkt, length: int, iphl: int, thl: int, mss: int, count: int, last: int, out) -> int:
    """Cut a checked TCP super packet into *count* segments of *mss* payload bytes (the last *last*) in *out*.

    The reference, one segment at a time; returns the bytes written.
    """
    hl = iphl + thl
    tmpl = bytearray(pkt[:hl])
    src = int.from_bytes(tmpl[12:16], "big")
    dst = int.from_bytes(tmpl[16:20], "big")
    ident0 = (tmpl[4] << 8) | tmpl[5]
    id_step = 0 if tmpl[6] & 0x40 else 1  # DF: every segment keeps the identifier (see segment)
    seq0 = int.from_bytes(tmpl[iphl + 4 : iphl + 8], "big")
    offword = tmpl[iphl + 12] << 8
    flags0 = tmpl[iphl + 13]
    # Sums of the header parts that do not change from segment to segment.
    tmpl[2:6] = b"\0\0\0\0"
    tmpl[10:12] = b"\0\0"
    ip_base = raw_sum(tmpl[:iphl])
    tmpl[iphl + 4 : iphl + 8] = b"\0\0\0\0"
    tmpl[iphl + 12 : iphl + 14] = b"\0\0"
    tmpl[iphl + 16 : iphl + 18] = b"\0\0"
    tcp_base = raw_sum(tmpl[iphl:hl]) + pseudo_header_sum(src, dst, PROTO_TCP, 0)
    tmpl = bytes(pkt[:hl])

    sums = segment_sums(pkt, hl, mss, count - 1)
    sums.append(raw_sum(pkt[hl + mss * (count - 1) : length]))
    mid_flags = flags0 & ~(TCP_FIN | TCP_PSH | TCP_CWR)
    pack_tot_id = _TOT_ID.pack_into
    pack16 = _U16.pack_into
    pack32 = _U32.pack_into
    src_off = hl
    o = 0
    for i in range(count):
        ln = mss if i < count - 1 else last
        out[o : o + hl] = tmpl
        out[o + hl : o + hl + ln] = pkt[src_off : src_off + ln]
        tot = hl + ln
        ident = (ident0 + i * id_step) & 0xFFFF
        if i == count - 1:
            flags = flags0 if i == 0 else flags0 & ~TCP_CWR
        elif i == 0:
            flags = flags0 & ~(TCP_FIN | TCP_PSH)
        else:
            flags = mid_flags
        seq = (seq0 + i * mss) & 0xFFFFFFFF
        pack_tot_id(out, o + 2, tot, ident)
        pack16(out, o + 10, ~fold(ip_base + tot + ident) & 0xFFFF)
        pack32(out, o + iphl + 4, seq)
        out[o + iphl + 13] = flags
        pack16(
            out,
            o + iphl + 16,
            ~fold(tcp_base + thl + ln + (seq >> 16) + (seq & 0xFFFF) + (offword | flags) + sums[i]) & 0xFFFF,
        )
        o += tot
        src_off += ln
    return o


def _segment_udp4(pkt, length: int, mss: int, out) -> Segmented:
    iphl = _ip_parts(pkt, length, PROTO_UDP)
    hl = iphl + 8
    if length < hl:
        raise PacketError(SHORT, "UDP header")
    if mss <= 0:
        raise PacketError(BAD_GSO, "gso_size 0")
    plen = length - hl
    count, last = _split(plen, mss)
    _check_room(count, hl + mss)
    tmpl = bytearray(pkt[:hl])
    src = int.from_bytes(tmpl[12:16], "big")
    dst = int.from_bytes(tmpl[16:20], "big")
    ident0 = (tmpl[4] << 8) | tmpl[5]
    tmpl[2:6] = b"\0\0\0\0"
    tmpl[10:12] = b"\0\0"
    ip_base = raw_sum(tmpl[:iphl])
    udp_base = (tmpl[iphl] << 8 | tmpl[iphl + 1]) + (tmpl[iphl + 2] << 8 | tmpl[iphl + 3])
    udp_base += pseudo_header_sum(src, dst, PROTO_UDP, 0)
    tmpl = bytes(pkt[:hl])
    sums = segment_sums(pkt, hl, mss, count - 1)
    sums.append(raw_sum(pkt[hl + mss * (count - 1) : length]))
    o = 0
    src_off = hl
    for i in range(count):
        ln = mss if i < count - 1 else last
        out[o : o + hl] = tmpl
        out[o + hl : o + hl + ln] = pkt[src_off : src_off + ln]
        tot = hl + ln
        ident = (ident0 + i) & 0xFFFF
        _TOT_ID.pack_into(out, o + 2, tot, ident)
        _U16.pack_into(out, o + 10, ~fold(ip_base + tot + ident) & 0xFFFF)
        ulen = 8 + ln
        # The UDP length appears twice in the sum: in the pseudo header and in the header.
        c = ~fold(udp_base + ulen + ulen + sums[i]) & 0xFFFF
        _TOT_ID.pack_into(out, o + iphl + 4, ulen, c or 0xFFFF)
        o += tot
        src_off += ln
    return Segmented(o, hl + mss, count)


def complete_checksum(buf, off: int, length: int, csum_start: int, csum_offset: int) -> None:
    """Finish a CHECKSUM_PARTIAL packet in place.

    The field at csum_start + csum_offset holds the pseudo-header sum; the
    checksum covers everything from csum_start to the end.  UDP (field at
    offset 6) never gets 0 (RFC 768).
    """
    start = off + csum_start
    field = start + csum_offset
    end = off + length
    if csum_start < 20 or field + 2 > end:
        raise PacketError(BAD_HEADER, "checksum offsets")
    c = ~fold(raw_sum(buf[start:end])) & 0xFFFF
    if c == 0 and csum_offset == 6:
        c = 0xFFFF
    buf[field] = c >> 8
    buf[field + 1] = c & 0xFF
