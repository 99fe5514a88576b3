"""The vxlan backend of flannel-forwarder: namespace hosts, a real etcd, the real kernel (see kernel_lab.py).

The lab is dual-stack: each test of the IPv4 side also checks the IPv6 one (flannel-v6.1, the IPv6 entries,
pings and transfers between the containers' IPv6 addresses)."""

import ipaddress
import os

import pytest

if os.geteuid() != 0:
    pytest.fail("needs root: network namespaces and VXLAN devices", pytrace=False)

from ansible_collections.overlay.flannel.plugins.module_utils import backends
from ansible_collections.overlay.flannel.plugins.module_utils.etcd_client import delete, put
from ansible_collections.overlay.flannel.plugins.module_utils.subnets import lease_key

from kernel_lab import (DEVICE, DEVICE6, PREFIX, PROTO, VNI, container_ip, fdb, host_ip, ipj, lease, lease_key_of,
                        lease_value, make_env, neighbours, routes, routes6, subnet, transfer)
from lab import NETWORK6, container_ip6, host_ip6, subnet6, wait_for


@pytest.fixture(scope="module")
def vx(request):
    return make_env(request, "vxlan", "v")


# -- vxlan ----------------------------------------------------------------------


def test_vxlan_device_lease_and_files(vx):
    lab, store = vx["lab"], vx["store"]
    mac1 = backends.vtep_mac(host_ip(1), VNI)
    link = ipj(lab, "h1", "-d", "link", "show", DEVICE)[0]
    info = link["linkinfo"]["info_data"]
    assert link["address"] == mac1 and link["mtu"] == 1450 and "UP" in link["flags"]
    assert info["id"] == VNI and info["local"] == host_ip(1) and info["link"] == "u0"
    assert info["port"] == 8472 and info["learning"] is False
    addrs = [(a["local"], a["prefixlen"]) for a in ipj(lab, "h1", "addr", "show", "dev", DEVICE)[0]["addr_info"]
             if a["family"] == "inet"]
    assert addrs == [("10.5.1.0", 32)]
    assert lease_value(store, 1)["BackendType"] == "vxlan"
    assert lease_value(store, 1)["BackendData"] == {"VNI": VNI, "VtepMAC": mac1}
    subnet_env, docker = lab.files(1)
    with open(subnet_env) as fh:
        assert "FLANNEL_MTU=1450\n" in fh.read()
    with open(docker) as fh:
        assert "--mtu=1450" in fh.read()
    # flanneld's shape for the peer h2: neighbour, FDB entry, onlink route via the subnet's network address.
    mac2 = backends.vtep_mac(host_ip(2), VNI)
    assert neighbours(lab, "h1") == {"10.5.2.0": mac2}
    assert fdb(lab, "h1") == {mac2: host_ip(2)}
    route = routes(lab, "h1")["10.5.2.0/24"]
    assert route["gateway"] == "10.5.2.0" and route["dev"] == DEVICE and "onlink" in route["flags"]
    assert lab.http(1, "/readyz")[0] == 200
    assert lab.metric(1, 'backend_info{type="vxlan"}') == 1
    assert lab.metric(1, 'kernel_entries{kind="route"}') == 2  # h2's IPv4 and IPv6 subnets
    assert lab.metric(1, "packets_total") is None  # the kernel moves the packets: no udp counters


def test_vxlan_ipv6_device_lease_and_files(vx):
    """flanneld's IPv6 side: flannel-v6.1 over the PublicIPv6 with its own MAC, the IPv6 subnet's network
    address /128, the kernel's MTU over IPv6 (1500 - 70); the lease pair in one key with PublicIPv6 and
    BackendV6Data; subnet.env's FLANNEL_IPV6_* and docker's --ipv6 --fixed-cidr-v6; h2's IPv6 entries."""
    lab, store = vx["lab"], vx["store"]
    mac6 = backends.vtep_mac6(host_ip(1), VNI)
    link = ipj(lab, "h1", "-d", "link", "show", DEVICE6)[0]
    info = link["linkinfo"]["info_data"]
    assert link["address"] == mac6 and link["mtu"] == 1430 and "UP" in link["flags"]
    assert info["id"] == VNI and info.get("local6", info.get("local")) == host_ip6(1)  # (iproute2's names vary)
    assert info["link"] == "u0" and info["port"] == 8472
    addrs = [(a["local"], a["prefixlen"]) for a in ipj(lab, "h1", "addr", "show", "dev", DEVICE6)[0]["addr_info"]
             if a["family"] == "inet6" and a["scope"] == "global"]
    assert addrs == [("fd00:5:0:1::", 128)]
    assert lease_key_of(store, 1) == PREFIX + "/subnets/10.5.1.0-24&fd00:5:0:1::-64"
    value = lease_value(store, 1)
    assert value["PublicIPv6"] == host_ip6(1) and value["BackendV6Data"] == {"VNI": VNI, "VtepMAC": mac6}
    subnet_env, docker = lab.files(1)
    with open(subnet_env) as fh:
        assert fh.read() == ("FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_SUBNET=10.5.1.1/24\nFLANNEL_IPV6_NETWORK=%s\n"
                             "FLANNEL_IPV6_SUBNET=fd00:5:0:1::1/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n"
                             % NETWORK6)
    with open(docker) as fh:
        assert "--bip=10.5.1.1/24 --ipv6 --fixed-cidr-v6=fd00:5:0:1::/64 " in fh.read()
    with open(lab.state_file(1)) as fh:
        assert fh.read() == "10.5.1.0/24\nfd00:5:0:1::/64\n"
    mac2 = backends.vtep_mac6(host_ip(2), VNI)
    assert neighbours(lab, "h1", DEVICE6) == {"fd00:5:0:2::": mac2}
    assert fdb(lab, "h1", DEVICE6) == {mac2: host_ip6(2)}
    route = routes6(lab, "h1")[subnet6(2)]
    assert route["gateway"] == "fd00:5:0:2::" and route["dev"] == DEVICE6 and "onlink" in route["flags"]


def test_vxlan_ping_and_checked_tcp_transfer(vx):
    lab = vx["lab"]
    assert lab.probe("c1", "ping", container_ip(2), "5", "0.05")["received"] == 5
    sent, got = transfer(lab, "c1", 2, 5301)
    assert got["bytes"] == 8 << 20 and got["sha256"] == sent["sha256"]


def test_vxlan_ipv6_ping_and_checked_tcp_transfer_both_ways(vx):
    lab = vx["lab"]
    lab.first_echo("c1", container_ip6(2))
    assert lab.probe("c1", "ping", container_ip6(2), "5", "0.05")["received"] == 5
    assert lab.probe("c2", "ping", container_ip6(1), "5", "0.05")["received"] == 5
    for src, dst, port in (("c1", 2, 5311), ("c2", 1, 5312)):
        sent, got = transfer(lab, src, dst, port, ip=container_ip6)
        assert got["bytes"] == 8 << 20 and got["sha256"] == sent["sha256"]


def test_vxlan_peer_added_and_removed_while_running(vx):
    lab, store = vx["lab"], vx["store"]
    lease(store, vx["backend"], 3)  # the lease alone: h1 programs h3 before h3's own daemon runs
    mac3, mac36 = backends.vtep_mac(host_ip(3), VNI), backends.vtep_mac6(host_ip(3), VNI)
    wait_for(lambda: "10.5.3.0/24" in routes(lab, "h1") and neighbours(lab, "h1").get("10.5.3.0") == mac3
             and fdb(lab, "h1").get(mac3) == host_ip(3) and subnet6(3) in routes6(lab, "h1")
             and neighbours(lab, "h1", DEVICE6).get("fd00:5:0:3::") == mac36
             and fdb(lab, "h1", DEVICE6).get(mac36) == host_ip6(3), timeout=20, what="h1 to program h3")
    p3 = lab.start_forwarder(3, vx["server"].endpoint)
    # h3 is ready, h2 learns of it by its watch; and a new pair's first IPv6 echo may be lost (see first_echo).
    for src, dst in (("c1", container_ip(3)), ("c3", container_ip(2)), ("c1", container_ip6(3)),
                     ("c3", container_ip6(2))):
        lab.first_echo(src, dst)
    assert lab.probe("c1", "ping", container_ip(3), "3", "0.05")["received"] == 3
    assert lab.probe("c3", "ping", container_ip(2), "3", "0.05")["received"] == 3
    assert lab.probe("c1", "ping", container_ip6(3), "3", "0.05")["received"] == 3
    assert lab.probe("c3", "ping", container_ip6(2), "3", "0.05")["received"] == 3
    lab.stop(p3)
    store.release(host_ip(3))
    wait_for(lambda: "10.5.3.0/24" not in routes(lab, "h1") and "10.5.3.0" not in neighbours(lab, "h1")
             and mac3 not in fdb(lab, "h1") and subnet6(3) not in routes6(lab, "h1")
             and not neighbours(lab, "h1", DEVICE6).get("fd00:5:0:3::") and mac36 not in fdb(lab, "h1", DEVICE6),
             timeout=20, what="h1 to forget h3")
    assert set(routes(lab, "h1")) == {"10.5.2.0/24"} and set(routes6(lab, "h1")) == {subnet6(2)}


def test_vxlan_entries_removed_by_hand_are_restored(vx):
    lab = vx["lab"]
    mac2 = backends.vtep_mac(host_ip(2), VNI)
    before = lab.metric(1, "kernel_repairs_total")
    events = lab.metric(1, "kernel_events_total")
    lab.run("h1", "ip", "route", "del", "10.5.2.0/24", "dev", DEVICE)
    lab.run("h1", "bridge", "fdb", "del", mac2, "dev", DEVICE, "dst", host_ip(2))
    lab.run("h1", "ip", "neigh", "del", "10.5.2.0", "dev", DEVICE)
    wait_for(lambda: "10.5.2.0/24" in routes(lab, "h1") and neighbours(lab, "h1").get("10.5.2.0") == mac2
             and fdb(lab, "h1").get(mac2) == host_ip(2), timeout=8, what="the entries to come back")
    # Put back by the kernel's announcements, before the sync's 10 s resync could have. The counters move
    # once a sync's last entry is set, and an announcement drained by the sync after it is counted then.
    wait_for(lambda: lab.metric(1, "kernel_repairs_total") >= before + 3
             and lab.metric(1, "kernel_events_total") >= events + 3, timeout=20, what="the repairs and events counted")
    # A route of ours that no lease asks for goes too; a route of somebody else's stays.
    lab.run("h1", "ip", "route", "add", "10.5.99.0/24", "via", "10.5.99.0", "dev", DEVICE, "onlink", "proto", PROTO)
    lab.run("h1", "ip", "route", "add", "10.5.98.0/24", "via", "10.5.98.0", "dev", DEVICE, "onlink")
    wait_for(lambda: "10.5.99.0/24" not in routes(lab, "h1"), timeout=20, what="the stray route to go")
    assert "10.5.98.0/24" in lab.run("h1", "ip", "route", "show").stdout
    lab.run("h1", "ip", "route", "del", "10.5.98.0/24")
    assert lab.probe("c1", "ping", container_ip(2), "3", "0.05")["received"] == 3


def test_vxlan_restart_keeps_the_mac_and_sigterm_keeps_the_kernel_state(vx):
    lab, store = vx["lab"], vx["store"]
    mac1 = backends.vtep_mac(host_ip(1), VNI)
    before = lease_value(store, 1)
    assert lab.stop(vx["procs"][1]) == 0
    # Documented choice: SIGTERM leaves the device and the entries, and the kernel keeps forwarding.
    assert ipj(lab, "h1", "link", "show", DEVICE)[0]["address"] == mac1
    assert "10.5.2.0/24" in routes(lab, "h1")
    assert lab.probe("c2", "ping", container_ip(1), "3", "0.05")["received"] == 3
    vx["procs"][1] = lab.start_forwarder(1, vx["server"].endpoint)
    assert ipj(lab, "h1", "link", "show", DEVICE)[0]["address"] == mac1
    # The new run takes the entries over as they are: none removed and set again (a gap in the traffic).
    restarted = lab.log(vx["procs"][1]).rsplit(" starting version=", 1)[1]  # this run's lines
    assert "removed" not in restarted and "set route" not in restarted and "set neigh" not in restarted, restarted
    assert lease_value(store, 1) == before  # no lease rewrite: peers keep their entries
    assert neighbours(lab, "h2")["10.5.1.0"] == mac1
    assert lab.probe("c2", "ping", container_ip(1), "3", "0.05")["received"] == 3


def test_vxlan_daemon_rekeys_an_ipv4_only_lease_onto_the_pair_and_needs_an_ipv6_address(vx):
    """h3 holds an IPv4-only lease (written before the network turned dual-stack): its daemon takes it and
    re-keys it onto the pair in one transaction (the IPv4 subnet kept, the IPv6 half from its state file);
    without an IPv6 address on the underlay and no --public-ipv6 it refuses to start, naming the flag."""
    lab, store = vx["lab"], vx["store"]
    key4 = lease_key(PREFIX, ipaddress.IPv4Network(subnet(3)))
    value = '{"PublicIP":"%s","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"%s"}}' % (
        host_ip(3), backends.vtep_mac(host_ip(3), VNI))
    store.client.txn([], [put(key4, value, store.client.grant(600))])
    with open(lab.state_file(3), "w") as fh:  # after a reboot: /run's subnet.env gone, the state file kept
        fh.write("10.5.3.0/24\nfd00:5:0:33::/64\n")
    for path in lab.files(3):
        if os.path.exists(path):
            os.remove(path)
    lab.run("h3", "ip", "addr", "del", host_ip6(3) + "/64", "dev", "u0")
    try:
        proc = lab.start_forwarder(3, vx["server"].endpoint, ready=False)
        assert proc.wait(15) == 1
        assert "give --public-ipv6 / FLANNELD_PUBLIC_IPV6" in lab.log(proc)
        assert lease_key_of(store, 3) == key4  # nothing written
    finally:
        lab.run("h3", "ip", "addr", "add", host_ip6(3) + "/64", "dev", "u0", "nodad")
    proc = lab.start_forwarder(3, vx["server"].endpoint)
    try:
        assert lease_key_of(store, 3) == PREFIX + "/subnets/10.5.3.0-24&fd00:5:0:33::-64"
        assert store.client.get(key4) is None
        assert lease_value(store, 3)["PublicIPv6"] == host_ip6(3)
        wait_for(lambda: "fd00:5:0:33::/64" in routes6(lab, "h1"), timeout=20, what="h1 to route h3's IPv6 half")
        assert lab.probe("c1", "ping", container_ip(3), "2", "0.05")["received"] == 2
    finally:
        lab.stop(proc)
        store.release(host_ip(3))
        for dev in (DEVICE, DEVICE6):
            lab.run("h3", "ip", "link", "del", dev, check=False)


def test_vxlan_interoperates_with_a_flanneld_shaped_host(vx):
    """h3 is programmed by hand exactly as flanneld programs a vxlan host (its own random MACs, its lease in
    flanneld's JSON): first as an IPv4-only host (a lease with no IPv6 half: reached over IPv4 only, beside
    the dual-stack h2), then as a dual-stack one (flannel-v6.1 and its entries, the lease re-keyed onto the
    pair with PublicIPv6 and BackendV6Data): our h1 reaches it and it reaches h1, both ways, in both
    families. A half-written IPv6 part (no BackendV6Data) is reported with the key and used over IPv4 only."""
    lab, store = vx["lab"], vx["store"]
    mac3, mac36 = "5a:1b:2c:3d:4e:5f", "5a:1b:2c:3d:4e:60"
    mac1, mac16 = backends.vtep_mac(host_ip(1), VNI), backends.vtep_mac6(host_ip(1), VNI)

    def h3(*a):
        return lab.run("h3", *a)

    for dev in (DEVICE, DEVICE6):  # what our daemon left there in an earlier test
        lab.run("h3", "ip", "link", "del", dev, check=False)
    h3("ip", "link", "add", DEVICE, "address", mac3, "mtu", "1450", "type", "vxlan", "id", "1", "local", host_ip(3),
       "dev", "u0", "nolearning", "dstport", "0")
    h3("ip", "addr", "add", "10.5.3.0/32", "dev", DEVICE)
    h3("ip", "link", "set", DEVICE, "up")
    h3("ip", "neigh", "replace", "10.5.1.0", "lladdr", mac1, "dev", DEVICE, "nud", "permanent")
    h3("bridge", "fdb", "append", mac1, "dev", DEVICE, "dst", host_ip(1), "self", "permanent")
    h3("ip", "route", "replace", "10.5.1.0/24", "via", "10.5.1.0", "dev", DEVICE, "onlink")
    key4 = lease_key(PREFIX, ipaddress.IPv4Network(subnet(3)))
    key6 = lease_key(PREFIX, ipaddress.IPv4Network(subnet(3)), ipaddress.IPv6Network(subnet6(3)))
    value = '{"PublicIP":"%s","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"%s"}}' % (
        host_ip(3), mac3)
    store.client.txn([], [put(key4, value, store.client.grant(600))])
    try:
        wait_for(lambda: neighbours(lab, "h1").get("10.5.3.0") == mac3 and fdb(lab, "h1").get(mac3) == host_ip(3)
                 and "10.5.3.0/24" in routes(lab, "h1"), timeout=20, what="h1 to program h3")
        assert lab.probe("c1", "ping", container_ip(3), "3", "0.05")["received"] == 3
        assert lab.probe("c3", "ping", container_ip(1), "3", "0.05")["received"] == 3
        assert subnet6(3) not in routes6(lab, "h1") and len(fdb(lab, "h1", DEVICE6)) == 1  # h2's only
        assert lab.probe("c1", "ping", container_ip6(2), "2", "0.05")["received"] == 2  # the dual-stack h2 still

        # A half-written IPv6 part: the pair's key, PublicIPv6, no BackendV6Data.
        half = ('{"PublicIP":"%s","PublicIPv6":"%s","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"%s"}}'
                % (host_ip(3), host_ip6(3), mac3))
        store.client.txn([], [delete(key4), put(key6, half, store.client.grant(600))])
        wait_for(lambda: "lease %s: its IPv6 part is not used (BackendV6Data" % key6 in lab.log(vx["procs"][1]),
                 timeout=20, what="the half-written IPv6 part reported")
        assert neighbours(lab, "h1").get("10.5.3.0") == mac3 and subnet6(3) not in routes6(lab, "h1")

        # flanneld's dual-stack host: flannel-v6.1 over its PublicIPv6, the IPv6 subnet's address /128.
        h3("ip", "link", "add", DEVICE6, "address", mac36, "type", "vxlan", "id", "1", "local", host_ip6(3),
           "dev", "u0", "nolearning", "dstport", "0")
        h3("ip", "addr", "add", "fd00:5:0:3::/128", "dev", DEVICE6)
        h3("ip", "link", "set", DEVICE6, "up")
        h3("ip", "neigh", "replace", "fd00:5:0:1::", "lladdr", mac16, "dev", DEVICE6, "nud", "permanent")
        h3("bridge", "fdb", "append", mac16, "dev", DEVICE6, "dst", host_ip6(1), "self", "permanent")
        h3("ip", "-6", "route", "replace", subnet6(1), "via", "fd00:5:0:1::", "dev", DEVICE6, "onlink")
        full = ('{"PublicIP":"%s","PublicIPv6":"%s","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"%s"},'
                '"BackendV6Data":{"VNI":1,"VtepMAC":"%s"}}' % (host_ip(3), host_ip6(3), mac3, mac36))
        store.client.txn([], [put(key6, full, store.client.grant(600))])
        wait_for(lambda: neighbours(lab, "h1", DEVICE6).get("fd00:5:0:3::") == mac36
                 and fdb(lab, "h1", DEVICE6).get(mac36) == host_ip6(3) and subnet6(3) in routes6(lab, "h1"),
                 timeout=20, what="h1 to program h3's IPv6 side")
        assert link_mtu(lab, "h3", DEVICE6) == 1430  # the kernel's own MTU over IPv6: ours is the same
        lab.first_echo("c1", container_ip6(3))
        lab.first_echo("c3", container_ip6(1))
        assert lab.probe("c1", "ping", container_ip6(3), "3", "0.05")["received"] == 3
        assert lab.probe("c3", "ping", container_ip6(1), "3", "0.05")["received"] == 3
        sent, got = transfer(lab, "c3", 1, 5313, ip=container_ip6)
        assert got["bytes"] == 8 << 20 and got["sha256"] == sent["sha256"]
        assert lab.probe("c1", "ping", container_ip(3), "2", "0.05")["received"] == 2
    finally:
        store.release(host_ip(3))
        for dev in (DEVICE, DEVICE6):
            lab.run("h3", "ip", "link", "del", dev, check=False)


def link_mtu(lab, host, dev):
    return ipj(lab, host, "link", "show", dev)[0]["mtu"]


def test_remove_kernel_state_takes_it_all_away(vx):
    lab = vx["lab"]
    assert lab.stop(vx["procs"][2]) == 0
    out = lab.forwarder_command(2, "--remove-kernel-state").stdout
    assert "device %s" % DEVICE in out and "device %s" % DEVICE6 in out
    for dev in (DEVICE, DEVICE6):
        assert not lab.run("h2", "ip", "link", "show", dev, check=False).returncode == 0
    assert routes(lab, "h2") == {} and routes6(lab, "h2") == {}
    # Started again, it builds everything anew, with the same MACs.
    vx["procs"][2] = lab.start_forwarder(2, vx["server"].endpoint)
    assert ipj(lab, "h2", "link", "show", DEVICE)[0]["address"] == backends.vtep_mac(host_ip(2), VNI)
    assert ipj(lab, "h2", "link", "show", DEVICE6)[0]["address"] == backends.vtep_mac6(host_ip(2), VNI)
    assert lab.probe("c1", "ping", container_ip(2), "3", "0.05")["received"] == 3
    lab.first_echo("c1", container_ip6(2))
    assert lab.probe("c1", "ping", container_ip6(2), "3", "0.05")["received"] == 3
