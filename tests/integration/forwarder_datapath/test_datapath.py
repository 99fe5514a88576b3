"""Two namespace hosts running the real data path (real TUN, real UDP) with static peers.

Needs root (namespaces, TUN).  Every namespace is created here, with a
per-run prefix, and removed by the fixture finalizer even when a test fails.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "forwarder"))

from topology import HOSTS, NETWORK, PORT, Topology  # noqa: E402

from flannel_forwarder.packet import build_ipv4_header  # noqa: E402

if os.geteuid() != 0:
    pytest.fail("needs root: network namespaces and TUN devices", pytrace=False)

PROBE = os.path.join(HERE, "probe.py")
C1, C2 = HOSTS["h1"][3], HOSTS["h2"][3]
H1_UNDERLAY, H2_UNDERLAY = HOSTS["h1"][0], HOSTS["h2"][0]
STRANGER = "10.213.0.99"  # an underlay address that is nobody's peer


def ip_int(s: str) -> int:
    return int.from_bytes(bytes(int(x) for x in s.split(".")), "big")


def probe(t: Topology, ns: str, *args: str, timeout: float = 60) -> dict:
    r = t.exec(ns, sys.executable, PROBE, *args, timeout=timeout)
    return json.loads(r.stdout.strip().splitlines()[-1])


# (h1 offloads, h2 offloads).  "mixed" is the interoperability check: h2 reads
# and writes one plain packet per syscall like flanneld, so its kernel verifies
# every TCP checksum that h1 computed while segmenting (and h1 coalesces what
# h2 sends); a wrong checksum would stall the transfer.
MODES = {"offload": (True, True), "no-offload": (False, False), "mixed": (True, False)}


@pytest.fixture(scope="module", params=list(MODES), ids=list(MODES))
def hosts(request, tmp_path_factory):
    off1, off2 = MODES[request.param]
    offload = off1
    t = Topology(f"fit{os.getpid() % 100000}{request.param[0]}-")
    request.addfinalizer(t.destroy)
    t.create()
    d = tmp_path_factory.mktemp("stats")
    f1 = t.start_forwarder("h1", offload=off1, stats_file=str(d / "h1.json"))
    f2 = t.start_forwarder("h2", offload=off2, stats_file=str(d / "h2.json"))
    # the stranger address exists on h2's underlay so that datagrams can come from it
    t.exec("h2", "ip", "addr", "add", f"{STRANGER}/24", "dev", "u0")
    return {"t": t, "f1": f1, "f2": f2, "offload": offload, "mode": request.param}


def test_offload_state_as_asked(hosts):
    for f, want in zip((hosts["f1"], hosts["f2"]), MODES[hosts["mode"]]):
        assert f.info["vnet_hdr"] is want
        assert f.info["udp_gso"] is want and f.info["udp_gro"] is want
        assert f.info["mtu"] == 1472


def test_tun_address_mtu_and_route(hosts):
    t = hosts["t"]
    link = json.loads(t.exec("h1", "ip", "-j", "addr", "show", "flannel0").stdout)[0]
    assert link["mtu"] == 1472
    assert "UP" in link["flags"]
    assert [(a["local"], a["prefixlen"]) for a in link["addr_info"] if a["family"] == "inet"] == [("10.5.1.0", 32)]
    routes = json.loads(t.exec("h1", "ip", "-j", "route", "show", NETWORK).stdout)
    assert [r["dev"] for r in routes] == ["flannel0"]


def test_ping_between_containers(hosts):
    r = probe(hosts["t"], "c1", "ping", C2, "5", "0.05")
    assert r["received"] == 5, r


@pytest.mark.parametrize("direction", ["c1->c2", "c2->c1"])
def test_tcp_transfer_content_intact(hosts, direction):
    t = hosts["t"]
    src, dst, dst_ip = ("c1", "c2", C2) if direction == "c1->c2" else ("c2", "c1", C1)
    fwd = hosts["f1"] if src == "c1" else hosts["f2"]
    before = fwd.stats()["tx"]["packets"]
    srv = t.spawn(dst, sys.executable, PROBE, "serve", "5001", stdout=subprocess.PIPE, text=True)
    assert json.loads(srv.stdout.readline())["listening"] == 5001
    sent = probe(t, src, "send", dst_ip, "5001", str(20 << 20), "42")
    got = json.loads(srv.communicate(timeout=30)[0].strip().splitlines()[-1])
    assert got == {"bytes": 20 << 20, "sha256": sent["sha256"]}
    after = fwd.stats()
    # the bytes really went through the forwarder: >= 20 MB in MTU-sized datagrams
    assert after["tx"]["packets"] - before >= (20 << 20) // 1472
    if fwd.info["vnet_hdr"]:
        # and with offloads, in batches: far fewer sends than packets
        assert after["tx"]["batches"] * 4 < after["tx"]["packets"]
    else:
        assert after["tx"]["batches"] == after["tx"]["packets"]


def _inner_udp(src: str, dst: str, payload: bytes = b"spoof!") -> bytes:
    udp = (4000).to_bytes(2, "big") + (9999).to_bytes(2, "big") + (8 + len(payload)).to_bytes(2, "big") + b"\0\0"
    return build_ipv4_header(ip_int(src), ip_int(dst), 17, len(udp) + len(payload)) + udp + payload


def _rx_drops(hosts) -> dict:
    return hosts["f1"].stats()["rx"]["drops"]


@pytest.mark.parametrize(
    "sender,inner,reason",
    [
        (STRANGER, lambda: _inner_udp(C2, C1), "unknown_sender"),
        (H2_UNDERLAY, lambda: _inner_udp("10.5.7.7", C1), "spoofed"),
        (H2_UNDERLAY, lambda: b"\x00garbage, not an IP packet at all", "bad_version"),
        (H2_UNDERLAY, lambda: b"\x45\x00\x00", "short"),
        (H2_UNDERLAY, lambda: _inner_udp(C2, C1)[:-3], "bad_length"),
    ],
    ids=["unknown-sender", "inner-source-outside-subnet", "garbage", "short", "truncated"],
)
def test_spoofed_and_malformed_datagrams_dropped_and_counted(hosts, sender, inner, reason):
    t = hosts["t"]
    before = _rx_drops(hosts).get(reason, 0)
    probe(t, "h2", "sendraw", sender, f"{H1_UNDERLAY}:{PORT}", inner().hex())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _rx_drops(hosts).get(reason, 0) <= before:
        pass
    assert _rx_drops(hosts).get(reason, 0) == before + 1
    # and the loop survived it
    assert probe(t, "c1", "ping", C2, "1", "0")["received"] == 1


def test_bad_header_checksum_dropped(hosts):
    t = hosts["t"]
    pkt = bytearray(_inner_udp(C2, C1))
    pkt[10] ^= 0xFF
    before = _rx_drops(hosts).get("bad_checksum", 0)
    probe(t, "h2", "sendraw", H2_UNDERLAY, f"{H1_UNDERLAY}:{PORT}", bytes(pkt).hex())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _rx_drops(hosts).get("bad_checksum", 0) <= before:
        pass
    assert _rx_drops(hosts).get("bad_checksum", 0) == before + 1


def test_valid_datagram_from_peer_is_delivered(hosts):
    # the counterpart of the spoofing tests: the same path accepts a proper one
    t = hosts["t"]
    before = hosts["f1"].stats()["rx"]["packets"]
    probe(t, "h2", "sendraw", H2_UNDERLAY, f"{H1_UNDERLAY}:{PORT}", _inner_udp(C2, C1).hex())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and hosts["f1"].stats()["rx"]["packets"] <= before:
        pass
    assert hosts["f1"].stats()["rx"]["packets"] == before + 1


def test_no_peer_gets_icmp_net_unreachable(hosts):
    t = hosts["t"]
    before = hosts["f1"].stats()
    r = probe(t, "c1", "unreachable", "10.5.9.9")
    assert (r["type"], r["code"]) == (3, 0), r
    assert r["from"] == "10.5.1.0" and r["icmp_checksum_ok"] and r["ip_checksum_ok"]
    after = hosts["f1"].stats()
    assert after["icmp_unreachable"] > before["icmp_unreachable"]
    assert after["tx"]["drops"].get("no_route", 0) > before["tx"]["drops"].get("no_route", 0)


def test_sigterm_leaves_no_tun_or_route(hosts):
    # last in the module: it stops the forwarders
    t = hosts["t"]
    for name, f in (("h1", hosts["f1"]), ("h2", hosts["f2"])):
        assert t.exec(name, "ip", "link", "show", "flannel0", check=False).returncode == 0
        assert t.stop(f.proc, signal.SIGTERM) == 0
        assert t.exec(name, "ip", "link", "show", "flannel0", check=False).returncode != 0
        assert NETWORK.partition("/")[0] not in t.exec(name, "ip", "route").stdout
