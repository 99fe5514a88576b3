"""Packet builders for the forwarder unit tests, written plainly on purpose."""

import struct

from flannel_forwarder.checksum import reference_checksum
from flannel_forwarder.packet import build_ipv4_header

SRC = 0x0A050102  # 10.5.1.2
DST = 0x0A050203  # 10.5.2.3


def pseudo(src, dst, proto, length):
    return struct.pack(">IIBBH", src, dst, 0, proto, length)


def tcp_segment(src, dst, payload, *, seq=1000, ack=77, flags=0x18, options=b"", window=502, sport=40000, dport=5201):
    assert len(options) % 4 == 0
    doff = (20 + len(options)) // 4
    hdr = struct.pack(">HHIIBBHHH", sport, dport, seq, ack, doff << 4, flags, window, 0, 0) + options
    c = reference_checksum(pseudo(src, dst, 6, len(hdr) + len(payload)) + hdr + payload)
    return hdr[:16] + struct.pack(">H", c) + hdr[18:] + payload


def udp_datagram(src, dst, payload, sport=5000, dport=6000):
    hdr = struct.pack(">HHHH", sport, dport, 8 + len(payload), 0)
    c = reference_checksum(pseudo(src, dst, 17, 8 + len(payload)) + hdr + payload) or 0xFFFF
    return hdr[:6] + struct.pack(">H", c) + payload


def ipv4(src, dst, proto, l4, *, ttl=64, ident=0x1234, options=b"", tos=0, flags_frag=0x4000):
    return build_ipv4_header(src, dst, proto, len(l4), ttl=ttl, ident=ident, options=options, tos=tos, flags_frag=flags_frag) + l4


def tcp_packet(payload, *, src=SRC, dst=DST, ip_options=b"", ident=0x1234, ttl=64, **kw):
    return ipv4(src, dst, 6, tcp_segment(src, dst, payload, **kw), options=ip_options, ident=ident, ttl=ttl)


def l4_checksum_ok(pkt):
    """Verify the TCP/UDP checksum of a complete IPv4 packet with the reference implementation."""
    hl = (pkt[0] & 15) * 4
    src, dst = struct.unpack(">II", pkt[12:20])
    l4 = bytes(pkt[hl:])
    return reference_checksum(pseudo(src, dst, pkt[9], len(l4)) + l4) == 0


def ip_checksum_ok(pkt):
    hl = (pkt[0] & 15) * 4
    return reference_checksum(bytes(pkt[:hl])) == 0


def payload_bytes(n, seed=1):
    return bytes((i * 131 + seed * 7 + (i >> 8)) & 0xFF for i in range(n))
