"""site.yml's underlay preflight, its pure parts (plugins/module_utils/underlay.py) and its filters; the I/O
parts against the loopback (a real ICMP socket and real UDP sockets)."""

import socket

import pytest

from ansible_collections.overlay.flannel.plugins.filter.host_decisions import underlay_problems, underlay_targets
from ansible_collections.overlay.flannel.plugins.module_utils import underlay as u


def test_the_ring_stays_linear():
    names = ["h%d" % i for i in range(500)]
    pairs = [(n, t) for n in names for t in u.ring(names, n)]
    assert len(pairs) == 1000  # 2 per host, not 499
    assert u.ring(names, "h499") == ["h0", "h1"]
    assert u.ring(["a", "b"], "a") == ["b"] and u.ring(["a"], "a") == [] and u.ring(["a"], "x") == []
    # every host is checked by two others as well
    assert sorted(t for _n, t in pairs) == sorted(names * 2)


def test_the_full_packet_size_of_each_backend():
    assert u.full_size("udp", 0, 1500) == 1500  # the underlay MTU less 28, plus 28
    assert u.full_size("udp", 1400, 1500) == 1428
    assert u.full_size("vxlan", 1400, 9000) == 1450
    assert u.full_size("host-gw", 1400, 1500) == 1400
    assert (u.default_port("udp"), u.default_port("vxlan"), u.default_port("host-gw")) == (8285, 8472, None)


def test_interface_of_ip_json():
    data = [{"ifname": "lo", "mtu": 65536, "addr_info": [{"local": "127.0.0.1", "prefixlen": 8}]},
            {"ifname": "eth0", "mtu": 1500, "addr_info": [{"local": "10.0.0.5", "prefixlen": 24}]}]
    assert u.interface_of(data, "10.0.0.5") == ("eth0", 1500, 24)
    assert u.interface_of(data, "10.0.0.6") == (None, None, None)
    assert u.same_network("10.0.0.5", 24, "10.0.0.9") == (True, "10.0.0.0/24")
    assert u.same_network("10.0.0.5", 24, "10.0.1.9")[0] is False


def result(**checks):
    return {"skipped": False, "size": 1500, "backend": "udp", "port": 8285, "network": None, "listener": "in_use",
            "checks": [dict(name=n, address="192.0.2.%d" % i, **c) for i, (n, c) in enumerate(sorted(checks.items()), 2)]}


OK_PING = {"ok": True, "passes": 1500, "error": None}


def test_problems_name_both_hosts_what_failed_and_the_fix():
    r = result(h2={"ping": {"ok": False, "passes": 1400, "error": None}, "port": {"ok": True, "answer": "refused"}},
               h3={"ping": OK_PING, "port": {"ok": False, "answer": None}},
               h4={"ping": {"ok": False, "passes": None, "error": "no answer at 576 bytes either"}})
    found = u.problems("h1", r, "udp", 0, {"h3": {"listener": "listening"}})
    assert len(found) == 3
    assert found[0].startswith("h1 -> h2 (192.0.2.2): DF packets of 1500 bytes")
    assert "1400 bytes do. Set flannel_mtu to 1372 or less" in found[0]
    assert found[1].startswith("h1 -> h3 (192.0.2.3): UDP datagrams to the udp backend's port 8285 get no answer")
    assert "open UDP port 8285" in found[1] and "flannel_backend_port" in found[1]
    assert "no ICMP echo gets through" in found[2] and "576" in found[2]
    # A peer whose forwarder holds the port (or one not in the play) answers no preflight datagram: no finding,
    # whatever this host's peer probes see (they and report.yml show a pair that is down).
    assert len(u.problems("h1", r, "udp", 0, {"h3": {"listener": "in_use"}})) == 2
    assert len(u.problems("h1", r, "udp", 0, {})) == 2
    assert u.problems("h1", result(h2={"ping": OK_PING, "port": {"ok": True, "answer": "peer probes"}}),
                      "udp", 0, {}) == []
    assert u.problems("h1", {"skipped": True, "checks": []}, "udp", 0, {}) == []
    gw = result(h2={"ping": OK_PING, "same_network": False})
    gw["network"] = "10.0.0.0/24"
    assert "host-gw" in u.problems("h1", gw, "host-gw", 0, {})[0]


def test_the_filters_read_hostvars():
    hv = {"a": {"ansible_host": "192.0.2.1"}, "b": {"flannel_public_ip": "192.0.2.22", "ansible_host": "x"},
          "c": {}}
    assert underlay_targets(["a", "b", "c"], "a", hv) == [{"name": "b", "address": "192.0.2.22"},
                                                          {"name": "c", "address": "c"}]
    r = result(b={"ping": OK_PING, "port": {"ok": False, "answer": None}})
    hv["b"]["flannel_host_probe"] = {"preflight": {"listener": "in_use"}}
    assert underlay_problems(r, "a", "udp", "0", hv) == []
    hv["b"]["flannel_host_probe"] = {"preflight": {"listener": "listening"}}
    assert "get no answer: open UDP port 8285" in underlay_problems(r, "a", "udp", "0", hv)[0]


def test_echo_sizes_against_the_loopback():
    sock, raw = u.icmp_socket()
    try:
        got = u.ping_sizes(sock, raw, "127.0.0.1", [84, 1500, 9000])
        assert got == {84: True, 1500: True, 9000: True}
        # 0.0.0.1: no echo can go there (an address that nothing answers depends on the machine's network)
        nothing = dict(ok=False, passes=None, error="no answer at 576 bytes either")
        assert u.df_check(sock, raw, "0.0.0.1", 1500) == nothing
    finally:
        sock.close()


def test_the_port_check_against_the_loopback():
    free = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()
    check = u.PortCheck(port)
    assert check.state == "listening"
    try:
        # this host's own listener answers its datagram
        assert check.check(["127.0.0.1"], window=2.0) == {"127.0.0.1": "answered"}
        held = u.PortCheck(port)
        assert held.state == "in_use"
        held.close()
    finally:
        check.close()
    # nothing listens now: the kernel's port unreachable says the datagram got there
    other = u.PortCheck(port)
    other.close()
    closed = u.PortCheck.__new__(u.PortCheck)
    closed.port, closed.listener, closed.state = port, None, "closed"
    assert closed.check(["127.0.0.1"], window=2.0) == {"127.0.0.1": "refused"}


@pytest.mark.parametrize("garbage", [b"", b"\x00" * 7, b"\x08\x00" + b"\x00" * 30])
def test_garbage_is_no_answer(garbage):
    assert u.parse_reply(garbage, False) is None


def test_the_running_forwarder_vouches_for_the_peers_it_sees_on_that_backend_and_port_only():
    status = {"backend": "udp", "port": 8285, "peers": [
        {"public_ip": "192.0.2.2", "state": "up"}, {"public_ip": "192.0.2.3", "state": "mtu"},
        {"public_ip": "192.0.2.4", "state": "down"}, {"public_ip": "192.0.2.5", "state": "unknown"}, "garbage"]}
    assert u.vouched(status, "udp", 8285) == {"192.0.2.2", "192.0.2.3"}
    # site.yml moving the backend's port, or to another backend: the probes say nothing about the new one
    assert u.vouched(status, "udp", 8286) == set()
    assert u.vouched(status, "vxlan", 8285) == set()
    # a status file of a forwarder that did not write its port, none, or an unreadable one
    assert u.vouched(dict(status, port=None), "udp", 8285) == set()
    assert u.vouched(None, "udp", 8285) == set() and u.vouched({"error": "not JSON"}, "udp", 8285) == set()


def test_the_listener_answers_while_its_host_is_busy_with_other_checks():
    """A neighbour's datagram that comes before this host's own port check (its DF echoes still running) is
    answered: an open listener that does not answer would be taken for a blocked port."""
    listening = u.PortCheck(0)
    try:
        port = listening.listener.getsockname()[1]
        peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        peer.settimeout(2.0)
        try:
            peer.sendto(u.MAGIC + b"12345678", ("127.0.0.1", port))
            assert peer.recvfrom(2048)[0] == u.MAGIC + b"12345678"
            # anything else is not echoed
            peer.sendto(b"not the preflight's", ("127.0.0.1", port))
            with pytest.raises(socket.timeout):
                peer.settimeout(0.5)
                peer.recvfrom(2048)
        finally:
            peer.close()
    finally:
        listening.close()
    assert not listening._thread.is_alive()
