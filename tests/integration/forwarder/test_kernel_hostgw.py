"""The host-gw backend of flannel-forwarder, and backend changes: namespace hosts, a real etcd, the real kernel."""

import ipaddress
import os
import signal

import pytest

if os.geteuid() != 0:
    pytest.fail("needs root: network namespaces and VXLAN devices", pytrace=False)

from ansible_collections.overlay.flannel.plugins.module_utils import backends
from ansible_collections.overlay.flannel.plugins.module_utils.etcd_client import delete, put
from ansible_collections.overlay.flannel.plugins.module_utils.leases import encode_value
from ansible_collections.overlay.flannel.plugins.module_utils.netconfig import dumps, from_dict
from ansible_collections.overlay.flannel.plugins.module_utils.subnets import lease_key

from kernel_lab import (DEVICE, DEVICE6, NETWORK, PREFIX, VNI, container_ip, host_ip, ipj, lease, lease_value,
                        make_env, routes, routes6, transfer)
from lab import container_ip6, host_ip6, subnet6, wait_for


@pytest.fixture(scope="module")
def gw(request):
    return make_env(request, "host-gw", "g")


# -- host-gw --------------------------------------------------------------------


def test_hostgw_routes_files_and_transfer(gw):
    lab, store = gw["lab"], gw["store"]
    route = routes(lab, "h1")["10.5.2.0/24"]
    assert route["gateway"] == host_ip(2) and route["dev"] == "u0"
    assert lab.run("h1", "ip", "link", "show", DEVICE, check=False).returncode != 0
    assert lease_value(store, 1)["BackendType"] == "host-gw" and lease_value(store, 1)["BackendData"] is None
    subnet_env, _docker = lab.files(1)
    with open(subnet_env) as fh:
        assert "FLANNEL_MTU=1500\n" in fh.read()
    assert lab.probe("c1", "ping", container_ip(2), "5", "0.05")["received"] == 5
    sent, got = transfer(lab, "c1", 2, 5302)
    assert got["bytes"] == 8 << 20 and got["sha256"] == sent["sha256"]
    assert lab.metric(1, 'backend_info{type="host-gw"}') == 1
    # The daemons' peer probes (an echo to the peer's gateway, over the host-gw route) see each other up.
    for n in (1, 2):
        wait_for(lambda n=n: lab.metric(n, 'peers_by_state{state="up"}') == 1 == lab.metric(n, "peers"), 30,
                 "h%d's peer probes to see its peer up" % n)


def test_hostgw_ipv6_routes_and_transfer_both_ways(gw):
    """The dual-stack lab: a route to h2's IPv6 subnet via its PublicIPv6 on the underlay, no device; pings and
    checksummed transfers between the containers' IPv6 addresses, both ways."""
    lab, store = gw["lab"], gw["store"]
    route = routes6(lab, "h1")[subnet6(2)]
    assert route["gateway"] == host_ip6(2) and route["dev"] == "u0"
    assert lab.run("h1", "ip", "link", "show", DEVICE6, check=False).returncode != 0
    value = lease_value(store, 1)
    assert value["PublicIPv6"] == host_ip6(1) and "BackendV6Data" not in value
    lab.first_echo("c1", container_ip6(2))
    assert lab.probe("c1", "ping", container_ip6(2), "5", "0.05")["received"] == 5
    for src, dst, port in (("c1", 2, 5321), ("c2", 1, 5322)):
        sent, got = transfer(lab, src, dst, port, ip=container_ip6)
        assert got["bytes"] == 8 << 20 and got["sha256"] == sent["sha256"]


def test_hostgw_peers_follow_leases_and_hand_removed_routes_come_back(gw):
    lab, store = gw["lab"], gw["store"]
    lease(store, gw["backend"], 3)
    wait_for(lambda: routes(lab, "h1").get("10.5.3.0/24", {}).get("gateway") == host_ip(3)
             and routes6(lab, "h1").get(subnet6(3), {}).get("gateway") == host_ip6(3), timeout=20,
             what="h1 to route h3")
    lab.run("h1", "ip", "route", "del", "10.5.3.0/24")
    lab.run("h1", "ip", "-6", "route", "del", subnet6(3))
    wait_for(lambda: "10.5.3.0/24" in routes(lab, "h1") and subnet6(3) in routes6(lab, "h1"), timeout=20,
             what="the routes to come back")
    store.release(host_ip(3))
    wait_for(lambda: "10.5.3.0/24" not in routes(lab, "h1") and subnet6(3) not in routes6(lab, "h1"), timeout=20,
             what="h1 to forget h3")


def test_hostgw_restart_takes_the_routes_over_without_removing_them(gw):
    lab = gw["lab"]
    assert lab.stop(gw["procs"][1]) == 0
    before, before6 = routes(lab, "h1")["10.5.2.0/24"], routes6(lab, "h1")[subnet6(2)]
    gw["procs"][1] = lab.start_forwarder(1, gw["server"].endpoint)
    restarted = lab.log(gw["procs"][1]).rsplit(" starting version=", 1)[1]  # this run's lines
    assert "removed" not in restarted and "set route" not in restarted, restarted
    assert routes(lab, "h1")["10.5.2.0/24"] == before and routes6(lab, "h1")[subnet6(2)] == before6
    assert lab.probe("c1", "ping", container_ip(2), "3", "0.05")["received"] == 3


def test_hostgw_peer_not_on_the_underlay_network_is_reported_not_routed(gw):
    lab, store = gw["lab"], gw["store"]
    far = "192.0.2.50"
    key = lease_key(PREFIX, ipaddress.IPv4Network("10.5.50.0/24"))
    store.client.txn([], [put(key, encode_value(far, "host-gw"), store.client.grant(600))])
    try:
        wait_for(lambda: lab.metric(1, "unreachable_peers") == 1, timeout=20, what="the unreachable peer")
        assert "10.5.50.0/24" not in routes(lab, "h1")
        assert "host-gw needs the hosts on one L2 network" in lab.log(gw["procs"][1])
    finally:
        store.client.txn([], [delete(key)])
    wait_for(lambda: lab.metric(1, "unreachable_peers") == 0, timeout=20, what="the peer to go")


def test_backend_change_restarts_and_the_new_backend_takes_over(gw):
    """host-gw -> vxlan -> udp on h1 alone: the daemon exits on the change (systemd restarts it), starts on
    the new backend, rewrites its own lease for it and removes what the old backend left."""
    lab, store = gw["lab"], gw["store"]
    proc = gw["procs"][1]
    try:
        for btype in ("vxlan", "udp"):
            cfg = from_dict({"Network": NETWORK, "Backend": {"Type": btype}})
            store.write_config(dumps(cfg.to_dict()), store.snapshot())
            assert proc.wait(15) == 1
            assert "exiting to restart on it" in lab.log(proc)
            proc = lab.start_forwarder(1, gw["server"].endpoint)
            value = lease_value(store, 1)
            assert value["BackendType"] == btype
            assert value["BackendData"] == backends.lease_data(cfg.backend, host_ip(1))
            assert "10.5.2.0/24" not in routes(lab, "h1")  # h2's lease is host-gw's: no peer under vxlan/udp
            if btype == "vxlan":
                assert ipj(lab, "h1", "link", "show", DEVICE)[0]["address"] == backends.vtep_mac(host_ip(1), VNI)
            else:
                assert lab.run("h1", "ip", "link", "show", DEVICE, check=False).returncode != 0
                assert lab.run("h1", "ip", "link", "show", "flannel0").returncode == 0
    finally:
        gw["procs"][1] = proc
        lab.stop(proc, signal.SIGTERM)
