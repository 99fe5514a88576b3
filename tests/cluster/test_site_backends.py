"""The kernel backends on the test cluster: udp -> vxlan -> dual-stack vxlan -> udp with site.yml (day 2).

site.yml with flannel_backend_type=vxlan stores the new config; every
forwarder sees it, restarts on vxlan (its lease rewritten with its VtepMAC)
and docker follows the new MTU. Measured while it happens: how many pings
from each host to the next host's docker0 gateway went unanswered. Then the
cluster is checked as flanneld's vxlan would leave it (device, neighbour,
FDB, routes), containers reach each other and carry a checked TCP transfer.

On vxlan, the overlay then turns dual-stack with site.yml
(flannel_ipv6_network), pings over IPv4 running through the switch: every
host keeps its IPv4 subnet, its lease is re-keyed with an IPv6 half, the
forwarders program flannel-v6.1 as flanneld does, docker restarts once with
--ipv6 --fixed-cidr-v6, and every pair of containers reaches each other over
IPv6 and IPv4; the next run changes nothing. relet.yml moves one host's
IPv6 half alone onto a named subnet (its IPv4 subnet kept, docker0 renumbered,
the move checked across the overlay); report.yml shows every
host's pair and finds nothing; renew.yml renews that host's pair. retire.yml
takes a dual-stack vxlan host's kernel state and lease pair away (and the
peers' entries for it, both families); site.yml brings it back. Last, one site.yml goes back to
IPv4-only udp (the defaults), pings running through it: the IPv6 side
(devices, leases' halves, docker's options, ip6tables rules) and the vxlan
device go.
"""

import ipaddress
import json

import pytest

from cluster.flannel_helpers import (
    CONTAINER,
    PING_INTERVAL,
    Pings,
    all_up,
    containers,
    etcd_dump,
    parallel,
    ping,
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


def switch(c, btype, *args):
    """site.yml onto `btype` (and `args`) while each host pings the next host's docker0 gateway over the
    overlay (no container: docker restarts), from before the run until it returns -> ({(a, b): pings
    unanswered}, the run)."""
    gateways = {h: subnet_env(c, h)["FLANNEL_SUBNET"].split("/")[0] for h in c.host_names}
    pings = Pings(c, gateways, 0, on_host=True)
    try:
        # back on udp, the defaults: the cluster is converged as a default run leaves it
        run = run_playbook(c, "site.yml", "-e", "flannel_backend_type=%s" % btype, *args,
                           converges=btype == "udp" and not args)
        assert run.rc == 0, run.tail()
        return {pair: sent - received for pair, (sent, received) in pings.results(timeout=60).items()}, run
    finally:
        pings.kill()


def lease_values(c):
    return {json.loads(v)["PublicIP"]: json.loads(v) for k, v in etcd_dump(c).items() if k.startswith(LEASES)}


def ipj(c, host, *args):
    out = c.run(host, ["ip", "-j"] + list(args), check=True).stdout.strip()
    return json.loads(out) if out else []


def test_udp_to_vxlan_and_back_with_site_yml(overlay_up, tmp_path):
    c = overlay_up
    missed, _run = switch(c, "vxlan")
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

    # Dual-stack on vxlan (its second run changed=0), a dual-stack host retired and brought back, then back
    # to IPv4-only and udp in one run: dual_stack() and back_to_ipv4_udp() below.
    subnets6 = dual_stack(c)
    relet_ipv6_half(c, subnets6, tmp_path)
    retire_and_back(c, subnets6)
    back_to_ipv4_udp(c)


def docker0_ipv6(c, host):
    """docker0's global IPv6 addresses (ip -j leaves an empty entry for each address its filter drops)."""
    links = ipj(c, host, "-6", "addr", "show", "dev", "docker0", "scope", "global")
    return sorted(a["local"] + "/%d" % a["prefixlen"] for link in links for a in link.get("addr_info", []) if "local" in a)


def relet_ipv6_half(c, subnets6, tmp_path):
    """relet.yml onto a named IPv6 half alone: the host keeps its IPv4 subnet, its key is re-keyed onto the new
    half, its forwarder and docker restart on it (docker0 renumbered: the old IPv6 address gone), and relet.yml's
    checks reach across the overlay both ways (over IPv4: docker0's IPv6 address is tentative until a container
    attaches; the containers' IPv6 pairs are checked after retire_and_back's site.yml). Then report.yml shows every
    host's pair with no finding, and renew.yml renews the moved host's pair (both halves kept). Updates
    `subnets6`."""
    host = c.hosts[0]
    env = subnet_env(c, host.name)
    net = env["FLANNEL_SUBNET"].rsplit(".", 1)[0] + ".0/24"
    old = net6(subnets6[host.name])
    target = next("fd00:5:0:%x::/64" % n for n in range(0x77, 0x100)
                  if "fd00:5:0:%x::/64" % n not in [net6(g) for g in subnets6.values()])
    moved = run_playbook(c, "relet.yml", "-l", host.name, "-e", "flannel_relet_ipv6_subnet=%s" % target,
                         "-e", "flannel_backend_type=vxlan", *DUAL)
    print("relet.yml onto the IPv6 half %s: %.1f s" % (target, moved.seconds))
    assert moved.rc == 0, moved.tail()
    assert "%s: %s & %s -> %s & %s" % (host.name, net, old, net, target) in moved.stdout, moved.tail()
    keys = [k for k in etcd_dump(c) if k.startswith(LEASES)]
    assert LEASES + net.replace("/", "-") + "&" + target.replace("/", "-") in keys, keys
    assert not [k for k in keys if old.replace("/", "-") in k], keys
    gateway6 = str(ipaddress.IPv6Network(target).network_address + 1) + "/64"
    env = subnet_env(c, host.name)
    assert (env["FLANNEL_SUBNET"], env["FLANNEL_IPV6_SUBNET"]) == (net.replace(".0/24", ".1/24"), gateway6), env
    assert docker0_ipv6(c, host.name) == [gateway6]
    subnets6[host.name] = gateway6

    path = tmp_path / "report.json"
    report = run_playbook(c, "report.yml", "-e", "flannel_report_json=%s" % path, "-e", "flannel_report_matrix=false")
    assert report.rc == 0, report.tail()
    data = json.loads(path.read_text())
    assert data["findings"] == [], data["findings"]
    assert {r["host"]: r["ipv6_subnet"] for r in data["rows"]} == {h: net6(g) for h, g in subnets6.items()}
    assert "IPv6 subnet" in report.stdout and target in report.stdout

    before = lease_values(c)[host.ip]
    renewed = run_playbook(c, "renew.yml", "-l", host.name)
    print("report.yml %.1f s, renew.yml of one host %.1f s" % (report.seconds, renewed.seconds))
    assert renewed.rc == 0, renewed.tail()
    assert "%s: %s & %s " % (host.name, net, target) in renewed.stdout, renewed.tail()
    assert lease_values(c)[host.ip] == before


def retire_and_back(c, subnets6):
    """Retiring a dual-stack vxlan host takes its devices, its lease pair and the peers' entries for it (both
    families) away; site.yml brings it back."""
    host = c.hosts[-1]
    net = subnet_env(c, host.name)["FLANNEL_SUBNET"].rsplit(".", 1)[0] + ".0"
    address6 = str(ipaddress.IPv6Network(net6(subnets6[host.name])).network_address)
    retired = run_playbook(c, "retire.yml", "-e", "flannel_retire_host=%s" % host.name,
                           "-e", "flannel_backend_type=vxlan", *DUAL)
    assert retired.rc == 0, retired.tail()
    for device in ("flannel.1", "flannel-v6.1"):
        assert c.run(host.name, "ip link show %s" % device, check=False).returncode != 0, device
    assert c.run(host.name, "ip route show proto 70; ip -6 route show proto 70", check=True).stdout.strip() == ""
    assert host.ip not in lease_values(c)
    for h in c.hosts[:-1]:
        out = c.run(h.name, "ip route show dev flannel.1; ip neigh show dev flannel.1; "
                            "ip -6 route show dev flannel-v6.1; bridge fdb show dev flannel-v6.1", check=True).stdout
        assert net not in out and address6 not in out and host.ip6 not in out, out
    back = run_playbook(c, "site.yml", "-e", "flannel_backend_type=vxlan", *DUAL)
    assert back.rc == 0, back.tail()
    assert ipj(c, host.name, "link", "show", "flannel.1")[0]["address"] == vtep_mac(host.ip)
    assert lease_values(c)[host.ip]["PublicIPv6"] == host.ip6
    assert pings_all(c) == []
    assert unreachable(c, container_addresses(c)) == []


IPV6_NETWORK = "fd00:5::/48"
DUAL = ("-e", "flannel_ipv6_network=%s" % IPV6_NETWORK)


def net6(gateway):
    """FLANNEL_IPV6_SUBNET (fd00:5:0:22::1/64) -> its subnet, fd00:5:0:22::/64."""
    return str(ipaddress.IPv6Interface(gateway).network)


def handler_hosts(run, handler):
    """The hosts a handler changed, once per time it did (its 'RUNNING HANDLER [... : handler]' sections)."""
    hosts, inside = [], False
    for line in run.stdout.splitlines():
        if line.startswith(("TASK [", "RUNNING HANDLER [", "PLAY ")):
            inside = line.startswith("RUNNING HANDLER [") and (": %s]" % handler) in line
        elif inside and line.startswith("changed: ["):
            hosts.append(line.split("[", 1)[1].split("]", 1)[0])
    return sorted(hosts)


def container_addresses(c):
    """A container on every host -> {host: (IPv4, IPv6)}."""
    ips = containers(c)
    six = parallel(lambda h: c.run(h, ["docker", "inspect", "-f", "{{.NetworkSettings.GlobalIPv6Address}}",
                                       CONTAINER], check=True).stdout.strip(), c.host_names)
    return {h: (ips[h], six[h]) for h in c.host_names}


def unreachable(c, addresses, families=(0, 1)):
    """The (from, to, address) of every pair of containers, each family asked, that do not reach each other."""
    asks = [(a, b, addresses[b][f]) for a in c.host_names for b in c.host_names if a != b for f in families]
    answers = parallel(lambda ask: ping(c, ask[0], ask[2]).returncode, asks)
    return [ask for ask in asks if answers[ask] != 0]


def dual_stack(c):
    """On vxlan: site.yml with flannel_ipv6_network, pings over IPv4 running through the switch; the next run
    changes nothing -> {host: FLANNEL_IPV6_SUBNET}."""
    before = lease_values(c)
    missed, run = switch(c, "vxlan", *DUAL)
    print("pings missed during IPv4 -> dual-stack (each %.1f s apart): %s; site.yml %.1f s"
          % (INTERVAL, missed, run.seconds))
    assert all(n * INTERVAL <= 20 for n in missed.values()), missed
    # docker restarted once on each host, with the new options
    assert handler_hosts(run, "Restart dockerd") == sorted(c.host_names), run.changed_tasks()

    values, keys = lease_values(c), [k for k in etcd_dump(c) if k.startswith(LEASES)]
    subnets6 = {}
    for h in c.hosts:
        value, env = values[h.ip], subnet_env(c, h.name)
        # the IPv4 subnet kept, the key re-keyed with its IPv6 half (flannel's format), PublicIPv6 the underlay's
        net = env["FLANNEL_SUBNET"].rsplit(".", 1)[0] + ".0"
        assert [k for k in keys if k.startswith(LEASES + net + "-24&fd00:5:")], (net, keys)
        assert value["PublicIPv6"] == h.ip6 and value["BackendV6Data"]["VNI"] == 1, value
        assert before[h.ip]["BackendData"] == value["BackendData"]
        assert env["FLANNEL_IPV6_NETWORK"] == IPV6_NETWORK and env["FLANNEL_MTU"] == "1450"
        subnets6[h.name] = env["FLANNEL_IPV6_SUBNET"]  # its first address, as flanneld writes it
        opts = c.run(h.name, "tr '\\0' ' ' < /proc/$(systemctl show -p MainPID --value docker.service)/cmdline",
                     check=True).stdout
        assert " --ipv6 " in opts and " --fixed-cidr-v6=%s " % net6(subnets6[h.name]) in opts, opts
        assert subnets6[h.name] in c.run(h.name, "ip -6 -o addr show dev docker0", check=True).stdout
        link = ipj(c, h.name, "-d", "link", "show", "flannel-v6.1")[0]
        assert link["mtu"] == 1430 and link["linkinfo"]["info_data"]["local6"] == h.ip6, link
        assert link["address"] == value["BackendV6Data"]["VtepMAC"] != value["BackendData"]["VtepMAC"], link
        assert c.run(h.name, "sysctl -n net.ipv6.conf.all.forwarding net.ipv6.conf.eth0.accept_ra",
                     check=True).stdout.split() == ["1", "2"]
        rules = c.run(h.name, "ip6tables -S FORWARD", check=True).stdout
        assert "-s %s -m comment --comment \"overlay.flannel forward\" -j ACCEPT" % IPV6_NETWORK in rules, rules
    for h in c.hosts:
        # flanneld's entries for each peer's IPv6 side: route (onlink via the subnet's address), neighbour, FDB
        routes = {r["dst"]: r for r in ipj(c, h.name, "-6", "route", "show", "dev", "flannel-v6.1")}
        neigh = {n["dst"]: n["lladdr"]
                 for n in ipj(c, h.name, "-6", "neigh", "show", "dev", "flannel-v6.1", "nud", "permanent")}
        fdb = json.loads(c.run(h.name, "bridge -j fdb show dev flannel-v6.1", check=True).stdout or "[]")
        for peer in c.hosts:
            if peer.name == h.name:
                continue
            sub = net6(subnets6[peer.name])
            address = str(ipaddress.IPv6Network(sub).network_address)
            mac = values[peer.ip]["BackendV6Data"]["VtepMAC"]
            assert routes[sub]["gateway"] == address and "onlink" in routes[sub]["flags"], routes
            assert neigh.get(address) == mac, neigh
            assert {"mac": mac, "dst": peer.ip6} in [{"mac": e["mac"], "dst": e.get("dst")} for e in fdb], fdb
    addresses = container_addresses(c)
    assert all(six.startswith("fd00:5:") for _four, six in addresses.values()), addresses
    assert unreachable(c, addresses) == []

    again = run_playbook(c, "site.yml", "-e", "flannel_backend_type=vxlan", *DUAL)
    assert again.rc == 0, again.tail()
    assert all(r["changed"] == 0 for r in again.recap.values()), again.changed_tasks()
    return subnets6


def back_to_ipv4_udp(c):
    """Dual-stack vxlan -> IPv4-only udp (the defaults) in one site.yml, pings over IPv4 running through it:
    the IPv6 side goes (the lease keys, PublicIPv6, flannel-v6.1, docker's --ipv6, the ip6tables rules), and
    the udp side comes."""
    missed, run = switch(c, "udp")
    print("pings missed during dual-stack vxlan -> IPv4 udp (each %.1f s apart): %s; site.yml %.1f s"
          % (INTERVAL, missed, run.seconds))
    assert all(n * INTERVAL <= 20 for n in missed.values()), missed
    assert handler_hosts(run, "Restart dockerd") == sorted(c.host_names), run.changed_tasks()
    values = lease_values(c)
    assert not [k for k in etcd_dump(c) if k.startswith(LEASES) and "&" in k]
    for h in c.hosts:
        assert values[h.ip]["BackendType"] == "udp" and values[h.ip].get("PublicIPv6") is None, values[h.ip]
        env = subnet_env(c, h.name)
        assert "FLANNEL_IPV6_SUBNET" not in env and env["FLANNEL_MTU"] == "1472"
        for device in ("flannel.1", "flannel-v6.1"):
            assert c.run(h.name, "ip link show %s" % device, check=False).returncode != 0, device
        out = c.run(h.name, "tr '\\0' ' ' < /proc/$(systemctl show -p MainPID --value docker.service)/cmdline; "
                            "ip6tables -S; ip6tables -t nat -S", check=True).stdout
        assert "--ipv6" not in out and "overlay.flannel" not in out, out
        # docker0 lost its IPv6 address and route with flannel's --ipv6 (the bridge is renumbered)
        assert docker0_ipv6(c, h.name) == [], docker0_ipv6(c, h.name)
        assert "fd00:5:" not in c.run(h.name, "ip -6 route show", check=True).stdout
    assert pings_all(c) == []
