"""playbooks/site.yml end to end on the systemd-nspawn test cluster (root, a few minutes).

The tests run in file order on one cluster (the session `cluster` fixture):
bad input first (on a fresh cluster nothing must be applied, on a converged
one nothing must change), then the first run, the overlay between every pair
of hosts, idempotence, a killed forwarder, a rebooted host.
Timings of the runs are printed (pytest -s) and written to
<state dir>/site-timings.json.
"""

import json
import os

import pytest

from cluster.flannel_helpers import (
    SANDBOXED_FILES,
    MAX_EXPOSURE,
    NETWORK,
    ansible_tool,
    capability_mask,
    etcd_dump,
    forwarder_sandbox,
    host_snapshot,
    icmp_error_from,
    ping,
    run_playbook,
    service_state,
    start_container,
    subnet_env,
    subnet_info,
    tcp_transfer,
    wait_for,
)

pytestmark = pytest.mark.cluster

TIMINGS = {}


@pytest.fixture(scope="module")
def site(cluster):
    if not ansible_tool("ansible-playbook"):
        pytest.fail("ansible-playbook not installed (make venv)", pytrace=False)
    yield cluster
    with open(os.path.join(cluster.state_dir, "site-timings.json"), "w") as fh:
        json.dump(TIMINGS, fh, indent=1)
    print("\nsite.yml timings: %s" % json.dumps(TIMINGS))


def snapshot(cluster):
    return dict(etcd=etcd_dump(cluster), hosts={h.name: host_snapshot(cluster, h.name) for h in cluster.hosts})


# --- bad input: fails before anything is applied ---------------------------------

# (a dual-stack run: docker's own IPv6 settings clash with flannel's --ipv6 --fixed-cidr-v6 then)
DUAL_STACK = ("-e", "flannel_backend_type=vxlan", "-e", "flannel_ipv6_network=fd00:5::/48")


def test_daemon_json_with_bip_fails_preflight_and_changes_nothing(site):
    host = site.hosts[1].name
    original = site.run(host, "cat /etc/docker/daemon.json", check=True).stdout
    config = json.loads(original)
    config.update({"bip": "172.30.0.1/16", "ipv6": True, "fixed-cidr-v6": "2001:db8:1::/64"})
    before = snapshot(site)
    site.run(host, "cat > /etc/docker/daemon.json", input=json.dumps(config), check=True)
    try:
        run = run_playbook(site, "site.yml", *DUAL_STACK)
    finally:
        site.run(host, "cat > /etc/docker/daemon.json", input=original, check=True)
    assert run.rc != 0, run.tail()
    assert "/etc/docker/daemon.json sets bip, ipv6, fixed-cidr-v6" in run.output, run.tail()
    assert "Remove bip, ipv6, fixed-cidr-v6 from /etc/docker/daemon.json" in run.output
    assert snapshot(site) == before


def test_dual_stack_without_an_ipv6_address_fails_preflight_naming_the_host(site):
    """The public IPv6 address is the underlay interface's global one: a host without one is named, before
    anything changes anywhere."""
    host = site.hosts[0]
    before = snapshot(site)
    site.run(host.name, "ip -6 addr del %s/64 dev eth0" % host.ip6, check=True)
    try:
        run = run_playbook(site, "site.yml", *DUAL_STACK)
    finally:
        site.run(host.name, "ip -6 addr add %s/64 dev eth0 nodad" % host.ip6, check=True)
    assert run.rc != 0, run.tail()
    assert ("%s: the network is dual-stack (flannel_ipv6_network fd00:5::/48) but the host has no usable underlay "
            "IPv6 address: set flannel_public_ipv6, or give eth0 a global IPv6 address (got none)" % host.name
            ) in run.output, run.tail()
    assert not [h for h in site.hosts[1:] if "%s: the network is dual-stack" % h.name in run.output]
    assert snapshot(site) == before


def test_unreachable_etcd_fails_naming_the_endpoint_and_changes_nothing(site):
    dead = "http://%s:2999" % site.controller_ip  # on the test underlay, nothing listens there
    before = snapshot(site)
    run = run_playbook(site, "site.yml", "-e", json.dumps({"flannel_etcd_endpoints": [dead]}))
    assert run.rc != 0, run.tail()
    assert "%s:2999" % site.controller_ip in run.output, run.tail()
    assert snapshot(site) == before


def test_check_mode_passes_and_changes_nothing(site):
    """On a fresh cluster: a --check run before the first real one (no config, no leases yet)."""
    before = snapshot(site)
    run = run_playbook(site, "site.yml", "--check", "--diff")
    assert run.rc == 0, run.tail()
    assert snapshot(site) == before


# --- the first run -----------------------------------------------------------------

def test_site_converges(site):
    run = run_playbook(site, "site.yml")
    TIMINGS["first_run_s"] = round(run.seconds, 1)
    assert run.rc == 0, run.tail()
    assert set(run.recap) == set(site.host_names)
    assert all(r["failed"] == 0 and r["unreachable"] == 0 for r in run.recap.values()), run.recap


def test_every_host_has_a_distinct_subnet_on_docker0(site):
    subnets = {}
    for host in site.hosts:
        env = subnet_env(site, host.name)
        assert env["FLANNEL_NETWORK"] == NETWORK
        assert env["FLANNEL_IPMASQ"] == "false"
        assert env["FLANNEL_MTU"] == "1472"  # eth0 1500 - 28
        subnets[host.name] = env["FLANNEL_SUBNET"]
        addr = site.run(host.name, "ip -4 -o addr show dev docker0", check=True).stdout
        assert "inet %s " % env["FLANNEL_SUBNET"] in addr
        mtu = site.run(host.name, ["docker", "network", "inspect", "-f",
                                   '{{index .Options "com.docker.network.driver.mtu"}}', "bridge"], check=True)
        assert mtu.stdout.strip() == "1472"
        opts = site.run(host.name, "cat /run/flannel/docker", check=True).stdout
        assert 'DOCKER_NETWORK_OPTIONS=" --bip=%s --ip-masq=true --mtu=1472 "' % env["FLANNEL_SUBNET"] in opts
        assert site.run(host.name, "systemctl is-active flannel-forwarder docker", check=True).stdout.split() == \
            ["active", "active"]
    assert len(set(subnets.values())) == len(site.hosts), subnets


def test_subnet_info_lists_exactly_the_hosts(site, tmp_path):
    info = subnet_info(site, tmp_path)
    assert info["config"]["Network"] == NETWORK
    assert sorted(lease["public_ip"] for lease in info["leases"]) == sorted(h.ip for h in site.hosts)
    assert not info.get("invalid")
    by_ip = {lease["public_ip"]: lease["subnet"] for lease in info["leases"]}
    for host in site.hosts:
        gateway = subnet_env(site, host.name)["FLANNEL_SUBNET"]
        assert by_ip[host.ip].split("/")[0].rsplit(".", 1)[0] == gateway.split("/")[0].rsplit(".", 1)[0]


def containers(cluster):
    return {h.name: start_container(cluster, h.name) for h in cluster.hosts}


def test_containers_on_every_pair_of_hosts_ping_each_other(site):
    ips = containers(site)
    failures = []
    for a in site.hosts:
        for b in site.hosts:
            if a.name != b.name:
                res = ping(site, a.name, ips[b.name])
                if res.returncode != 0:
                    failures.append("%s -> %s (%s): %s" % (a.name, b.name, ips[b.name], res.stdout[-300:]))
    assert not failures, "\n".join(failures)


def test_tcp_transfer_between_every_pair_keeps_the_content(site):
    ips = containers(site)
    port = 5100
    for a in site.hosts:
        for b in site.hosts:
            if a.name == b.name:
                continue
            port += 1
            sent, received, size = tcp_transfer(site, a.name, b.name, ips[b.name], port)
            assert (received, size) == (sent, 3000000), "%s -> %s" % (a.name, b.name)


# --- the sandbox ---------------------------------------------------------------------

def test_forwarder_runs_as_its_own_user_with_only_its_capabilities(site):
    """Debian 12 hosts with the role's defaults (udp, health server off, peer probes on): the daemon runs as
    flannel-forwarder (no login, no home) holding CAP_NET_ADMIN alone (roles/forwarder/README.md lists the
    capabilities per setting): the kernel's empty net.ipv4.ping_group_range got the role's drop-in admitting its
    group, so its peer probes opened an unprivileged ICMP socket. systemd-analyze security rates the unit 2.5 or
    less. The client key is readable by its group only, the password file by root only; what it writes is its own."""
    for host in site.host_names:
        box = forwarder_sandbox(site, host)
        uid, gid, home, shell = box["account"].split(":")
        assert (home, shell) == ("/nonexistent", "/usr/sbin/nologin"), box
        assert box["user"] == "flannel-forwarder" and box["Uid"].split() == [uid] * 4 and box["Gid"].split() == [gid] * 4
        caps = capability_mask(["CAP_NET_ADMIN"])
        assert [box[k] for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")] == [caps] * 5, box
        assert box["exposure"] is not None and box["exposure"] <= MAX_EXPOSURE, box
        assert box["ping_group_range"] == "%s %s" % (gid, gid) and box["probe_socket"] == "icmp_dgram", box
        assert box["stat"] == SANDBOXED_FILES, box


def test_udp_forwarder_answers_net_unreachable_from_its_tun(site):
    """A datagram to an overlay address no host leases: the sandboxed forwarder wrote net.ipv4.conf.flannel0.accept_local,
    so the host takes the ICMP net unreachable the forwarder writes into the TUN from the TUN's own address."""
    host = site.hosts[0].name
    tun = site.run(host, "ip -4 -o addr show dev flannel0", check=True).stdout.split()[3].split("/")[0]
    leased = {".".join(subnet_env(site, h)["FLANNEL_SUBNET"].split(".")[:3]) for h in site.host_names}
    free = next("10.5.%d.9" % n for n in range(254, 0, -1) if "10.5.%d" % n not in leased)
    assert icmp_error_from(site, host, free) == (3, 0, tun)
    assert site.run(host, "cat /proc/sys/net/ipv4/conf/flannel0/accept_local", check=True).stdout.strip() == "1"


# --- idempotence -------------------------------------------------------------------

def test_second_run_changes_nothing_and_restarts_nothing(site):
    """The forwarder's wheels are keyed by the content of forwarder/ and plugins/module_utils/ in the
    working tree: an edit there between two runs rightly reinstalls and restarts the forwarders."""
    units = ("flannel-forwarder.service", "docker.service")
    before = {h.name: {u: service_state(site, h.name, u) for u in units} for h in site.hosts}
    run = run_playbook(site, "site.yml")
    TIMINGS["second_run_s"] = round(run.seconds, 1)
    assert run.rc == 0, run.tail()
    assert all(r["changed"] == 0 for r in run.recap.values()), (run.recap, run.changed_tasks())
    after = {h.name: {u: service_state(site, h.name, u) for u in units} for h in site.hosts}
    assert after == before


def test_check_diff_reports_no_change(site):
    run = run_playbook(site, "site.yml", "--check", "--diff")
    TIMINGS["check_run_s"] = round(run.seconds, 1)
    assert run.rc == 0, run.tail()
    assert all(r["changed"] == 0 for r in run.recap.values()), (run.recap, run.changed_tasks())


# --- restart and reboot ----------------------------------------------------------------

def test_forwarder_killed_comes_back_with_the_same_subnet(site):
    host = site.hosts[0].name
    env = subnet_env(site, host)
    pid = service_state(site, host, "flannel-forwarder.service")["MainPID"]
    site.run(host, "systemctl kill -s KILL flannel-forwarder.service", check=True)

    def back():
        state = service_state(site, host, "flannel-forwarder.service")
        return state["ActiveState"] == "active" and state["MainPID"] not in ("0", pid) and state
    wait_for(back, timeout=60, what="flannel-forwarder to restart")
    assert subnet_env(site, host) == env
    ips = containers(site)
    for other in site.hosts[1:]:
        res = ping(site, host, ips[other.name])
        assert res.returncode == 0, res.stdout


def test_rebooted_host_comes_back_with_the_same_subnet_and_working_containers(site):
    host = site.hosts[-1].name
    env = subnet_env(site, host)
    site.reboot(host)
    wait_for(lambda: site.run(host, "systemctl is-active flannel-forwarder docker").stdout.split()
             == ["active", "active"], timeout=90, what="forwarder and docker after the reboot")
    assert subnet_env(site, host) == env
    addr = site.run(host, "ip -4 -o addr show dev docker0", check=True).stdout
    assert "inet %s " % env["FLANNEL_SUBNET"] in addr
    ips = containers(site)
    for other in site.hosts:
        if other.name != host:
            res = ping(site, host, ips[other.name])
            assert res.returncode == 0, res.stdout
            res = ping(site, other.name, ips[host])
            assert res.returncode == 0, res.stdout
    run = run_playbook(site, "site.yml")
    assert run.rc == 0, run.tail()
    assert all(r["changed"] == 0 for r in run.recap.values()), (run.recap, run.changed_tasks())
