"""Every way of the data path (udp/ways) against the reference, over the same inputs.

The reference is the plain code: tun.segment.segment_tcp4 for
segmentation; for a received batch, what the per-packet path does
(udp.loops.check_datagrams, then tun.coalesce.coalesce).  A way's batch
step must give the same bytes; where it declines a batch (None), the loop
takes the per-packet path, so the tests also make sure the numpy way does
take the clean batches it exists for.
"""

import pytest

from flannel_forwarder import packet as P
from flannel_forwarder.checksum import checksum
from flannel_forwarder.stats import DirectionStats
from flannel_forwarder.udp import loops, ways
from flannel_forwarder.udp.tun import coalesce as C
from flannel_forwarder.udp.tun import segment as S
from flannel_forwarder.udp.tun import virtio as V
from fwd_packets import SRC, payload_bytes, tcp_packet
from test_device_loops import PEER, FakeRecvConn, FakeTun, PeerTable, Stats

NET, MASK = SRC & 0xFFFFFF00, 0xFFFFFF00
TS = b"\x01\x01\x08\x0a" + bytes(8)
OFFLOAD_WAYS = [w for w in ways.NAMES if ways.get_way(w).OFFLOAD]
BATCH_WAYS = [w for w in ways.NAMES if ways.get_way(w).rx_runs is not None]


def test_every_way_is_there_with_one_interface():
    assert ways.NAMES == ("numpy", "python", "single")
    for name in ways.NAMES:  # numpy is pinned (requirements/forwarder.txt): it must import
        way = ways.get_way(name)
        assert way.NAME == name and way.DESCRIPTION and callable(way.segment_tcp4)
        assert way.rx_runs is None or callable(way.rx_runs)
    assert BATCH_WAYS == ["numpy"] and OFFLOAD_WAYS == ["numpy", "python"]
    with pytest.raises(ValueError):
        ways.get_way("vector")


def test_the_choice():
    assert ways.choose(environ={}).NAME == "numpy"
    assert ways.choose(environ={ways.NO_NUMPY_ENV: "1"}).NAME == "python"
    assert ways.choose(offload=False, environ={}).NAME == "single"


# -- segmentation ------------------------------------------------------------------


def tso(plen, flags=P.TCP_ACK | P.TCP_PSH | P.TCP_FIN | P.TCP_CWR, df=True, options=TS):
    pkt = bytearray(tcp_packet(payload_bytes(plen, plen), flags=flags, options=options))
    if not df:
        pkt[6] &= ~0x40
    return pkt


@pytest.mark.parametrize("way", ways.NAMES)
@pytest.mark.parametrize("plen,mss", [(1, 1420), (1420, 1420), (2 * 1420, 1420), (3 * 1420, 1420), (30000, 1400),
                                      (65000, 1448), (65483, 1420), (10000, 1447), (4097, 1000), (777, 4)])
@pytest.mark.parametrize("df", [True, False])
def test_segment_matches_the_reference(way, plen, mss, df):
    pkt = tso(plen, df=df)
    hdr = V.VirtioNetHdr(V.F_NEEDS_CSUM, V.GSO_TCPV4, 52, mss, 20, 16)
    want, got = bytearray(len(pkt) + 300 * 60), bytearray(len(pkt) + 300 * 60)
    r1 = S.segment(hdr, pkt, want)
    r2 = S.segment(hdr, pkt, got, tcp4=ways.get_way(way).segment_tcp4)
    assert r1 == r2 and want[: r1.total] == got[: r2.total]


# -- receive batches -------------------------------------------------------------------


def segments(plen, mss=1420, seq=1000, flags=P.TCP_ACK | P.TCP_PSH, options=TS, sport=40000):
    pkt = tcp_packet(payload_bytes(plen, plen), seq=seq, flags=flags, options=options, sport=sport)
    out = bytearray(len(pkt) + 64 * 80)
    res = S.segment(V.VirtioNetHdr(V.F_NEEDS_CSUM, V.GSO_TCPV4, 52, mss, 20, 16), pkt, out)
    return [bytes(out[o : min(o + res.seg_size, res.total)]) for o in range(0, res.total, res.seg_size)]


def gro_batch(pkts):
    seg = len(pkts[0])
    assert all(len(p) == seg for p in pkts[:-1]) and len(pkts[-1]) <= seg
    buf = bytearray(b"".join(pkts))
    n = len(buf)
    buf += b"\xee" * (seg + 64)  # stale bytes after the data, as in a reused buffer
    return buf, n, seg


def writes(runs):
    """The bytes of the TUN writes of coalesce's or a way's runs (a packet alone: a plain virtio header first)."""
    return [b"".join(bytes(x) for x in (r.iov() if isinstance(r, C.Run) else (V.ZERO_VNET_HDR, r))) for r in runs]


def reference(pkts):
    """The per-packet path: check_datagrams (TTL decremented), then coalesce."""
    buf, n, seg = gro_batch(pkts)
    spans, _nbytes = loops.check_datagrams(buf, n, seg, ((NET, MASK),), DirectionStats())
    return writes(C.coalesce(buf, spans))


def batch_step(way, pkts, pos=0):
    buf, n, seg = gro_batch(pkts)
    out = bytearray(4 * 65536)
    return ways.get_way(way).rx_runs(buf, n, seg, NET, MASK, out, lambda: pos)


M = 1420


def _layouts():
    psh, ack = P.TCP_ACK | P.TCP_PSH, P.TCP_ACK
    return {
        "two_rows": segments(2 * M),
        "one_run": segments(44 * M),
        "one_run_short_last": segments(44 * M - 7),
        "three_and_a_byte": segments(3 * M + 1),
        "short_last_no_psh": segments(5 * M - 100, flags=ack),
        "two_super_packets": segments(3 * M, seq=5000, options=TS[:-1] + b"\x01")
        + segments(4 * M, seq=5000 + 3 * M, options=TS[:-1] + b"\x02"),
        "psh_gap_and_lone_rows": segments(2 * M, seq=0) + segments(M, seq=2 * M, flags=ack)
        + segments(2 * M, seq=9 * M),
        "psh_then_lone_last": segments(5 * M, seq=0) + segments(3 * M, seq=5 * M, flags=ack)
        + segments(700, seq=20 * M),
        "psh_on_first_row": segments(M, seq=0) + segments(8 * M, seq=M, flags=ack),
        "psh_on_last_row": segments(9 * M - 5, seq=0),
        "gap_in_the_middle": segments(4 * M, seq=0, flags=ack) + segments(5 * M, seq=40 * M),
        "other_flow_in_the_middle": segments(4 * M, seq=0, flags=ack)
        + [tcp_packet(payload_bytes(M, 1), seq=4 * M, flags=ack, options=TS, sport=4242)]
        + segments(3 * M, seq=5 * M),
        "two_lone_rows_at_the_end": segments(6 * M, seq=0) + segments(M, seq=6 * M) + segments(M, seq=7 * M),
        "ten_runs": [p for i in range(11) for p in segments(4 * M, seq=i * 10 * M)],
    }


LAYOUTS = _layouts()


@pytest.mark.parametrize("way", BATCH_WAYS)
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_batch_step_takes_clean_batches_and_matches_the_reference(way, layout):
    pkts = LAYOUTS[layout]
    runs = batch_step(way, pkts, pos=7)
    if len(pkts) <= ways.get_way(way).SMALL_BATCH:  # left to the per-packet path: cheaper for so few
        assert runs is None
        return
    assert runs is not None  # a clean batch: the way's own step, not the fallback
    assert writes(runs) == reference(pkts)
    assert sum(r.count for r in runs) == len(pkts)


def _unusual(case):
    pkts = [bytearray(p) for p in segments(8 * M)]
    victim = pkts[5]
    if case == "spoofed":
        victim[12] ^= 1
    elif case == "bad_csum":
        victim[10] ^= 1
    elif case == "ttl1":
        return [tcp_packet(payload_bytes(100), ttl=1, seq=i * 100) for i in range(3)]
    elif case == "syn":
        victim[33] = P.TCP_SYN
    elif case == "ip_options":
        return [tcp_packet(payload_bytes(100), ip_options=b"\x01\x01\x01\x00", seq=i * 100) for i in range(3)]
    elif case == "udp":
        victim[9] = 17
    elif case == "bad_len":
        victim[3] ^= 1
    elif case == "fragment":
        victim[6] |= 0x20
    if case in ("spoofed", "udp", "fragment"):  # a sound header otherwise
        victim[10:12] = b"\0\0"
        victim[10:12] = checksum(victim[:20]).to_bytes(2, "big")
    return [bytes(p) for p in pkts]


@pytest.mark.parametrize("way", BATCH_WAYS)
@pytest.mark.parametrize("case", ["spoofed", "bad_csum", "ttl1", "syn", "ip_options", "udp", "bad_len", "fragment"])
def test_batch_step_leaves_anything_unusual_to_the_per_packet_path(way, case):
    assert batch_step(way, _unusual(case)) is None


def test_a_run_continued_by_the_next_batch_is_one_write():
    # one TSO packet of 46 segments received as 37 + 9 datagrams: two receives, one write
    pkts = segments(46 * M)
    out = bytearray(4 * 65536)
    numpy = ways.get_way("numpy")
    b1, n1, seg1 = gro_batch(pkts[:37])
    r1 = numpy.rx_runs(b1, n1, seg1, NET, MASK, out, lambda: 0)
    assert len(r1) == 1 and r1[0].open
    b2, n2, seg2 = gro_batch(pkts[37:])  # (the last 9: more than SMALL_BATCH)
    r2 = numpy.rx_runs(b2, n2, seg2, NET, MASK, out, lambda: r1[0].plen)
    assert len(r2) == 1 and not r2[0].open  # ends with PSH
    assert r1[0].try_extend(r2[0])
    assert writes(r1) == reference(pkts)


def test_a_run_is_not_extended_across_gaps_or_other_flows():
    pkts = segments(20 * M, flags=P.TCP_ACK)
    out = bytearray(4 * 65536)
    numpy = ways.get_way("numpy")
    b1, n1, seg1 = gro_batch(pkts[:8])
    r1 = numpy.rx_runs(b1, n1, seg1, NET, MASK, out, lambda: 0)[0]
    b2, n2, seg2 = gro_batch(pkts[9:])  # pkts[8] lost
    assert not r1.try_extend(numpy.rx_runs(b2, n2, seg2, NET, MASK, out, lambda: r1.plen)[0])
    other = segments(8 * M, seq=1000 + 8 * M, flags=P.TCP_ACK, options=TS[:-1] + b"\x09")
    b3, n3, seg3 = gro_batch(other)
    r3 = numpy.rx_runs(b3, n3, seg3, NET, MASK, out, lambda: r1.plen)[0]
    assert not r1.try_extend(r3)  # contiguous, but other TCP options: GRO would not merge either


# -- the whole receive step, every way, the same input ------------------------------------


@pytest.mark.parametrize("vnet", [True, False])
def test_every_way_writes_the_same_to_the_tun(monkeypatch, vnet):
    layouts = [LAYOUTS[k] for k in sorted(LAYOUTS)]
    odd = [_unusual(c) for c in ("spoofed", "bad_csum", "syn", "udp", "fragment")]
    batches = [(b"".join(p), len(p[0]), PEER) for p in layouts + odd]
    results = {}
    for name in ways.NAMES:
        tun = FakeTun(vnet, [])
        monkeypatch.setattr(loops.os, "writev", tun.writev)
        monkeypatch.setattr(loops.os, "write", tun.write)
        table = PeerTable({"10.5.1.0/24": "%s:%d" % PEER})
        dev = loops.DataPath(tun, FakeRecvConn(list(batches)), table, Stats(), way=ways.get_way(name))
        while dev._rx_step()(8):
            pass
        results[name] = (tun.written, dev.stats.snapshot()["rx"])
    assert results["numpy"] == results["python"] == results["single"]
    written, st = results["numpy"]
    assert st["drops"] == {"spoofed": 1, "bad_checksum": 1} and st["packets"] == sum(map(len, layouts + odd)) - 2
