"""The TUN's offloads: the virtio header, segmentation (the reference) and coalescing (the reference)."""

import struct

import pytest

from flannel_forwarder import packet as P
from flannel_forwarder.checksum import fold, pseudo_header_sum, reference_checksum
from flannel_forwarder.packet import PacketError
from flannel_forwarder.udp.tun import coalesce as C
from flannel_forwarder.udp.tun import segment as S
from flannel_forwarder.udp.tun import virtio as V
from fwd_packets import (
    DST, SRC, ip_checksum_ok, ipv4, l4_checksum_ok, payload_bytes, pseudo, tcp_packet, udp_datagram,
)


def tso_packet(payload, flags=0x18, ip_options=b"", tcp_options=b"", seq=0xFFFFF000, ident=0xFFF0, df=True):
    """A super packet as the TUN hands it over: checksum field holds junk/partial sum."""
    p = bytearray(tcp_packet(payload, flags=flags, ip_options=ip_options, options=tcp_options, seq=seq, ident=ident))
    if not df:
        p[6] &= ~0x40
    hl = (p[0] & 15) * 4
    p[hl + 16 : hl + 18] = b"\xab\xcd"
    return bytes(p)


def reference_segments(pkt, mss):
    """Plain, slow TSO segmentation to compare against."""
    iphl = (pkt[0] & 15) * 4
    thl = (pkt[iphl + 12] >> 4) * 4
    hl = iphl + thl
    payload = pkt[hl:]
    chunks = [payload[i : i + mss] for i in range(0, len(payload), mss)] or [b""]
    ident0 = struct.unpack(">H", pkt[4:6])[0]
    id_step = 0 if pkt[6] & 0x40 else 1  # TCP with DF: one identifier for all segments
    seq0 = struct.unpack(">I", pkt[iphl + 4 : iphl + 8])[0]
    flags0 = pkt[iphl + 13]
    out = []
    for i, c in enumerate(chunks):
        ip = bytearray(pkt[:iphl])
        ip[2:4] = struct.pack(">H", hl + len(c))
        ip[4:6] = struct.pack(">H", (ident0 + i * id_step) & 0xFFFF)
        ip[10:12] = b"\0\0"
        ip[10:12] = struct.pack(">H", reference_checksum(ip))
        tcp = bytearray(pkt[iphl:hl])
        tcp[4:8] = struct.pack(">I", (seq0 + i * mss) & 0xFFFFFFFF)
        f = flags0
        if i != len(chunks) - 1:
            f &= ~(P.TCP_FIN | P.TCP_PSH)
        if i != 0:
            f &= ~P.TCP_CWR
        tcp[13] = f
        tcp[16:18] = b"\0\0"
        tcp[16:18] = struct.pack(">H", reference_checksum(pseudo(SRC, DST, 6, len(tcp) + len(c)) + bytes(tcp) + c))
        out.append(bytes(ip) + bytes(tcp) + c)
    return out


def split_out(out, res):
    segs = []
    o = 0
    while o < res.total:
        n = min(res.seg_size, res.total - o)
        segs.append(bytes(out[o : o + n]))
        o += n
    return segs


def tso_hdr(pkt, mss, gso_type=V.GSO_TCPV4):
    iphl = (pkt[0] & 15) * 4
    hl = iphl + (pkt[iphl + 12] >> 4) * 4
    return V.VirtioNetHdr(V.F_NEEDS_CSUM, gso_type, hl, mss, iphl, 16)


def test_vnet_header_roundtrip():
    h = V.VirtioNetHdr(1, 1, 52, 1448, 20, 16)
    enc = h.encode()
    assert len(enc) == V.VNET_HDR_LEN == 10
    assert enc == struct.pack("<BBHHHH", 1, 1, 52, 1448, 20, 16)
    assert V.VirtioNetHdr.decode(b"xx" + enc, 2) == h
    with pytest.raises(PacketError):
        V.VirtioNetHdr.decode(enc[:9])


@pytest.mark.parametrize("plen,mss", [(1, 1448), (1448, 1448), (1449, 1448), (65000, 1448), (10000, 1447),
                                      (4097, 1000), (777, 3), (3000, 1420)])
@pytest.mark.parametrize("ip_options,tcp_options", [(b"", b""), (b"\x01\x01\x01\x00", b""),
                                                    (b"", b"\x01\x01\x08\x0a" + bytes(8)),
                                                    (b"\x94\x04\x00\x00", b"\x01\x01\x08\x0a" + bytes(8))])
@pytest.mark.parametrize("df", [True, False])
def test_tcp_segmentation_matches_reference(plen, mss, ip_options, tcp_options, df):
    pkt = tso_packet(payload_bytes(plen, seed=plen), flags=P.TCP_ACK | P.TCP_PSH | P.TCP_FIN | P.TCP_CWR,
                     ip_options=ip_options, tcp_options=tcp_options, df=df)
    out = bytearray(len(pkt) + 100 * 100)
    res = S.segment(tso_hdr(pkt, mss), pkt, out)
    got = split_out(out, res)
    want = reference_segments(pkt, mss)
    assert res.count == len(want)
    assert got == want
    for s in got:
        assert ip_checksum_ok(s) and l4_checksum_ok(s)
    assert len(got[-1]) <= len(got[0])
    # flags: CWR only on the first, FIN/PSH only on the last
    hl = (pkt[0] & 15) * 4
    if len(got) > 1:
        assert got[0][hl + 13] & P.TCP_CWR and not got[0][hl + 13] & (P.TCP_FIN | P.TCP_PSH)
        assert not got[-1][hl + 13] & P.TCP_CWR and got[-1][hl + 13] & P.TCP_FIN
        assert all(s[hl + 13] == P.TCP_ACK for s in got[1:-1])
    # IP options preserved
    assert all(s[20:hl] == pkt[20:hl] for s in got)
    # identifiers: kept with DF (atomic datagrams), else one per segment, wrapping (0xFFF0 + i)
    idents = [struct.unpack(">H", s[4:6])[0] for s in got]
    assert idents == ([0xFFF0] * len(got) if df else [(0xFFF0 + i) & 0xFFFF for i in range(len(got))])


def test_segmentation_ecn_flag_in_gso_type():
    pkt = tso_packet(payload_bytes(5000), flags=P.TCP_ACK | P.TCP_CWR)
    out = bytearray(10000)
    res = S.segment(tso_hdr(pkt, 1448, V.GSO_TCPV4 | V.GSO_ECN), pkt, out)
    assert split_out(out, res) == reference_segments(pkt, 1448)


def test_udp_l4_segmentation():
    data = payload_bytes(3000)
    pkt = ipv4(SRC, DST, 17, udp_datagram(SRC, DST, data), ident=7)
    hdr = V.VirtioNetHdr(V.F_NEEDS_CSUM, V.GSO_UDP_L4, 28, 1200, 20, 6)
    out = bytearray(8000)
    res = S.segment(hdr, pkt, out)
    segs = split_out(out, res)
    assert [len(s) - 28 for s in segs] == [1200, 1200, 600]
    assert b"".join(s[28:] for s in segs) == data
    for i, s in enumerate(segs):
        assert ip_checksum_ok(s) and l4_checksum_ok(s)
        assert struct.unpack(">H", s[4:6])[0] == 7 + i
        assert struct.unpack(">H", s[24:26])[0] == len(s) - 20
        assert s[20:24] == pkt[20:24]  # ports


def test_non_gso_needs_csum_is_completed():
    for proto_pkt, off in ((tcp_packet(payload_bytes(333)), 16), (ipv4(SRC, DST, 17, udp_datagram(SRC, DST, b"hi!")), 6)):
        p = bytearray(proto_pkt)
        want = bytes(p)
        # what the kernel hands over: the field holds the pseudo-header sum
        p[20 + off : 22 + off] = struct.pack(">H", fold(pseudo_header_sum(SRC, DST, p[9], len(p) - 20)))
        out = bytearray(2000)
        res = S.segment(V.VirtioNetHdr(V.F_NEEDS_CSUM, 0, 0, 0, 20, off), p, out)
        assert res.count == 1 and bytes(out[: res.total]) == want


def test_non_gso_plain_copy():
    p = tcp_packet(b"abc")
    out = bytearray(100)
    res = S.segment(V.VirtioNetHdr(), p, out)
    assert bytes(out[: res.total]) == p and res.count == 1


@pytest.mark.parametrize("bad", [
    lambda p: p[:30],                              # truncated TCP header
    lambda p: p[:9] + b"\x11" + p[10:],            # not TCP
    lambda p: b"\x65" + p[1:],                     # not IPv4
    lambda p: p[:32] + b"\xf0" + p[33:],           # data offset beyond the packet
])
def test_segmentation_rejects_garbage(bad):
    pkt = bad(tso_packet(payload_bytes(30)))
    with pytest.raises(PacketError):
        S.segment(V.VirtioNetHdr(V.F_NEEDS_CSUM, V.GSO_TCPV4, 40, 10, 20, 16), pkt, bytearray(5000))


def test_segmentation_rejects_unsupported_gso():
    pkt = tso_packet(payload_bytes(100))
    with pytest.raises(PacketError) as e:
        S.segment(V.VirtioNetHdr(V.F_NEEDS_CSUM, V.GSO_TCPV6, 40, 10, 20, 16), pkt, bytearray(5000))
    assert e.value.reason == S.GSO_UNSUPPORTED
    with pytest.raises(PacketError):
        S.segment(V.VirtioNetHdr(V.F_NEEDS_CSUM, V.GSO_TCPV4, 40, 0, 20, 16), pkt, bytearray(5000))


# ---- coalescing ---------------------------------------------------------------

def spans_of(pkts):
    buf = bytearray()
    spans = []
    for p in pkts:
        spans.append((len(buf), len(p)))
        buf += p
    return buf, spans


def joined(write):
    """The bytes of one TUN write coalesce asks for: a Run, or a packet written alone behind a plain header."""
    iov = write.iov() if isinstance(write, C.Run) else (V.ZERO_VNET_HDR, write)
    return b"".join(bytes(x) for x in iov)


def check_super(write, expect_payload, first_seg, gso_size, psh):
    data = joined(write)
    h = V.VirtioNetHdr.decode(data)
    pkt = data[10:]
    thl = (pkt[32] >> 4) * 4
    assert h == V.VirtioNetHdr(V.F_NEEDS_CSUM, V.GSO_TCPV4, 20 + thl, gso_size, 20, 16)
    assert struct.unpack(">H", pkt[2:4])[0] == len(pkt)
    assert ip_checksum_ok(pkt)
    assert pkt[20 + thl :] == expect_payload
    assert pkt[12:32] == first_seg[12:32]  # addresses, ports, seq, ack
    assert pkt[33] == (P.TCP_ACK | (P.TCP_PSH if psh else 0))
    # the checksum field holds the pseudo-header sum: completing it gives a valid packet
    full = bytearray(pkt)
    S.complete_checksum(full, 0, len(full), 20, 16)
    assert l4_checksum_ok(full)


@pytest.mark.parametrize("plen,mss", [(65000, 1448), (65535 - 52, 1448), (3000, 1000), (2897, 1448), (10000, 1447)])
def test_segment_then_coalesce_round_trip(plen, mss):
    payload = payload_bytes(plen, seed=3)
    pkt = tso_packet(payload, flags=P.TCP_ACK | P.TCP_PSH, tcp_options=b"\x01\x01\x08\x0a" + bytes(8), ip_options=b"")
    out = bytearray(len(pkt) + 60 * 64)
    res = S.segment(tso_hdr(pkt, mss), pkt, out)
    segs = split_out(out, res)
    buf, spans = spans_of(segs)
    writes = C.coalesce(buf, spans)
    # everything that fits in one 64 KB packet comes back as one write
    got_payload = b""
    for w in writes:
        data = joined(w)
        h = V.VirtioNetHdr.decode(data)
        assert h.gso_type in (V.GSO_TCPV4, V.GSO_NONE)
        assert len(data) - 10 <= 65535
        got_payload += data[10 + 52 :]
    assert got_payload == payload
    if len(segs) > 1 and plen + 52 <= 65535:
        assert len(writes) == 1
        check_super(writes[0], payload, segs[0], mss, psh=True)


def test_coalesce_breaks_on_gaps_and_flow_changes():
    a = [tcp_packet(payload_bytes(100, i), seq=1000 + 100 * i, flags=P.TCP_ACK) for i in range(3)]
    other_flow = tcp_packet(payload_bytes(100), seq=1300, flags=P.TCP_ACK, sport=1)
    gap = tcp_packet(payload_bytes(100), seq=5000, flags=P.TCP_ACK)
    udp = ipv4(SRC, DST, 17, udp_datagram(SRC, DST, b"u" * 50))
    syn = tcp_packet(b"", seq=1, flags=P.TCP_SYN)
    buf, spans = spans_of(a + [other_flow, gap, udp, syn])
    writes = C.coalesce(buf, spans)
    assert len(writes) == 5
    check_super(writes[0], b"".join(p[40:] for p in a), a[0], 100, psh=False)
    for w, p in zip(writes[1:], [other_flow, gap, udp, syn]):
        assert joined(w)[:10] == V.ZERO_VNET_HDR and joined(w)[10:] == p


def test_coalesce_shorter_segment_ends_run():
    a = tcp_packet(payload_bytes(100), seq=0, flags=P.TCP_ACK)
    b = tcp_packet(payload_bytes(50), seq=100, flags=P.TCP_ACK)
    c = tcp_packet(payload_bytes(100), seq=150, flags=P.TCP_ACK)
    buf, spans = spans_of([a, b, c])
    writes = C.coalesce(buf, spans)
    assert len(writes) == 2
    check_super(writes[0], a[40:] + b[40:], a, 100, psh=False)
    assert joined(writes[1])[10:] == c


def test_coalesce_psh_ends_run_and_longer_segment_not_merged():
    a = tcp_packet(payload_bytes(100), seq=0, flags=P.TCP_ACK | P.TCP_PSH)
    b = tcp_packet(payload_bytes(100), seq=100, flags=P.TCP_ACK)
    c = tcp_packet(payload_bytes(200), seq=200, flags=P.TCP_ACK)
    buf, spans = spans_of([a, b, c])
    writes = C.coalesce(buf, spans)
    assert [joined(w)[10:] for w in writes] == [a, b, c]


def test_coalesce_needs_same_options_ttl_and_no_ip_options():
    ts1 = b"\x01\x01\x08\x0a" + bytes(7) + b"\x01"
    ts2 = b"\x01\x01\x08\x0a" + bytes(7) + b"\x02"
    a = tcp_packet(payload_bytes(10), seq=0, flags=P.TCP_ACK, options=ts1)
    b = tcp_packet(payload_bytes(10), seq=10, flags=P.TCP_ACK, options=ts2)
    c = tcp_packet(payload_bytes(10), seq=20, flags=P.TCP_ACK, options=ts2, ttl=3)
    d = tcp_packet(payload_bytes(10), seq=30, flags=P.TCP_ACK, options=ts2, ttl=3, ip_options=b"\x01\x01\x01\x00")
    buf, spans = spans_of([a, b, c, d])
    assert len(C.coalesce(buf, spans)) == 4


def test_coalesce_respects_max_size():
    segs = [tcp_packet(payload_bytes(1000), seq=1000 * i, flags=P.TCP_ACK) for i in range(10)]
    buf, spans = spans_of(segs)
    writes = C.coalesce(buf, spans, max_size=40 + 3000)
    assert len(writes) == 4
    assert b"".join(joined(w)[50:] for w in writes) == b"".join(s[40:] for s in segs)


def test_invariant_key_is_the_bytes_at_invariant_offsets():
    pkt = tcp_packet(payload_bytes(100), options=b"\x01\x01\x08\x0a" + bytes(8))
    buf = b"xyz" + pkt
    offsets = C.invariant_offsets(52)
    assert b"".join(C.invariant_key(buf, 3, 52)) == bytes(pkt[i] for i in offsets)
    assert sorted(offsets + list(C.VARYING) + list(C.OWN_RULES)) == list(range(52))
