"""The forwarding loops against fake TUN/socket objects: what goes out, what is dropped and counted."""

import errno
import os

import pytest

from flannel_forwarder import packet as P
from flannel_forwarder.routes import PeerTable
from flannel_forwarder.stats import DirectionStats, Stats
from flannel_forwarder.udp import loops as D
from flannel_forwarder.udp import ways
from flannel_forwarder.udp.conn import SendBatch
from flannel_forwarder.udp.tun import segment as S
from flannel_forwarder.udp.tun import virtio as V
from flannel_forwarder.udp.tun.io import TunIO
from fwd_packets import ip_checksum_ok, l4_checksum_ok, payload_bytes, tcp_packet

PEER = ("10.213.0.12", 8285)
DST_PEER = 0x0A050203  # 10.5.2.3, behind PEER
DST_NOBODY = 0x0A050903  # 10.5.9.3


class FakeTun(TunIO):
    fd = -1
    address_int = 0x0A050100

    def __init__(self, vnet, frames):
        self.vnet_hdr = vnet
        self.frames = list(frames)
        self.written = []

    def set_nonblocking(self, on=True):
        pass

    def readv(self, fd, bufs):
        if not self.frames:
            raise BlockingIOError
        f = self.frames.pop(0)
        bufs[0][: len(f)] = f
        return len(f)

    def writev(self, *args):
        bufs = args[-1]
        self.written.append(b"".join(bytes(b) for b in bufs))

    def write(self, *args):
        self.written.append(bytes(args[-1]))


class FakeSock:
    def __init__(self, conn):
        self.conn = conn

    def sendto(self, data, addr):
        self.conn.record(bytes(data), len(data), addr)


class FakeConn:
    def __init__(self, gso=True, fail=None):
        self.gso = gso
        self.sent = []  # (datagram bytes, addr)
        self.calls = 0
        self.fail = fail
        self.sock = FakeSock(self)

    def record(self, data, seg, addr):
        self.calls += 1
        if self.fail:
            raise OSError(self.fail, os.strerror(self.fail))
        self.sent += [(data[o : o + seg], addr) for o in range(0, len(data), seg)]

    def sender(self, stats, size):
        return SendBatch(self, stats, size)

    def chunk_bytes(self, seg):
        return (44 if self.gso else 1) * seg

    def send_segments(self, buf, total, seg, addr):
        self.record(bytes(buf[:total]), seg, addr)
        return 1

    def fileno(self):
        return -1


@pytest.fixture
def rig(monkeypatch):
    def make(frames, vnet=True, way="numpy", **conn_kw):
        tun = FakeTun(vnet, frames)
        conn = FakeConn(**conn_kw)
        monkeypatch.setattr(D.os, "readv", tun.readv)
        monkeypatch.setattr(D.os, "writev", tun.writev)
        monkeypatch.setattr(D.os, "write", tun.write)
        dev = D.DataPath(tun, conn, PeerTable({"10.5.2.0/24": "%s:%d" % PEER}), Stats(), way=ways.get_way(way))
        return dev, tun, conn

    return make


def tso_frame(plen, mss=1420, seq=1000):
    pkt = tcp_packet(payload_bytes(plen, seq), dst=DST_PEER, seq=seq, options=b"\x01\x01\x08\x0a" + bytes(8))
    return V.VirtioNetHdr(V.F_NEEDS_CSUM, V.GSO_TCPV4, 52, mss, 20, 16).encode() + pkt


@pytest.mark.parametrize("way", ["numpy", "python"])
def test_tx_segments_batches_and_checksums(rig, way):
    frames = [tso_frame(46 * 1420, seq=1000), tso_frame(46 * 1420, seq=1000 + 46 * 1420)]
    dev, tun, conn = rig(frames, way=way)
    step = dev._tx_step()
    assert step(8) is True
    assert step(8) is False  # nothing left
    assert len(conn.sent) == 92 and all(a == PEER for _data, a in conn.sent)
    assert conn.calls <= 4  # 92 segments in chunks of 44 (+ the rest)
    seqs = [int.from_bytes(d[24:28], "big") for d, _addr in conn.sent]
    assert seqs == [1000 + i * 1420 for i in range(92)]
    assert all(len(d) == 1472 and ip_checksum_ok(d) and l4_checksum_ok(d) for d, _addr in conn.sent)
    assert all(d[8] == 63 for d, _addr in conn.sent)  # TTL decremented once
    st = dev.stats.snapshot()["tx"]
    assert st["packets"] == 92 and st["tun_packets"] == 2 and st["drops"] == {}


def test_tx_burst_of_small_packets_is_one_send(rig):
    frames = [bytes(10) + tcp_packet(b"x" * 20, dst=DST_PEER, seq=i) for i in range(5)]
    dev, tun, conn = rig(frames)
    dev._tx_step()(8)
    assert len(conn.sent) == 5 and conn.calls == 1
    assert [int.from_bytes(d[24:28], "big") for d, _addr in conn.sent] == list(range(5))


def test_tx_no_route_answers_icmp_and_counts(rig):
    dev, tun, conn = rig([bytes(10) + tcp_packet(b"hello", dst=DST_NOBODY)])
    dev._tx_step()(8)
    assert conn.sent == []
    assert len(tun.written) == 1 and tun.written[0][:10] == bytes(10)
    icmp = tun.written[0][10:]
    assert icmp[9] == 1 and icmp[20] == 3 and icmp[21] == 0
    assert dev.stats.tx.drops == {"no_route": 1} and dev.stats.icmp_unreachable == 1


def test_tx_ttl_and_garbage_dropped(rig):
    frames = [
        bytes(10) + tcp_packet(b"x", dst=DST_PEER, ttl=1),
        bytes(10) + b"\x60" + bytes(40),
        bytes(10) + b"\x45\x00",
    ]
    dev, tun, conn = rig(frames)
    dev._tx_step()(8)
    assert conn.sent == []
    assert dev.stats.tx.drops == {"ttl_exceeded": 1, "not_ipv4": 1, "short": 1}


def test_tx_send_errors_drop_pending_and_keep_going(rig):
    frames = [tso_frame(46 * 1420, seq=1000 + i * 46 * 1420) for i in range(20)]
    dev, tun, conn = rig(frames, fail=errno.ENETUNREACH)
    step = dev._tx_step()
    while step(8):
        pass
    assert not tun.frames  # everything was read; nothing piled up
    assert dev.stats.tx.drops == {"send_error": 20 * 46}  # every datagram lost is counted
    assert dev.stats.tx.packets == 20 * 46
    conn.fail = None
    tun.frames.append(tso_frame(1420 * 3, seq=5))
    step(8)
    assert len(conn.sent) == 3  # works again once the peer is reachable


def test_tx_without_vnet_header_sends_packets_as_read(rig):
    frames = [tcp_packet(b"abc", dst=DST_PEER), tcp_packet(b"defg", dst=DST_PEER)]
    dev, tun, conn = rig(frames, vnet=False, gso=False)
    dev._tx_step()(8)
    assert [len(d) for d, _addr in conn.sent] == [43, 44]


class FakeRecvConn(FakeConn):
    def __init__(self, batches):
        super().__init__()
        self.batches = list(batches)  # (bytes, seg, addr)

    def recv_batch(self, buf, flags=0):
        if not self.batches:
            raise BlockingIOError
        data, seg, addr = self.batches.pop(0)
        buf[: len(data)] = data
        return len(data), seg, addr


def wire_segments(plen, seq=1000, src=0x0A050202, mss=1420):
    pkt = tcp_packet(payload_bytes(plen, seq), src=src, dst=0x0A050102, seq=seq,
                     options=b"\x01\x01\x08\x0a" + bytes(8), flags=P.TCP_ACK | P.TCP_PSH)
    out = bytearray(len(pkt) + 64 * 80)
    res = S.segment(V.VirtioNetHdr(V.F_NEEDS_CSUM, V.GSO_TCPV4, 52, mss, 20, 16), pkt, out)
    return [bytes(out[o : min(o + res.seg_size, res.total)]) for o in range(0, res.total, res.seg_size)]


@pytest.fixture
def rx_rig(monkeypatch):
    def make(batches, vnet=True, way="numpy"):
        tun = FakeTun(vnet, [])
        conn = FakeRecvConn(batches)
        monkeypatch.setattr(D.os, "writev", tun.writev)
        monkeypatch.setattr(D.os, "write", tun.write)
        dev = D.DataPath(tun, conn, PeerTable({"10.5.2.0/24": "%s:%d" % PEER}), Stats(), way=ways.get_way(way))
        return dev, tun, conn

    return make


def test_rx_one_tso_packet_over_two_receives_is_one_tun_write(rx_rig):
    segs = wire_segments(46 * 1420)
    batches = [(b"".join(segs[:44]), 1472, PEER), (b"".join(segs[44:]), 1472, PEER)]
    dev, tun, conn = rx_rig(batches)
    dev._rx_step()(8)
    assert len(tun.written) == 1
    w = tun.written[0]
    h = V.VirtioNetHdr.decode(w)
    assert h.gso_type == V.GSO_TCPV4 and h.gso_size == 1420
    assert w[10 + 52 :] == b"".join(s[52:] for s in segs)
    assert w[10 + 8] == 63  # TTL decremented
    assert ip_checksum_ok(w[10:])
    st = dev.stats.snapshot()["rx"]
    assert st["packets"] == 46 and st["batches"] == 2 and st["tun_packets"] == 1 and st["drops"] == {}


@pytest.mark.parametrize("way", ["numpy", "python"])
def test_rx_unknown_sender_and_spoofed_datagram(rx_rig, way):
    segs = wire_segments(3 * 1420)
    spoofed = wire_segments(1420, seq=777777, src=0x0A050707)[0]
    batches = [
        (b"".join(segs), 1472, ("10.213.0.99", 8285)),  # not a peer: all 3 dropped
        (segs[0] + spoofed + segs[2], 1472, PEER),  # middle one spoofed: the others still go
    ]
    dev, tun, conn = rx_rig(batches, way=way)
    dev._rx_step()(8)
    assert dev.stats.rx.drops == {"unknown_sender": 3, "spoofed": 1}
    delivered = b"".join(w[10:] for w in tun.written)
    assert segs[0][52:] in delivered and segs[2][52:] in delivered and spoofed[52:] not in delivered


def test_rx_plain_device_writes_each_packet(rx_rig):
    segs = wire_segments(3 * 1420)
    dev, tun, conn = rx_rig([(b"".join(segs), 1472, PEER)], vnet=False)
    dev._rx_step()(8)
    assert [len(w) for w in tun.written] == [1472, 1472, 1472]
    assert all(w[8] == 63 and ip_checksum_ok(w) and l4_checksum_ok(w) for w in tun.written)


# -- the loops' decisions, on their own -------------------------------------------


def test_route_tx_decides_and_decrements_the_ttl_once(rig):
    dev, tun, conn = rig([])
    pkt = bytearray(bytes(10) + tcp_packet(b"x", dst=DST_PEER, ttl=9))
    assert dev.route_tx(pkt, 10, len(pkt) - 10) == PEER
    assert pkt[18] == 8 and ip_checksum_ok(pkt[10:])
    assert dev.route_tx(bytearray(tcp_packet(b"x", dst=DST_PEER, ttl=1)), 0, 41) is None
    assert dev.route_tx(bytearray(b"\x60" + bytes(39)), 0, 40) is None
    assert dev.route_tx(bytearray(19), 0, 19) is None
    assert dev.stats.tx.drops == {"ttl_exceeded": 1, "not_ipv4": 1, "short": 1}


@pytest.mark.parametrize("mutate,reason", [
    (lambda p: p[:8] + bytes([p[8] ^ 1]) + p[9:], P.BAD_CHECKSUM),
    (lambda p: b"\x65" + p[1:], P.BAD_VERSION),
    (lambda p: p[:3] + bytes([p[3] ^ 4]) + p[4:], P.BAD_LENGTH),
    (lambda p: tcp_packet(payload_bytes(100), src=0x0A050302, dst=0x0A050102), D.SPOOFED),  # another subnet
    (lambda p: P.build_ipv4_header(0x0A050202, 0x0A050102, 6, len(p) - 20, ttl=1) + p[20:], P.TTL_EXCEEDED),
])
def test_check_datagrams_applies_check_ipv4_rows_and_source_allowed(mutate, reason):
    good = tcp_packet(payload_bytes(100), src=0x0A050202, dst=0x0A050102)
    bad = mutate(good)
    assert len(bad) == len(good)
    buf = bytearray(good + bad + good)
    st = DirectionStats()
    spans, nbytes = D.check_datagrams(buf, len(buf), len(good), ((0x0A050200, 0xFFFFFF00),), st)
    assert spans == [(0, len(good)), (2 * len(good), len(good))] and nbytes == 2 * len(good)
    assert st.drops == {reason: 1}
    assert buf[8] == 63 and buf[2 * len(good) + 8] == 63  # the TTL of what goes on, once


def test_the_way_is_chosen_once_and_counted(rig):
    dev, tun, conn = rig([], way="python")
    assert dev.way.NAME == "python" and dev.stats.snapshot()["way"] == "python"


def test_send_batch_runs_chunks_and_flushes():
    conn = FakeConn()  # 44 datagrams per send
    st = DirectionStats()
    batch = conn.sender(st, 2 * S.MAX_SEGMENTED)
    other = ("10.213.0.13", 8285)

    def put(peer, sizes):
        data = b"".join(bytes([len(sizes)]) * n for n in sizes)
        batch.view[batch.fill : batch.fill + len(data)] = data
        batch.add(peer, len(data), sizes[0])

    put(PEER, [100] * 30)
    put(PEER, [100] * 30)  # 60 of one size: one whole send of 44 leaves, 16 wait
    assert conn.calls == 1 and len(conn.sent) == 44
    put(other, [100])  # another peer: the 16 leave first
    assert conn.calls == 2 and [a for _d, a in conn.sent[44:]] == [PEER] * 16
    put(other, [100, 100, 40])  # a short last datagram: the run cannot grow, it leaves
    assert conn.calls == 3 and [len(d) for d, a in conn.sent[60:]] == [100, 100, 100, 40]
    put(PEER, [100] * 3)
    assert conn.calls == 3
    batch.flush()
    assert conn.calls == 4 and len(conn.sent) == 67 and st.batches == 4 and batch.fill == 0
    conn.fail = errno.ENOBUFS
    put(PEER, [100] * 50)  # the whole send fails, and the rest is lost with it
    assert st.drops == {"send_error": 50} and batch.fill == 0


@pytest.mark.parametrize("way", ["numpy", "python"])
@pytest.mark.parametrize("split", [2, 3, 40])
def test_rx_a_run_continues_over_small_receives(rx_rig, way, split):
    # the per-packet path holds its last run back too (its payloads copied out of the receive buffer);
    # (a lone datagram, the most common of which is an ACK, is written at once)
    segs = wire_segments(46 * 1420)
    batches = [(b"".join(segs[:split]), 1472, PEER), (b"".join(segs[split:split + 3]), 1472, PEER),
               (b"".join(segs[split + 3:]), 1472, PEER)]
    dev, tun, conn = rx_rig(batches, way=way)
    dev._rx_step()(8)
    assert len(tun.written) == 1
    w = tun.written[0]
    assert w[10 + 52 :] == b"".join(s[52:] for s in segs) and V.VirtioNetHdr.decode(w).gso_type == V.GSO_TCPV4
