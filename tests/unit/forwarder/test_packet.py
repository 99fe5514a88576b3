import struct

import pytest

from flannel_forwarder import packet as P
from flannel_forwarder.checksum import reference_checksum
from fwd_packets import SRC, DST, ip_checksum_ok, tcp_packet, ipv4, udp_datagram


def test_parse_valid():
    pkt = tcp_packet(b"hello")
    h = P.parse_ipv4(pkt)
    assert (h.header_len, h.total_len, h.ttl, h.proto, h.src, h.dst) == (20, len(pkt), 64, 6, SRC, DST)


def test_parse_with_options():
    pkt = tcp_packet(b"x" * 10, ip_options=b"\x01\x01\x01\x00")
    assert P.parse_ipv4(pkt).header_len == 24


@pytest.mark.parametrize(
    "mutate,reason",
    [
        (lambda p: p[:19], P.SHORT),
        (lambda p: bytes([0x65]) + p[1:], P.BAD_VERSION),
        (lambda p: bytes([0x44]) + p[1:], P.BAD_HEADER),
        (lambda p: bytes([0x4F]) + p[1:], P.BAD_HEADER),
        (lambda p: p + b"\0", P.BAD_LENGTH),
        (lambda p: p[:-1], P.BAD_LENGTH),
        (lambda p: p[:8] + bytes([p[8] - 1]) + p[9:], P.BAD_CHECKSUM),
    ],
)
def test_parse_rejects(mutate, reason):
    with pytest.raises(P.PacketError) as e:
        P.parse_ipv4(mutate(tcp_packet(b"payload")))
    assert e.value.reason == reason
    # check_ipv4 and parse_ipv4 are check_ipv4_rows, the rule the receive loop applies (udp.loops.check_datagrams)
    pkt = b"xx" + mutate(tcp_packet(b"payload"))
    with pytest.raises(P.PacketError) as e:
        P.check_ipv4(pkt, 2, len(pkt) - 2)
    assert e.value.reason == reason
    good = tcp_packet(b"payload")
    bad = mutate(good)
    if len(bad) == len(good):  # (rows of one size: a GRO batch)
        dropped = []
        assert P.check_ipv4_rows(good + bad + good, 3 * len(good), len(good), dropped.append) == [0, 2 * len(good)]
        assert dropped == [reason]


@pytest.mark.parametrize("options", [b"", b"\x01\x01\x01\x00", bytes(40)])
def test_check_returns_the_header_length(options):
    pkt = b"\0" * 3 + tcp_packet(b"x", ip_options=options)
    assert P.check_ipv4(pkt, 3, len(pkt) - 3) == 20 + len(options)


@pytest.mark.parametrize("ttl", [2, 3, 64, 128, 255])
@pytest.mark.parametrize("ident", [0, 0x1234, 0xFFFF, 0xFEFF, 0x00FF])
def test_decrement_ttl_keeps_checksum_valid(ttl, ident):
    buf = bytearray(tcp_packet(b"abc", ttl=ttl, ident=ident))
    assert P.decrement_ttl(buf)
    assert buf[8] == ttl - 1
    assert ip_checksum_ok(buf)
    # and equals a full recomputation
    full = bytearray(buf[:20])
    full[10:12] = b"\0\0"
    full[10:12] = struct.pack(">H", reference_checksum(full))
    assert full[10:12] == buf[10:12] or {bytes(full[10:12]), bytes(buf[10:12])} == {b"\0\0", b"\xff\xff"}


def test_decrement_ttl_exhaustive_checksum_values():
    # Drive the stored checksum through every value region, including the wrap case.
    hdr = bytearray(tcp_packet(b"", ttl=9)[:20])
    for hc in range(0, 0x10000, 97):
        buf = bytearray(hdr)
        struct.pack_into(">H", buf, 10, hc)
        before = (sum(struct.unpack(">10H", bytes(buf))) % 0xFFFF)
        assert P.decrement_ttl(buf)
        after = (sum(struct.unpack(">10H", bytes(buf))) % 0xFFFF)
        assert before == after  # checksum still balances the header


@pytest.mark.parametrize("ttl", [0, 1])
def test_decrement_ttl_at_one_drops(ttl):
    buf = bytearray(tcp_packet(b"abc", ttl=ttl))
    orig = bytes(buf)
    assert not P.decrement_ttl(buf)
    assert bytes(buf) == orig


def test_icmp_net_unreachable():
    off = tcp_packet(b"0123456789abcdef")
    tun_addr = 0x0A050100
    r = P.icmp_net_unreachable(off, tun_addr)
    assert r is not None
    ip = r[:20]
    assert ip[0] == 0x45 and ip[9] == 1 and ip[8] == P.ICMP_REPLY_TTL
    assert struct.unpack(">H", ip[2:4])[0] == len(r) == 20 + 8 + 20 + 8
    assert struct.unpack(">II", ip[12:20]) == (tun_addr, SRC)
    assert reference_checksum(ip) == 0
    icmp = r[20:]
    assert icmp[0] == 3 and icmp[1] == 0
    assert reference_checksum(icmp) == 0
    assert icmp[8:] == off[:28]


def test_icmp_quotes_ip_options():
    off = tcp_packet(b"0123456789", ip_options=b"\x01\x01\x01\x00")
    r = P.icmp_net_unreachable(off, 1)
    assert r[28:] == off[:24 + 8]


def test_no_icmp_about_icmp_or_fragments_or_garbage():
    icmp = ipv4(SRC, DST, 1, bytes([8, 0, 0, 0]) + b"\0" * 12)
    assert P.icmp_net_unreachable(icmp, 1) is None
    frag = ipv4(SRC, DST, 17, udp_datagram(SRC, DST, b"x" * 20), flags_frag=0x2000 | 100)
    assert P.icmp_net_unreachable(frag, 1) is None
    first_frag = ipv4(SRC, DST, 17, udp_datagram(SRC, DST, b"x" * 20), flags_frag=0x2000)
    assert P.icmp_net_unreachable(first_frag, 1) is not None
    assert P.icmp_net_unreachable(b"\x45\x00", 1) is None
    assert P.icmp_net_unreachable(b"\x60" + bytes(40), 1) is None
