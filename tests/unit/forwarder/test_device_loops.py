"""The forwarding loops against fake TUN/socket objects: what goes out, what is dropped and counted."""

import errno
import os

import pytest

from flannel_forwarder import device as D
from flannel_forwarder import offload as O
from flannel_forwarder.routes import PeerTable
from flannel_forwarder.stats import Stats
from fwd_packets import ip_checksum_ok, l4_checksum_ok, payload_bytes, tcp_packet

PEER = ("10.213.0.12", 8285)
DST_PEER = 0x0A050203  # 10.5.2.3, behind PEER
DST_NOBODY = 0x0A050903  # 10.5.9.3


class FakeTun:
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

    def chunk_bytes(self, seg):
        return (44 if self.gso else 1) * seg

    def send_segments(self, buf, total, seg, addr):
        self.record(bytes(buf[:total]), seg, addr)
        return 1

    def fileno(self):
        return -1


@pytest.fixture
def rig(monkeypatch):
    def make(frames, vnet=True, **conn_kw):
        tun = FakeTun(vnet, frames)
        conn = FakeConn(**conn_kw)
        monkeypatch.setattr(D.os, "readv", tun.readv)
        monkeypatch.setattr(D.os, "writev", tun.writev)
        monkeypatch.setattr(D.os, "write", tun.write)
        dev = D.Device(tun, conn, PeerTable({"10.5.2.0/24": "%s:%d" % PEER}), Stats())
        return dev, tun, conn

    return make


def tso_frame(plen, mss=1420, seq=1000):
    pkt = tcp_packet(payload_bytes(plen, seq), dst=DST_PEER, seq=seq, options=b"\x01\x01\x08\x0a" + bytes(8))
    return O.VirtioNetHdr(O.F_NEEDS_CSUM, O.GSO_TCPV4, 52, mss, 20, 16).encode() + pkt


def test_tx_segments_batches_and_checksums(rig):
    frames = [tso_frame(46 * 1420, seq=1000), tso_frame(46 * 1420, seq=1000 + 46 * 1420)]
    dev, tun, conn = rig(frames)
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
    assert dev.stats.tx.drops.get("send_error", 0) >= 20
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

    def recv_into(self, buf, flags=0):
        if not self.batches:
            raise BlockingIOError
        data, seg, addr = self.batches.pop(0)
        buf[: len(data)] = data
        return len(data), seg, addr


def wire_segments(plen, seq=1000, src=0x0A050202, mss=1420):
    pkt = tcp_packet(payload_bytes(plen, seq), src=src, dst=0x0A050102, seq=seq,
                     options=b"\x01\x01\x08\x0a" + bytes(8), flags=O.TCP_ACK | O.TCP_PSH)
    out = bytearray(len(pkt) + 64 * 80)
    res = O.segment(O.VirtioNetHdr(O.F_NEEDS_CSUM, O.GSO_TCPV4, 52, mss, 20, 16), pkt, out)
    return [bytes(out[o : min(o + res.seg_size, res.total)]) for o in range(0, res.total, res.seg_size)]


@pytest.fixture
def rx_rig(monkeypatch):
    def make(batches, vnet=True):
        tun = FakeTun(vnet, [])
        conn = FakeRecvConn(batches)
        monkeypatch.setattr(D.os, "writev", tun.writev)
        monkeypatch.setattr(D.os, "write", tun.write)
        dev = D.Device(tun, conn, PeerTable({"10.5.2.0/24": "%s:%d" % PEER}), Stats())
        return dev, tun, conn

    return make


def test_rx_one_tso_packet_over_two_receives_is_one_tun_write(rx_rig):
    segs = wire_segments(46 * 1420)
    batches = [(b"".join(segs[:44]), 1472, PEER), (b"".join(segs[44:]), 1472, PEER)]
    dev, tun, conn = rx_rig(batches)
    dev._rx_step()(8)
    assert len(tun.written) == 1
    w = tun.written[0]
    h = O.VirtioNetHdr.decode(w)
    assert h.gso_type == O.GSO_TCPV4 and h.gso_size == 1420
    assert w[10 + 52 :] == b"".join(s[52:] for s in segs)
    assert w[10 + 8] == 63  # TTL decremented
    assert ip_checksum_ok(w[10:])
    st = dev.stats.snapshot()["rx"]
    assert st["packets"] == 46 and st["batches"] == 2 and st["tun_packets"] == 1 and st["drops"] == {}


def test_rx_unknown_sender_and_spoofed_datagram(rx_rig):
    segs = wire_segments(3 * 1420)
    spoofed = wire_segments(1420, seq=777777, src=0x0A050707)[0]
    batches = [
        (b"".join(segs), 1472, ("10.213.0.99", 8285)),  # not a peer: all 3 dropped
        (segs[0] + spoofed + segs[2], 1472, PEER),  # middle one spoofed: the others still go
    ]
    dev, tun, conn = rx_rig(batches)
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
