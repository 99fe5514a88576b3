"""The numpy fast paths must give exactly what the per-packet reference code gives."""

import pytest

from flannel_forwarder import offload as O
from flannel_forwarder import vector as V
from flannel_forwarder.packet import decrement_ttl
from fwd_packets import SRC, payload_bytes, tcp_packet

if not V.AVAILABLE:
    pytest.fail("numpy is a pinned dependency (requirements/forwarder.txt) and is missing", pytrace=False)

NET, MASK = SRC & 0xFFFFFF00, 0xFFFFFF00
TS = b"\x01\x01\x08\x0a" + bytes(8)


def gro_batch(pkts):
    seg = len(pkts[0])
    assert all(len(p) == seg for p in pkts[:-1]) and len(pkts[-1]) <= seg
    buf = bytearray(b"".join(pkts))
    n = len(buf)
    buf += b"\xee" * (seg + 64)  # stale bytes after the data, as in a reused buffer
    return buf, n, seg


def reference(pkts):
    buf = bytearray()
    spans = []
    for p in pkts:
        q = bytearray(p)
        assert decrement_ttl(q)
        spans.append((len(buf), len(q)))
        buf += q
    return [b"".join(bytes(x) for x in w) for w in O.coalesce(buf, spans)]


def fast(pkts):
    buf, n, seg = gro_batch(pkts)
    out = bytearray(70000)
    runs = V.rx_tcp_runs(buf, n, seg, NET, MASK, out)
    if runs is None:
        return None
    return [b"".join(bytes(x) for x in r.iov(out)) for r in runs]


def segments(plen, mss=1420, seq=1000, flags=O.TCP_ACK | O.TCP_PSH, options=TS):
    pkt = tcp_packet(payload_bytes(plen, plen), seq=seq, flags=flags, options=options)
    out = bytearray(len(pkt) + 64 * 80)
    hdr = O.VirtioNetHdr(O.F_NEEDS_CSUM, O.GSO_TCPV4, 52, mss, 20, 16)
    res = O.segment(hdr, pkt, out)
    return [bytes(out[o : min(o + res.seg_size, res.total)]) for o in range(0, res.total, res.seg_size)]


@pytest.mark.parametrize("plen", [2 * 1420, 44 * 1420, 44 * 1420 - 7, 3 * 1420 + 1])
def test_one_run_matches_coalesce(plen):
    pkts = segments(plen)
    assert fast(pkts) == reference(pkts)
    assert len(fast(pkts)) == 1


def test_two_super_packets_in_one_batch():
    # e.g. the tail of one TSO packet and the head of the next, different timestamps
    a = segments(3 * 1420, seq=5000, options=b"\x01\x01\x08\x0a" + bytes(7) + b"\x01")
    b = segments(4 * 1420, seq=5000 + 3 * 1420, options=b"\x01\x01\x08\x0a" + bytes(7) + b"\x02")
    pkts = a + b
    got = fast(pkts)
    assert got == reference(pkts) and len(got) == 2


def test_psh_and_gap_split_runs_and_single_rows():
    a = segments(2 * 1420, seq=0)  # ends with PSH
    b = segments(1420, seq=2 * 1420, flags=O.TCP_ACK)  # one row alone
    c = segments(2 * 1420, seq=9 * 1420)  # gap before it
    pkts = a + b + c
    got = fast(pkts)
    assert got == reference(pkts) and len(got) == 3


@pytest.mark.parametrize("case", ["spoofed", "bad_csum", "ttl1", "syn", "ip_options", "udp", "bad_len"])
def test_anything_unusual_falls_back(case):
    pkts = [bytearray(p) for p in segments(4 * 1420)]
    victim = pkts[2]
    if case == "spoofed":
        pkts = [bytearray(p) for p in segments(4 * 1420)]
        pkts = [bytearray(tcp_packet(payload_bytes(1420), src=0x0A090909, options=TS))] * 2
    elif case == "bad_csum":
        victim[10] ^= 1
    elif case == "ttl1":
        pkts = [bytearray(p) for p in [tcp_packet(payload_bytes(100), ttl=1, seq=i * 100) for i in range(3)]]
    elif case == "syn":
        victim[33] = O.TCP_SYN
    elif case == "ip_options":
        pkts = [bytearray(tcp_packet(payload_bytes(100), ip_options=b"\x01\x01\x01\x00", seq=i * 100)) for i in range(3)]
    elif case == "udp":
        victim[9] = 17
    elif case == "bad_len":
        victim[3] ^= 1
    assert fast([bytes(p) for p in pkts]) is None


@pytest.mark.parametrize("df", [True, False])
def test_segment_vector_and_loop_agree(monkeypatch, df):
    pkt = bytearray(tcp_packet(payload_bytes(30000), flags=O.TCP_ACK | O.TCP_FIN | O.TCP_CWR, options=TS))
    if not df:
        pkt[6] &= ~0x40
    hdr = O.VirtioNetHdr(O.F_NEEDS_CSUM, O.GSO_TCPV4, 52, 1400, 20, 16)
    out1, out2 = bytearray(40000), bytearray(40000)
    r1 = O.segment(hdr, pkt, out1)
    monkeypatch.setattr(V, "AVAILABLE", False)
    r2 = O.segment(hdr, pkt, out2)
    assert r1 == r2 and out1[: r1.total] == out2[: r2.total]


def test_virtio_constants_agree_with_offload():
    assert (V.VNET_HDR_LEN, V.F_NEEDS_CSUM, V.GSO_TCPV4, V.ZERO_VNET_HDR) == (
        O.VNET_HDR_LEN, O.F_NEEDS_CSUM, O.GSO_TCPV4, O.ZERO_VNET_HDR)
    assert V._VNET.format == O._VNET.format


def test_run_continued_by_next_batch_is_one_write():
    # one TSO packet of 46 segments sent as 44 + 2 datagrams: two receives, one write
    pkts = segments(46 * 1420, flags=O.TCP_ACK | O.TCP_PSH)
    out = bytearray(4 * 65536)
    b1, n1, seg1 = gro_batch(pkts[:44])
    r1 = V.rx_tcp_runs(b1, n1, seg1, NET, MASK, out, 0)
    assert len(r1) == 1 and r1[0].open
    b2, n2, seg2 = gro_batch(pkts[44:])
    r2 = V.rx_tcp_runs(b2, n2, seg2, NET, MASK, out, r1[0].pos + r1[0].plen)
    assert len(r2) == 1 and not r2[0].open  # ends with PSH
    assert r1[0].try_extend(r2[0])
    got = b"".join(bytes(x) for x in r1[0].iov(out))
    assert [got] == reference(pkts)


def test_run_not_extended_across_gaps_or_other_flows():
    pkts = segments(6 * 1420, flags=O.TCP_ACK)
    out = bytearray(4 * 65536)
    b1, n1, seg1 = gro_batch(pkts[:3])
    r1 = V.rx_tcp_runs(b1, n1, seg1, NET, MASK, out, 0)[0]
    b2, n2, seg2 = gro_batch(pkts[4:])  # pkts[3] lost
    r2 = V.rx_tcp_runs(b2, n2, seg2, NET, MASK, out, r1.pos + r1.plen)[0]
    assert not r1.try_extend(r2)
    other = segments(2 * 1420, seq=1000 + 3 * 1420, flags=O.TCP_ACK, options=b"\x01\x01\x08\x0a" + bytes(7) + b"\x09")
    b3, n3, seg3 = gro_batch(other)
    r3 = V.rx_tcp_runs(b3, n3, seg3, NET, MASK, out, r1.pos + r1.plen)[0]
    assert not r1.try_extend(r3)  # contiguous, but other TCP options: GRO would not merge either


@pytest.mark.parametrize("build", [
    lambda: segments(44 * 1420),
    lambda: segments(3 * 1420, seq=5000, options=b"\x01\x01\x08\x0a" + bytes(7) + b"\x01")
    + segments(4 * 1420, seq=5000 + 3 * 1420, options=b"\x01\x01\x08\x0a" + bytes(7) + b"\x02"),
    lambda: segments(2 * 1420, seq=0) + segments(1420, seq=2 * 1420, flags=O.TCP_ACK) + segments(2 * 1420, seq=9 * 1420),
    lambda: segments(5 * 1420 - 100, flags=O.TCP_ACK),
])
def test_small_batch_python_path_equals_numpy_path(monkeypatch, build):
    pkts = build()
    results = []
    for small in (0, 10_000):
        monkeypatch.setattr(V, "SMALL_BATCH", small)
        buf, n, seg = gro_batch(pkts)
        out = bytearray(70000)
        runs = V.rx_tcp_runs(buf, n, seg, NET, MASK, out, 7)
        results.append([(r.hdr, r.pos, r.plen, r.count, r.mss, r.next_seq, r.key, r.flags, r.open,
                         b"".join(bytes(x) for x in r.iov(out))) for r in runs])
    assert results[0] == results[1]
    assert reference(pkts) == [x[-1] for x in results[0]]


@pytest.mark.parametrize("case", ["spoofed", "bad_csum", "syn", "bad_len"])
def test_small_batch_rejects_like_numpy(monkeypatch, case):
    pkts = [bytearray(p) for p in segments(3 * 1420)]
    v = pkts[1]
    if case == "spoofed":
        v[12] ^= 1
    elif case == "bad_csum":
        v[11] ^= 1
    elif case == "syn":
        v[33] = O.TCP_SYN
    elif case == "bad_len":
        v[3] ^= 1
    for small in (0, 10_000):
        monkeypatch.setattr(V, "SMALL_BATCH", small)
        buf, n, seg = gro_batch([bytes(p) for p in pkts])
        assert V.rx_tcp_runs(buf, n, seg, NET, MASK, bytearray(70000)) is None


def _layouts():
    psh, ack = O.TCP_ACK | O.TCP_PSH, O.TCP_ACK
    m = 1420
    return {
        # a super packet ending in PSH, the head of the next, then a shorter lone last row after a gap
        "psh_then_lone_last": segments(5 * m, seq=0) + segments(3 * m, seq=5 * m, flags=ack)
        + segments(700, seq=20 * m),
        "psh_on_first_row": segments(m, seq=0) + segments(8 * m, seq=m, flags=ack),
        "psh_on_last_row": segments(9 * m - 5, seq=0),
        "gap_in_the_middle": segments(4 * m, seq=0, flags=ack) + segments(5 * m, seq=40 * m),
        "other_flow_in_the_middle": segments(4 * m, seq=0, flags=ack)
        + [tcp_packet(payload_bytes(m, 1), seq=4 * m, flags=ack, options=TS, sport=4242)]
        + segments(3 * m, seq=5 * m),
        "two_lone_rows_at_the_end": segments(6 * m, seq=0) + segments(m, seq=6 * m) + segments(m, seq=7 * m),
    }


@pytest.mark.parametrize("layout", sorted(_layouts()))
@pytest.mark.parametrize("few_runs_max", [1024, 0])
def test_run_boundaries_of_larger_batches_match_coalesce(monkeypatch, layout, few_runs_max):
    # more rows than SMALL_BATCH: the numpy paths (few runs, and the general one when forced)
    monkeypatch.setattr(V, "_FEW_RUNS_MAX", few_runs_max)
    pkts = _layouts()[layout]
    assert len(pkts) > V.SMALL_BATCH
    got = fast(pkts)
    assert got is not None
    assert got == reference(pkts)
