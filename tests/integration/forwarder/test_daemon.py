"""flannel-forwarder as a real daemon: namespace hosts, a real etcd, real TUN and UDP.

Needs root. Hosts h1, h2 (and h3 for the peer add/remove test) get their
leases from FlannelStore.acquire, the code path of the subnet module; the
daemon only finds (or re-claims) them.
"""

import ipaddress
import json
import os
import subprocess
import sys
import time

import pytest

if os.geteuid() != 0:
    pytest.fail("needs root: network namespaces and TUN devices", pytrace=False)

from ansible_collections.overlay.flannel.plugins.module_utils.etcd_client import EtcdClient, delete, put
from ansible_collections.overlay.flannel.plugins.module_utils.netconfig import dumps, from_dict
from ansible_collections.overlay.flannel.plugins.module_utils.store import FlannelStore
from support.etcd_server import EtcdServer

from flannel_forwarder.packet import build_ipv4_header
from lab import CONTROLLER, NETWORK, PROBE, Lab, container_ip, host_ip, subnet, wait_for

PREFIX = "/coreos.com/network"


@pytest.fixture(scope="module")
def env(request):
    lab = Lab("fd%d-" % (os.getpid() % 10000))
    request.addfinalizer(lab.destroy)
    lab.create()
    server = EtcdServer(host=CONTROLLER, name="fwd").start()
    request.addfinalizer(server.stop)
    client = EtcdClient([server.endpoint])
    request.addfinalizer(client.close)
    store = FlannelStore(client, PREFIX)
    store.write_config(dumps(from_dict({"Network": NETWORK}).to_dict()), store.snapshot())
    for n in (1, 2, 3):
        lab.add_host(n)
    for n in (1, 2):
        store.acquire(host_ip(n), requested=ipaddress.IPv4Network(subnet(n)))
    procs = {n: lab.start_forwarder(n, server.endpoint) for n in (1, 2)}
    return {"lab": lab, "server": server, "store": store, "client": client, "procs": procs}


def test_files_written_and_health(env):
    lab = env["lab"]
    subnet_env, docker = lab.files(1)
    with open(subnet_env) as fh:
        assert fh.read() == "FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_SUBNET=10.5.1.1/24\nFLANNEL_MTU=1472\nFLANNEL_IPMASQ=false\n"
    with open(docker) as fh:
        assert 'DOCKER_NETWORK_OPTIONS=" --bip=10.5.1.1/24 --ip-masq=true --mtu=1472 "' in fh.read()
    assert lab.http(1, "/healthz")[0] == 200 and lab.http(1, "/readyz")[0] == 200
    assert lab.metric(1, "peers") == 1
    assert 86000 < lab.metric(1, "lease_seconds_remaining") <= 86400
    routes = lab.run("h1", "ip", "route", "show", "dev", "flannel0").stdout
    assert "10.5.0.0/16" in routes


def test_ping_and_tcp_transfer_between_containers(env):
    lab = env["lab"]
    res = lab.probe("c1", "ping", container_ip(2), "5", "0.05")
    assert res["received"] == 5, res
    srv = subprocess.Popen(["ip", "netns", "exec", lab.ns("c2"), sys.executable, PROBE, "serve", "5201"],
                           stdout=subprocess.PIPE, text=True)
    lab.procs.append(srv)
    srv.notify = open(os.devnull)  # destroy() closes it
    assert json.loads(srv.stdout.readline())["listening"] == 5201
    sent = lab.probe("c1", "send", container_ip(2), "5201", str(8 << 20), "7")
    got = json.loads(srv.stdout.readline())
    srv.wait(10)
    assert got["bytes"] == 8 << 20 and got["sha256"] == sent["sha256"]
    assert lab.metric(1, 'packets_total{direction="tun_to_udp"}') > 1000
    assert lab.metric(1, 'datapath_way_info{way="numpy"}') == 1  # chosen once at start-up, shown


def test_peer_added_and_removed_while_running(env):
    lab, store = env["lab"], env["store"]
    store.acquire(host_ip(3), requested=ipaddress.IPv4Network(subnet(3)))
    p3 = lab.start_forwarder(3, env["server"].endpoint)
    wait_for(lambda: lab.metric(1, "peers") == 2, what="h1 to learn about h3")
    assert lab.probe("c1", "ping", container_ip(3), "3", "0.05")["received"] == 3
    lab.stop(p3)
    store.release(host_ip(3))
    wait_for(lambda: lab.metric(1, "peers") == 1, what="h1 to forget h3")
    res = lab.probe("c1", "unreachable", container_ip(3))
    assert res["type"] == 3 and res["code"] == 0, res


def test_spoofed_and_garbage_datagrams_are_dropped_and_counted(env):
    lab = env["lab"]
    before_unknown = lab.metric(1, 'dropped_packets_total{direction="udp_to_tun",reason="unknown_sender"}') or 0
    before_spoof = lab.metric(1, 'dropped_packets_total{direction="udp_to_tun",reason="spoofed"}') or 0

    def inner(src):
        # A UDP packet to c1 whose inner source is `src`.
        def ip(a):
            return int(ipaddress.IPv4Address(a))
        return build_ipv4_header(ip(src), ip(container_ip(1)), 17, 12) + bytes.fromhex("1f9000350000000000000000")
    # From h3's address, which is no peer any more (its lease was released above).
    lab.probe("h3", "sendraw", host_ip(3), "%s:8285" % host_ip(1), inner(container_ip(3)).hex())
    # From h2, a real peer, with an inner source outside h2's subnet.
    lab.probe("h2", "sendraw", host_ip(2), "%s:8285" % host_ip(1), inner("10.5.77.2").hex())
    lab.probe("h2", "sendraw", host_ip(2), "%s:8285" % host_ip(1), "deadbeef")
    wait_for(lambda: (lab.metric(1, 'dropped_packets_total{direction="udp_to_tun",reason="unknown_sender"}') or 0)
             > before_unknown, what="unknown_sender drop")
    wait_for(lambda: (lab.metric(1, 'dropped_packets_total{direction="udp_to_tun",reason="spoofed"}') or 0)
             > before_spoof, what="spoofed drop")
    drops = lab.metric(1, 'dropped_packets_total{direction="udp_to_tun"')
    assert drops >= 3
    assert env["procs"][1].poll() is None


def test_traffic_keeps_flowing_while_etcd_is_down_for_30s(env):
    lab, server = env["lab"], env["server"]
    reconnects = lab.metric(1, "etcd_watch_reconnects_total")
    server.pause()
    try:
        res = lab.probe("c1", "ping", container_ip(2), "30", "1.0", timeout=120)
        assert res["received"] >= 29, res
        assert lab.metric(1, "etcd_connected") == 0
        assert lab.http(1, "/healthz")[0] == 200
    finally:
        server.start()
    wait_for(lambda: lab.metric(1, "etcd_watch_reconnects_total") > reconnects, timeout=30, what="watch reconnect")
    # The watch resumed: a lease written after the outage reaches the peer table.
    env["store"].acquire(host_ip(3), requested=ipaddress.IPv4Network(subnet(3)))
    wait_for(lambda: lab.metric(1, "peers") == 2, timeout=20, what="a peer added after the outage")
    env["store"].release(host_ip(3))
    wait_for(lambda: lab.metric(1, "peers") == 1, timeout=20, what="that peer removed")


def _recreated(now, before):
    """`now` if it is a new key (created after `before` went), else None."""
    return now if now is not None and now.create_revision > before.mod_revision else None


def test_vanished_own_lease_is_recreated_on_the_same_subnet(env):
    client = env["client"]
    key = PREFIX + "/subnets/10.5.2.0-24"
    kv = client.get(key)
    client.revoke(kv.lease)  # the key goes with its etcd lease
    # h2 may re-create the key before a read right after the revoke could see
    # it gone, so the proof that it went is the new key's create revision.
    back = wait_for(lambda: _recreated(client.get(key), kv), timeout=15, what="h2 to re-create its lease")
    assert b'"PublicIP":"10.214.0.12"' in back.value and back.lease not in (0, kv.lease)
    assert env["procs"][2].poll() is None


def test_sigterm_removes_tun_and_routes_and_keeps_the_lease_then_restart_finds_it(env):
    lab = env["lab"]
    proc = env["procs"][2]
    assert lab.stop(proc) == 0, lab.log(proc)
    assert lab.run("h2", "ip", "link", "show", "flannel0", check=False).returncode != 0
    assert "10.5.0.0/16" not in lab.run("h2", "ip", "route").stdout
    assert env["client"].get(PREFIX + "/subnets/10.5.2.0-24") is not None
    env["procs"][2] = lab.start_forwarder(2, env["server"].endpoint)
    with open(lab.files(2)[0]) as fh:
        assert "FLANNEL_SUBNET=10.5.2.1/24" in fh.read()
    assert lab.probe("c1", "ping", container_ip(2), "3", "0.05")["received"] == 3


def test_lease_taken_by_another_host_stops_forwarding(env):
    lab, client = env["lab"], env["client"]
    client.txn([], [put(PREFIX + "/subnets/10.5.2.0-24",
                        '{"PublicIP":"10.214.0.99","PublicIPv6":null,"BackendType":"udp","BackendData":null}')])
    proc = env["procs"][2]
    proc.wait(15)
    assert proc.returncode == 1
    assert "now leased to 10.214.0.99" in lab.log(proc)
    assert lab.run("h2", "ip", "link", "show", "flannel0", check=False).returncode != 0


def test_no_lease_exits_naming_the_playbook_and_subnet_env_reclaim(env):
    lab, store, client = env["lab"], env["store"], env["client"]
    client.txn([], [delete(PREFIX + "/subnets/10.5.2.0-24")])
    subnet_env, _docker = lab.files(2)
    with open(lab.state_file(2)) as fh:
        assert fh.read() == "10.5.2.0/24\n"  # kept by the forwarder that ran before
    os.unlink(subnet_env)
    os.unlink(lab.state_file(2))
    proc = lab.start_forwarder(2, env["server"].endpoint, ready=False)
    assert proc.wait(20) == 1
    assert "run playbooks/site.yml" in lab.log(proc)
    # With the subnet file of an earlier run, the free subnet is re-claimed.
    with open(subnet_env, "w") as fh:
        fh.write("FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_SUBNET=10.5.2.1/24\nFLANNEL_MTU=1472\nFLANNEL_IPMASQ=false\n")
    env["procs"][2] = lab.start_forwarder(2, env["server"].endpoint)
    kv = client.get(PREFIX + "/subnets/10.5.2.0-24")
    assert b'"PublicIP":"10.214.0.12"' in kv.value
    wait_for(lambda: lab.metric(1, "peers") == 1, timeout=20, what="h1 to see h2's lease again")
    assert lab.probe("c1", "ping", container_ip(2), "3", "0.05")["received"] == 3
    assert store.snapshot().leases_of(host_ip(2))[0].subnet == ipaddress.IPv4Network(subnet(2))
    # After a reboot (/run is new) only the state file is left: the same free subnet is re-claimed from it.
    lab.stop(env["procs"][2])
    client.txn([], [delete(PREFIX + "/subnets/10.5.2.0-24")])
    os.unlink(subnet_env)
    env["procs"][2] = lab.start_forwarder(2, env["server"].endpoint)
    assert store.snapshot().leases_of(host_ip(2))[0].subnet == ipaddress.IPv4Network(subnet(2))


def test_short_lease_is_renewed(env):
    lab, store, client = env["lab"], env["store"], env["client"]
    store.release(host_ip(3))
    # A margin of a minute on a 12 s lease: renewed at half its TTL, 6 s before it would expire.
    store.acquire(host_ip(3), requested=ipaddress.IPv4Network(subnet(3)), ttl=12, renew_margin=1)
    p3 = lab.start_forwarder(3, env["server"].endpoint, "--subnet-lease-renew-margin", "1")
    key = PREFIX + "/subnets/10.5.3.0-24"
    lease_id = client.get(key).lease
    time.sleep(16)  # longer than the 12 s TTL: only renewals keep the key
    kv = client.get(key)
    assert kv is not None and kv.lease == lease_id
    assert p3.poll() is None
    lab.stop(p3)


def test_relet_while_running_exits_instead_of_taking_the_old_subnet_back(env):
    lab, store, client = env["lab"], env["store"], env["client"]
    store.release(host_ip(3))
    store.acquire(host_ip(3), requested=ipaddress.IPv4Network(subnet(3)))
    p3 = lab.start_forwarder(3, env["server"].endpoint)
    out = store.acquire(host_ip(3), relet=True)
    assert out.lease.subnet != ipaddress.IPv4Network(subnet(3))
    assert p3.wait(15) == 1
    assert "lease moved from 10.5.3.0/24 to %s" % out.lease.subnet in lab.log(p3)
    # The old subnet stayed free: the host holds exactly its new lease.
    assert [str(lease.subnet) for lease in store.snapshot().leases_of(host_ip(3))] == [str(out.lease.subnet)]
    assert client.get(PREFIX + "/subnets/10.5.3.0-24") is None


def test_the_network_grows_and_shrinks_while_running(env):
    """The config goes from 10.5.0.0/16 to 10.4.0.0/15 and back while h1 and h2 forward: each follows at once
    (the TUN's route, FLANNEL_NETWORK in subnet.env; a lease in the new half becomes a peer), no restart,
    no lost ping; a network that would strand their subnets is not applied, and a new backend port makes
    them exit to restart on it."""
    lab, store, client = env["lab"], env["store"], env["client"]
    procs = env["procs"]
    fake = "10.214.0.99"
    store.release(fake)
    client.txn([], [put(PREFIX + "/subnets/10.4.9.0-24",
                        '{"PublicIP":"%s","PublicIPv6":null,"BackendType":"udp","BackendData":null}' % fake)])
    time.sleep(1)
    peers_before = lab.metric(1, "peers")  # (10.4.9.0/24 lies outside 10.5.0.0/16: no peer)

    def network_of(n):
        with open(lab.files(n)[0]) as fh:
            return dict(line.split("=", 1) for line in fh.read().split())["FLANNEL_NETWORK"]

    def routes(n):
        return lab.run("h%d" % n, "ip", "route", "show", "dev", "flannel0").stdout

    def set_config(raw):
        assert store.write_config(dumps(from_dict(raw).to_dict()), store.snapshot())

    pids = {n: procs[n].pid for n in (1, 2)}
    ping = subprocess.Popen(["ip", "netns", "exec", lab.ns("c1"), sys.executable, PROBE, "ping", container_ip(2),
                             "300", "0.05"], stdout=subprocess.PIPE, text=True)
    try:
        set_config({"Network": "10.4.0.0/15"})
        for n in (1, 2):
            wait_for(lambda: network_of(n) == "10.4.0.0/15", what="h%d's subnet.env to follow" % n)
            wait_for(lambda: "10.4.0.0/15" in routes(n) and "10.5.0.0/16" not in routes(n),
                     what="h%d's route to follow" % n)
        wait_for(lambda: lab.metric(1, "peers") == peers_before + 1, what="the lease in the new half to be a peer")
        with open(lab.files(1)[1]) as fh:
            assert "--bip=10.5.1.1/24" in fh.read()  # docker's options did not change
        set_config({"Network": "10.5.0.0/16"})
        for n in (1, 2):
            wait_for(lambda: network_of(n) == "10.5.0.0/16" and "10.5.0.0/16" in routes(n), what="shrink back")
        wait_for(lambda: lab.metric(1, "peers") == peers_before, what="the lease outside to be dropped")
        out, _err = ping.communicate(timeout=60)
    finally:
        if ping.poll() is None:
            ping.kill()
    res = json.loads(out)
    assert res["received"] >= res["sent"] - 1, res
    assert all(procs[n].poll() is None and procs[n].pid == pids[n] for n in (1, 2))

    # A network that no longer holds their subnets is not applied.
    set_config({"Network": "10.7.0.0/16"})
    wait_for(lambda: "re-lease this host" in lab.log(procs[1]), what="h1 to refuse the new network")
    assert network_of(1) == "10.5.0.0/16" and "10.5.0.0/16" in routes(1) and procs[1].poll() is None
    # A changed backend port: both exit, to be restarted on it.
    set_config({"Network": "10.5.0.0/16", "Backend": {"Type": "udp", "Port": 8286}})
    for n in (1, 2):
        assert procs[n].wait(15) == 1
        assert "backend udp Port=8285 -> udp Port=8286; exiting to restart on it" in lab.log(procs[n])
    client.txn([], [delete(PREFIX + "/subnets/10.4.9.0-24")])
    set_config({"Network": NETWORK})
    for n in (1, 2):
        procs[n] = lab.start_forwarder(n, env["server"].endpoint)
    assert lab.probe("c1", "ping", container_ip(2), "3", "0.05")["received"] == 3
