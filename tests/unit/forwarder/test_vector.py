"""The numpy fast paths must give exactly what the per-packet reference code gives."""

import pytest

from flannel_forwarder import offload as O
from flannel_forwarder import vector as V
from flannel_forwarder.packet import decrement_ttl
from fwd_packets import SRC, payload_bytes, tcp_packet

if not V.AVAILABLE:
    pytest.skip("numpy not installed: the fast paths are off and nothing else uses them", allow_module_level=True)

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
    return [b"".join(bytes(x) for x in iov) for iov, _ in runs]


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


def test_segment_vector_and_loop_agree(monkeypatch):
    pkt = tcp_packet(payload_bytes(30000), flags=O.TCP_ACK | O.TCP_FIN | O.TCP_CWR, options=TS)
    hdr = O.VirtioNetHdr(O.F_NEEDS_CSUM, O.GSO_TCPV4, 52, 1400, 20, 16)
    out1, out2 = bytearray(40000), bytearray(40000)
    r1 = O.segment(hdr, pkt, out1)
    monkeypatch.setattr(V, "AVAILABLE", False)
    r2 = O.segment(hdr, pkt, out2)
    assert r1 == r2 and out1[: r1.total] == out2[: r2.total]
