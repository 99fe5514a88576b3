"""The kernel backends on the test cluster: udp -> vxlan -> udp with site.yml (day 2).

site.yml with flannel_backend_type=vxlan stores the new config; every
forwarder sees it, restarts on vxlan (its lease rewritten with its VtepMAC)
and docker follows the new MTU. Measured while it happens: how many pings
from each host to the next host's docker0 gateway went unanswered. Then the
cluster is checked as flanneld's vxlan would leave it (device, neighbour,
FDB, routes), containers reach each other and carry a checked TCP transfer,
a second run changes nothing, retire.yml takes a vxlan host's kernel state
away (site.yml brings it back), and the cluster goes back to udp the same
way (the vxlan device and its routes go).
"""

import json

import pytest

from cluster.flannel_helpers import (
    PING_INTERVAL,
    Pings,
    all_up,
    containers,
    etcd_dump,
    pings_all,
    run_playbook,
    subnet_env,
    tcp_transfer,
    wait_states,
)

pytestmark = pytest.mark.cluster

INTERVAL = PING_INTERVAL
LEASES = "/coreos.com/network/subnets/"


def vtep_mac(ip, vni=1):
    # backends.vtep_mac, written out here so that the test does not take the value from the code it tests
    return ":".join("%02x" % b for b in [0x0E, vni] + [int(x) for x in ip.split(".")])


def switch(c, btype):
    """site.yml onto `btype` while each host pings the next host's docker0 gateway over the overlay (no
    container: docker restarts), from before the run until it returns -> {(a, b): pings unanswered}."""
    gateways = {h: subnet_env(c, h)["FLANNEL_SUBNET"].split("/")[0] for h in c.host_names}
    pings = Pings(c, gateways, 0, on_host=True)
    try:
        # back on udp, the defaults: the cluster is converged as a default run leaves it
        run = run_playbook(c, "site.yml", "-e", "flannel_backend_type=%s" % btype, converges=btype == "udp")
        assert run.rc == 0, run.tail()
        return {pair: sent - received for pair, (sent, received) in pings.results(timeout=60).items()}
    finally:
        pings.kill()


def lease_values(c):
    return {json.loads(v)["PublicIP"]: json.loads(v) for k, v in etcd_dump(c).items() if k.startswith(LEASES)}


def ipj(c, host, *args):
    out = c.run(host, ["ip", "-j"] + list(args), check=True).stdout.strip()
    return json.loads(out) if out else []


def test_udp_to_vxlan_and_back_with_site_yml(converged):
    c = converged
    missed = switch(c, "vxlan")
    print("pings missed during udp -> vxlan (each %.1f s apart): %s" % (INTERVAL, missed))
    # All forwarders switch together, a few seconds after the config changed (systemd's RestartSec=5).
    assert all(n * INTERVAL <= 20 for n in missed.values()), missed

    values = lease_values(c)
    for h in c.hosts:
        assert values[h.ip]["BackendType"] == "vxlan"
        assert values[h.ip]["BackendData"] == {"VNI": 1, "VtepMAC": vtep_mac(h.ip)}
        link = ipj(c, h.name, "-d", "link", "show", "flannel.1")[0]
        assert link["address"] == vtep_mac(h.ip) and link["mtu"] == 1450
        assert link["linkinfo"]["info_data"]["local"] == h.ip
        assert subnet_env(c, h.name)["FLANNEL_MTU"] == "1450"
        assert c.run(h.name, "ip link show flannel0", check=False).returncode != 0
        mtu = c.run(h.name, ["docker", "network", "inspect", "-f",
                             '{{index .Options "com.docker.network.driver.mtu"}}', "bridge"], check=True).stdout.strip()
        assert mtu == "1450"
        neigh = {n["dst"]: n["lladdr"] for n in ipj(c, h.name, "neigh", "show", "dev", "flannel.1", "nud", "permanent")}
        fdb = json.loads(c.run(h.name, "bridge -j fdb show dev flannel.1", check=True).stdout or "[]")
        routes = {r["dst"]: r for r in ipj(c, h.name, "route", "show", "dev", "flannel.1")}
        for peer in c.hosts:
            if peer.name == h.name:
                continue
            net = subnet_env(c, peer.name)["FLANNEL_SUBNET"].rsplit(".", 1)[0] + ".0"
            assert neigh.get(net) == vtep_mac(peer.ip), (h.name, peer.name, net, neigh, values)
            assert {"mac": vtep_mac(peer.ip), "dst": peer.ip} in [{"mac": e["mac"], "dst": e.get("dst")} for e in fdb]
            assert routes[net + "/24"]["gateway"] == net and "onlink" in routes[net + "/24"]["flags"]
    assert pings_all(c) == []
    # the forwarders' peer probes (through the VXLAN device, at its full MTU) see every peer up
    wait_states(c, all_up, "every peer up on vxlan")
    ips = containers(c)
    a, b = c.host_names[0], c.host_names[1]
    sent, received, size = tcp_transfer(c, a, b, ips[b], 5400)
    assert sent == received and size == 3000000

    again = run_playbook(c, "site.yml", "-e", "flannel_backend_type=vxlan")
    assert again.rc == 0, again.tail()
    assert all(r["changed"] == 0 for r in again.recap.values()), again.changed_tasks()

    # Retiring a vxlan host takes its device and the peers' entries for it away; site.yml brings it back.
    host = c.hosts[-1]
    net = subnet_env(c, host.name)["FLANNEL_SUBNET"].rsplit(".", 1)[0] + ".0"
    retired = run_playbook(c, "retire.yml", "-e", "flannel_retire_host=%s" % host.name,
                           "-e", "flannel_backend_type=vxlan")
    assert retired.rc == 0, retired.tail()
    assert c.run(host.name, "ip link show flannel.1", check=False).returncode != 0
    assert c.run(host.name, "ip route show proto 70", check=True).stdout.strip() == ""
    for h in c.hosts[:-1]:
        out = c.run(h.name, "ip route show dev flannel.1; ip neigh show dev flannel.1", check=True).stdout
        assert net not in out, out
    back = run_playbook(c, "site.yml", "-e", "flannel_backend_type=vxlan")
    assert back.rc == 0, back.tail()
    assert ipj(c, host.name, "link", "show", "flannel.1")[0]["address"] == vtep_mac(host.ip)
    assert pings_all(c) == []

    missed = switch(c, "udp")
    print("pings missed during vxlan -> udp: %s" % missed)
    assert all(n * INTERVAL <= 20 for n in missed.values()), missed
    for h in c.hosts:
        assert c.run(h.name, "ip link show flannel.1", check=False).returncode != 0
        assert subnet_env(c, h.name)["FLANNEL_MTU"] == "1472"
        assert lease_values(c)[h.ip]["BackendType"] == "udp"
    assert pings_all(c) == []
