"""Pure parts of the daemon: renewal timing, the peer table from leases, metrics text, sd_notify."""

import ipaddress
import re
import socket
import time

from ansible_collections.overlay.flannel.plugins.module_utils.leases import Lease
from ansible_collections.overlay.flannel.plugins.module_utils.netconfig import parse

from flannel_forwarder.health import render_metrics
from flannel_forwarder.backend.udp import udp_peer_of
from flannel_forwarder.lease_events import peers_from
from flannel_forwarder.leasekeeper import LeaseKeeper
from flannel_forwarder.routes import Peer, PeerTable
from flannel_forwarder.sdnotify import notify
from flannel_forwarder.stats import Stats


def lease(net, ip):
    attrs = {"PublicIP": ip, "PublicIPv6": None, "BackendType": "udp", "BackendData": None}
    return Lease("/k/" + net, ipaddress.IPv4Network(net), attrs, 1, 1)


def keeper(left, margin=3600, interval=10.0):
    k = LeaseKeeper(store=None, public_ip="192.0.2.1", renew_margin=margin, check_interval=interval)
    k.expires_at = None if left is None else time.monotonic() + left
    return k


def test_renewal_wakes_when_due_and_not_before():
    assert keeper(None)._renew_wait() == 10.0             # a reservation: just check now and then
    assert keeper(86400)._renew_wait() == 10.0            # far from due: the regular check
    assert abs(keeper(3605)._renew_wait() - 6.0) < 0.1    # due in 5 s: wake up then (+1 s)
    assert keeper(3000)._renew_wait() == 1.0              # overdue: renew right away
    assert keeper(5, margin=60)._renew_wait() == 1.0


def test_seconds_left():
    assert keeper(None).seconds_left() is None
    assert 99 < keeper(100).seconds_left() <= 100
    assert keeper(-5).seconds_left() == 0.0


def test_peers_exclude_our_own_subnet_and_leases_that_are_no_host_subnet_of_the_network():
    leases = [lease("10.5.1.0/24", "192.0.2.1"), lease("10.5.2.0/24", "192.0.2.2"), lease("10.5.3.0/24", "192.0.2.3"),
              lease("10.5.0.0/16", "192.0.2.4"), lease("10.99.0.0/24", "192.0.2.5"), lease("10.5.4.0/25", "192.0.2.6")]
    config = parse('{"Network": "10.5.0.0/16"}')
    peers = peers_from(leases, ipaddress.IPv4Network("10.5.1.0/24"), config, udp_peer_of(8285))
    assert peers == {ipaddress.IPv4Network("10.5.2.0/24"): Peer("192.0.2.2", 8285),
                     ipaddress.IPv4Network("10.5.3.0/24"): Peer("192.0.2.3", 8285)}


def test_metrics_text():
    stats = Stats()
    stats.tx.packets, stats.tx.bytes = 3, 4200
    stats.rx.drop("spoofed", 2)
    k = keeper(500)
    k.peers = PeerTable({"10.5.2.0/24": ("192.0.2.2", 8285)})
    k.watch_reconnects = 4
    k._watch = type("Watch", (), {"endpoint": "https://10.0.0.2:2379"})()
    text = render_metrics(stats, k, ready=True)
    assert 'flannel_forwarder_etcd_endpoint_info{use="watch",endpoint="https://10.0.0.2:2379"} 1' in text
    assert 'use="lease"' not in text  # no client in this keeper
    assert 'flannel_forwarder_packets_total{direction="tun_to_udp"} 3' in text
    assert 'flannel_forwarder_bytes_total{direction="tun_to_udp"} 4200' in text
    assert 'flannel_forwarder_dropped_packets_total{direction="udp_to_tun",reason="spoofed"} 2' in text
    assert "flannel_forwarder_peers 1" in text and "flannel_forwarder_ready 1" in text
    assert "flannel_forwarder_etcd_watch_reconnects_total 4" in text
    assert re.search(r"^flannel_forwarder_lease_seconds_remaining 49[89]$", text, re.M)
    assert "# TYPE flannel_forwarder_packets_total counter" in text


def test_sd_notify(tmp_path):
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        assert notify("READY=1", {"NOTIFY_SOCKET": path}) is True
        assert sock.recv(100) == b"READY=1"
    assert notify("READY=1", {}) is False
