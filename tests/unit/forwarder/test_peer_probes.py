"""The peer probes' pure parts: the schedule and its rate bound, the state rules, the packets, the status file;
and the Prober against a real ICMP socket on the loopback (a peer "subnet" whose gateway is 127.0.0.1)."""

import ipaddress
import json
import random
import os
import socket
import struct
import threading
import time

import pytest

from ansible_collections.overlay.flannel.plugins.module_utils import underlay as icmp
from flannel_forwarder import peer_probes as pp
from flannel_forwarder.config import SettingsError, parse
from flannel_forwarder.files import write_atomic
from flannel_forwarder.health import render_metrics
from flannel_forwarder.peer_probes import DOWN, MTU, UNKNOWN, UP, Result


def rounds(n, interval, count, seed=1):
    """Send times of `count` consecutive rounds over n peers (each slot: PROBES_PER_SLOT packets)."""
    rng = random.Random(seed)
    times, start = [], 0.0
    for _r in range(count):
        period = pp.round_period(n, interval)
        times += [start + offset for offset, _t in pp.schedule(range(n), period, rng)]
        start += period
    return times, start


def test_1000_peers_never_mean_more_than_the_rate_bound():
    times, total = rounds(1000, interval=10, count=3)
    assert len(times) == 3000
    assert pp.round_period(1000, 10) == 1000 * pp.PROBES_PER_SLOT / pp.MAX_RATE  # 100 s, not 10
    packets = len(times) * pp.PROBES_PER_SLOT
    assert packets / total <= pp.MAX_RATE
    # in any window of one second (slots at least half a slot = 1/MAX_RATE apart, also across rounds)
    times.sort()
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert min(gaps) >= 1.0 / pp.MAX_RATE * 0.999
    j = 0
    worst = 0
    for i, t in enumerate(times):
        while times[j] < t - 1.0:
            j += 1
        worst = max(worst, i - j + 1)
    assert worst * pp.PROBES_PER_SLOT <= 2 * pp.MAX_RATE
    assert worst * pp.PROBES_PER_SLOT > pp.MAX_RATE / 2  # the bound is used, not a crawl


def test_few_peers_are_each_probed_once_per_interval_in_a_random_order():
    rng = random.Random(3)
    plan = pp.schedule(["a", "b", "c", "d"], 8.0, rng)
    assert sorted(t for _o, t in plan) == ["a", "b", "c", "d"]
    offsets = [o for o, _t in plan]
    assert offsets == sorted(offsets) and 0 < offsets[0] and offsets[-1] < 8.0
    assert pp.round_period(4, 8.0) == 8.0
    orders = set(tuple(t for _o, t in pp.schedule(["a", "b", "c", "d"], 8.0, rng)) for _i in range(20))
    assert len(orders) > 1  # jittered and shuffled: hosts that start together drift apart
    assert pp.schedule([], 8.0, rng) == []


@pytest.mark.parametrize("history,state", [
    ([], UNKNOWN),
    ([Result(True, True, 0.001)], UP),
    ([Result(False, False)], UNKNOWN),  # one lost round is no state yet
    ([Result(True, True), Result(False, False)], UP),  # nor does it end "up"
    ([Result(False, False), Result(False, False)], DOWN),
    ([Result(True, False), Result(True, False)], MTU),  # small passes, full size fails: a black hole
    ([Result(False, False), Result(True, False)], MTU),
    ([Result(True, False), Result(False, False)], MTU),
    ([Result(True, True), Result(True, False), Result(True, False)], MTU),
    ([Result(False, False), Result(False, False), Result(True, True)], UP),  # recovers at once
    ([Result(False, True), Result(False, True)], UP),  # a small one lost, full ones answered
])
def test_the_state_rules(history, state):
    assert pp.classify(history) == state


def test_echo_packets_and_what_counts_as_an_answer():
    token = b"12345678"
    data = icmp.echo_payload(token, 7, 1472)
    assert len(data) == 1472 - 28 and data.startswith(token + b"\0\0\0\x07")
    req = icmp.echo_request(0x1234, 7, data)
    assert icmp.checksum(req) == 0  # a valid ICMP checksum
    reply = bytes([icmp.ECHO_REPLY, 0]) + req[2:]
    assert icmp.parse_reply(reply, False) == (7, data)
    ip_header = bytes([0x45]) + bytes(19)
    assert icmp.parse_reply(ip_header + reply, True) == (7, data)
    assert icmp.parse_reply(req, False) is None  # a request is no answer
    assert icmp.parse_reply(b"\x00\x00\x00", False) is None  # garbage
    assert icmp.parse_reply(b"\x60" + bytes(40), True) is None  # not IPv4
    with pytest.raises(ValueError):
        icmp.echo_payload(token, 1, 30)


def test_gateway_and_status_file():
    assert pp.gateway(ipaddress.ip_network("10.5.7.0/24")) == "10.5.7.1"
    p = pp.PeerState("192.0.2.7", "10.5.7.1", 100.0)
    p.state, p.rtt, p.last, p.rounds = MTU, 0.0015, Result(True, False, 0.0015), 3
    q = pp.PeerState("192.0.2.3", "10.5.10.1", 100.0)
    body = json.loads(pp.status({"public_ip": "192.0.2.1"}, {"10.5.10.0/24": q, "10.5.7.0/24": p}, 123.0))
    assert body["public_ip"] == "192.0.2.1" and body["version"] == 1 and body["updated"] == 123.0
    assert [r["subnet"] for r in body["peers"]] == ["10.5.7.0/24", "10.5.10.0/24"]  # in address order
    assert body["peers"][0]["state"] == "mtu" and body["peers"][0]["rtt_ms"] == 1.5
    assert body["peers"][0]["small_ok"] is True and body["peers"][0]["full_ok"] is False
    assert body["peers"][1]["state"] == "unknown" and body["peers"][1]["rtt_ms"] is None
    assert body["counts"] == {"up": 0, "down": 0, "mtu": 1, "unknown": 1}


def test_the_probe_interval_setting():
    assert parse([], {})[0].probe_interval == 10.0
    assert parse(["--probe-interval", "0"], {})[0].probe_interval == 0
    assert parse([], {"FLANNELD_PROBE_INTERVAL": "1.5"})[0].probe_interval == 1.5
    for bad in ("0.1", "x", "100000"):
        with pytest.raises(SettingsError, match="probe-interval"):
            parse(["--probe-interval", bad], {})


class Table:
    def __init__(self, peers):
        self.peers = peers

    def snapshot(self):
        return dict(self.peers)


class Peer:
    def __init__(self, ip):
        self.public_ip = ip


def icmp_socket_works():
    for kind in (socket.SOCK_DGRAM, socket.SOCK_RAW):
        try:
            socket.socket(socket.AF_INET, kind, socket.IPPROTO_ICMP).close()
            return True
        except OSError:
            pass
    return False


def test_the_prober_against_the_loopback(tmp_path):
    """A real ICMP socket: 127.0.0.1 (the "gateway" of 127.0.0.0/24) answers small and full-size probes, so it
    is up with a round-trip time; a peer whose gateway no echo can reach (0.0.0.1) is down; /metrics says so."""
    if not icmp_socket_works():
        pytest.fail("no ICMP socket here: neither ping_group_range nor CAP_NET_RAW allows one")
    status_file = tmp_path / "peers.json"
    # 0.0.0.0/24: its gateway 0.0.0.1 takes no packet; the loopback's MTU takes full-size probes.
    table = Table({ipaddress.ip_network("127.0.0.0/24"): Peer("127.0.0.1"),
                   ipaddress.ip_network("0.0.0.0/24"): Peer("192.0.2.9")})
    prober = pp.Prober(table, ipaddress.ip_network("127.0.0.0/24"), 1500, 0.5, str(status_file),
                       host={"public_ip": "127.0.0.1"})
    prober.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            states = dict((s, p.state) for s, p in prober.peers.items())
            if states.get("127.0.0.0/24") == UP and states.get("0.0.0.0/24") == DOWN:
                break
            time.sleep(0.1)
        # Named for ps -L and top -H (the thread names itself before its first round).
        with open("/proc/self/task/%d/comm" % prober._thread.native_id, encoding="utf-8") as fh:
            assert fh.read() == "peer-probes\n"
    finally:
        prober.stop()
    assert states == {"127.0.0.0/24": UP, "0.0.0.0/24": DOWN}
    body = json.loads(status_file.read_text())
    assert body["counts"]["up"] == 1 and body["counts"]["down"] == 1
    up = [r for r in body["peers"] if r["state"] == "up"][0]
    assert up["rtt_ms"] is not None and up["full_ok"] is True
    text = render_metrics(backend=("udp", prober.metrics()))
    assert 'flannel_forwarder_peers_by_state{state="up"} 1' in text
    assert 'flannel_forwarder_peers_by_state{state="down"} 1' in text
    assert 'flannel_forwarder_peer_up{peer="127.0.0.0/24",public_ip="127.0.0.1"} 1' in text
    assert 'flannel_forwarder_peer_state{peer="0.0.0.0/24",public_ip="192.0.2.9",state="down"} 1' in text
    assert 'flannel_forwarder_peer_rtt_seconds{peer="127.0.0.0/24",public_ip="127.0.0.1"} 0.' in text
    assert prober.kind in ("icmp_dgram", "raw")


def test_no_icmp_socket_turns_the_probes_off_and_nothing_else(monkeypatch):
    """Neither ping_group_range nor CAP_NET_RAW allows an ICMP socket (a host whose range changed after the role
    ran): the prober starts without probing, says so on /metrics, and stops cleanly; the daemon forwards on."""
    def refused(*args):
        raise PermissionError(1, "Operation not permitted")
    monkeypatch.setattr(pp.socket, "socket", refused)
    table = Table({ipaddress.ip_network("10.5.2.0/24"): Peer("192.0.2.2")})
    prober = pp.Prober(table, ipaddress.ip_network("10.5.1.0/24"), 1472, 1.0).start()
    assert prober.kind is None and prober._thread is None
    text = render_metrics(backend=("udp", prober.metrics()))
    assert 'flannel_forwarder_peer_probe_socket_info{kind="none"} 1' in text
    prober.stop()


def test_answers_taken_at_a_later_wake_keep_the_time_they_arrived():
    """The thread takes answers only when it wakes for a slot or a round's end: each answer's round-trip time is
    its kernel receive timestamp's, not the wake's; one that arrived after TIMEOUT is lost, whenever it is
    taken."""
    if not icmp_socket_works():
        pytest.fail("no ICMP socket here: neither ping_group_range nor CAP_NET_RAW allows one")
    loop = "127.0.0.0/24"
    prober = pp.Prober(Table({}), ipaddress.ip_network(loop), 1500, 1.0)
    prober._sock, prober.kind, prober._raw = pp.open_socket("127.0.0.1")
    try:
        prober.peers[loop] = pp.PeerState("127.0.0.1", "127.0.0.1", time.time())
        prober._probe(loop)
        sent = min(p[2] for p in prober._pending.values())
        time.sleep(0.5)
        late = time.monotonic() - sent
        prober._wait_until(time.monotonic())  # the wake: both answers taken now
        assert prober._pending == {}
        result = prober.peers[loop].last
        assert result.small and result.full
        assert 0 <= result.rtt < late  # the arrival, not the wake
        prober._probe(loop)
        time.sleep(0.2)  # both answered on the loopback; now make them look TIMEOUT later than sent
        prober._pending = dict((seq, (s, n, t - pp.TIMEOUT - 1.0, d, g)) for seq, (s, n, t, d, g)
                               in prober._pending.items())
        prober._wait_until(time.monotonic())
        assert prober.peers[loop].last == Result(False, False, None)
        assert prober.counters == {("small", "answered"): 1, ("full", "answered"): 1,
                                   ("small", "lost"): 1, ("full", "lost"): 1}
    finally:
        prober._sock.close()


def test_arrival_time_from_the_kernel_timestamp():
    stamp = struct.pack("@ll", 1000, 250_000_000)
    anc = [(socket.IPPROTO_IP, 8, b"x"), (socket.SOL_SOCKET, pp.SO_TIMESTAMPNS, stamp)]
    now = time.monotonic()
    clock = now - 1000.5  # realtime 1000.5 is monotonic `now`: the datagram came 0.25 s ago
    assert pp.arrival(anc, clock, now - 1.0) == pytest.approx(now - 0.25)
    assert pp.arrival(anc, clock, now - 0.1) == now - 0.1  # a clock step: never before it was sent
    assert pp.arrival(anc, clock + 10.0, now - 1.0) <= time.monotonic()  # nor after now
    assert now <= pp.arrival([], clock, now - 1.0) <= time.monotonic()  # no timestamp: now


def test_a_thread_names_itself_and_a_status_write_without_fsync_is_whole(tmp_path):
    from flannel_forwarder.threads import name_thread
    seen = []

    def run():
        name_thread("a-rather-long-thread-name")
        with open("/proc/self/task/%d/comm" % threading.get_native_id(), encoding="utf-8") as fh:
            seen.append(fh.read())
    t = threading.Thread(target=run)
    t.start()
    t.join()
    assert seen == ["a-rather-long-t\n"]  # the kernel's 15 bytes
    path = tmp_path / "peers.json"
    assert write_atomic(str(path), "one\n", durable=False) is True
    assert write_atomic(str(path), "one\n", durable=False) is False  # unchanged: not rewritten
    assert write_atomic(str(path), "two\n", durable=False) is True
    assert path.read_text() == "two\n" and oct(os.stat(path).st_mode & 0o777) == "0o644"
    assert os.listdir(tmp_path) == ["peers.json"]  # no temporary file left
