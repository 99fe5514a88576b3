"""Stock hosts and one writer per host fact, end to end on the test cluster.

- The hosts are stock (python3 without pip or ensurepip) and still converge.
- A controller with no package index stages the forwarder from a wheelhouse
  (playbooks/wheelhouse.yml) alone; one that lacks the hosts' target is named
  with the command that fills it, before anything changes.
- flannel_mtu reaches the TUN, subnet.env, docker0 and the containers as one
  number, which survives a forwarder restart and a reboot with changed=0; in
  the same runs flannel_ip_masq adds its masquerade rule once (and docker's
  own masquerading stays off), and a lease the forwarder re-creates keeps
  flannel_subnet_ttl; back to the defaults, all three go back.
- Hosts back past their TTL converge in one site.yml run (two at once): one
  with its subnet still free (same subnet, docker0 unchanged), one with its
  subnet taken meanwhile (a new subnet, docker0 and a container with a
  restart policy on it, reaching every other host).
"""

import json
import os
import re
import subprocess
import time

import pytest

from cluster.flannel_helpers import (
    REPO,
    ansible_tool,
    ping,
    run_playbook,
    service_state,
    start_container,
    leases_in_etcd,
    subnet_env,
    subnet_info,
    wait_for,
)
from support import ansible_under_test

pytestmark = pytest.mark.cluster

SHORT_TTL = ["-e", "flannel_subnet_ttl=12", "-e", "flannel_subnet_renew_margin=4"]


def module(cluster, tmpdir, name, **args):
    """An overlay.flannel module run on the controller against the cluster's etcd; its result."""
    tree = os.path.join(str(tmpdir), "%s-%d" % (name, time.monotonic_ns()))
    res = subprocess.run([ansible_tool("ansible"), "localhost", "-c", "local", "-m", "overlay.flannel." + name,
                          "-a", json.dumps(dict(cluster.etcd_module_args(), **args)), "-t", tree,
                          "-e", "ansible_python_interpreter=%s" % ansible_under_test.python()],
                         capture_output=True, text=True, timeout=120, cwd=REPO, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    with open(os.path.join(tree, "localhost")) as fh:
        return json.load(fh)


def lease_of(cluster, _tmpdir, ip):
    return {lease["public_ip"]: lease for lease in leases_in_etcd(cluster)["leases"]}.get(ip)


def granted_ttl(cluster, key):
    kvs = json.loads(cluster.etcdctl("get", key, "-w", "json")).get("kvs", [])
    assert kvs, "no key %s" % key
    out = cluster.etcdctl("lease", "timetolive", "%x" % int(kvs[0]["lease"]))
    return int(out.split("granted with TTL(")[1].split("s)")[0])


def bridge_address(cluster, host):
    out = cluster.run(host, "ip -4 -o addr show dev docker0", check=True).stdout
    return out.split("inet ")[1].split()[0]


def all_changed_zero(run):
    return all(r["changed"] == 0 for r in run.recap.values())


def test_hosts_are_stock_without_pip_or_venv(converged):
    for host in converged.hosts:
        res = converged.run(host.name, "python3 -c 'import ensurepip' 2>&1; python3 -m pip --version 2>&1; "
                                       "ls /opt/flannel-forwarder", check=False)
        assert "No module named 'ensurepip'" in res.stdout and "No module named pip" in res.stdout, res.stdout
        assert res.stdout.split()[-2:] == ["current", "releases"], res.stdout
        unit = converged.run(host.name, "systemctl show -p ExecStart --value flannel-forwarder", check=True).stdout
        assert "/usr/bin/python3 -I /opt/flannel-forwarder/current/bin/flannel-forwarder" in unit


# pip as on an air-gapped controller: no configuration file, no find-links, an index that does not answer.
OFFLINE = {"PIP_CONFIG_FILE": os.devnull, "PIP_FIND_LINKS": None, "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
           "PIP_EXTRA_INDEX_URL": None}


STAGE_ONLY = os.path.join(REPO, "tests", "cluster", "playbooks", "stage_only.yml")


def test_an_air_gapped_controller_stages_from_its_wheelhouse_alone(converged, tmp_path):
    """site.yml's staging (its forwarder preflight, tests/cluster/playbooks/stage_only.yml) with no index."""
    c = converged
    wheelhouse, cache = str(tmp_path / "wheels"), str(tmp_path / "releases")
    os.makedirs(wheelhouse)
    air_gapped = ["-e", "flannel_forwarder_wheelhouse=%s" % wheelhouse, "-e", "flannel_forwarder_release_cache=%s" % cache]
    current = {h: json.loads(c.run(h, "cat /opt/flannel-forwarder/current/release.json", check=True).stdout)
               for h in c.host_names}
    targets = {"%(python)s-%(machine)s-%(glibc)s" % r["target"] for r in current.values()}
    assert len(targets) == 1, current
    own = targets.pop()

    # Not filled yet: site.yml stops in its preflight, every host named with the command that fills it.
    refused = run_playbook(c, "site.yml", *air_gapped, env=OFFLINE)
    assert refused.rc != 0
    for host, release in current.items():
        t = release["target"]
        assert ("%s (Python %s, %s, glibc %s): stage_release: the wheelhouse %s has no wheelhouse.json"
                % (host, t["python"], t["machine"], t["glibc"], wheelhouse)) in refused.stdout, refused.tail()
    assert ("ansible-playbook overlay.flannel.wheelhouse -e flannel_forwarder_wheelhouse=%s "
            "-e flannel_wheelhouse_targets=%s" % (wheelhouse, own)) in refused.stdout
    assert refused.changed_tasks() == []

    # Filled (here, with the index): the controller stages the very release the hosts run with no index at all.
    fill = run_playbook(c, "wheelhouse.yml", "-e", "flannel_forwarder_wheelhouse=%s" % wheelhouse,
                        "-e", "flannel_wheelhouse_targets=%s" % own)
    assert fill.rc == 0 and "has the wheels for %s" % own in fill.stdout, fill.tail()
    run = run_playbook(c, STAGE_ONLY, *air_gapped, env=OFFLINE)
    print("\nair-gapped runs: refused %.0f s, fill %.0f s, staging %.0f s" % (refused.seconds, fill.seconds, run.seconds))
    assert run.rc == 0, run.tail()
    staged = dict(re.findall(r'ok: \[(\S+)\] => \{\s*"msg": "staged release (\S+)"', run.stdout))
    assert staged == {h: r["name"] for h, r in current.items()}, run.tail()
    names = {r["name"] for r in current.values()}
    assert sorted(os.listdir(os.path.join(cache, "releases"))) == sorted(n + ".tar.gz" for n in names)


MASQ_RULES = "iptables -t nat -S POSTROUTING | grep -c 'overlay.flannel ip-masq' || true"
# flannel_mtu, flannel_ip_masq and flannel_subnet_ttl on one host, in one set of runs (each --limit run that
# restarts the forwarder costs about 30 s): each holds through a forwarder restart, a second run (changed=0)
# and a reboot, and goes back with the defaults.
ONE_HOST = ["-e", "flannel_mtu=1400", "-e", "flannel_ip_masq=true", "-e", "flannel_subnet_ttl=7200"]


def test_mtu_ip_masq_and_ttl_hold_through_restart_recreation_and_reboot(converged, tmp_path):
    c = converged
    host = c.hosts[0].name
    ip = c.hosts[0].ip
    other = c.hosts[1].name

    def mtus():
        tun = c.run(host, "cat /sys/class/net/flannel0/mtu", check=True).stdout.strip()
        net = c.run(host, ["docker", "network", "inspect", "-f",
                           '{{index .Options "com.docker.network.driver.mtu"}}', "bridge"], check=True).stdout.strip()
        start_container(c, host)
        eth0 = c.run(host, "docker exec ofl-e2e cat /sys/class/net/eth0/mtu", check=True).stdout.strip()
        return dict(tun=tun, env=subnet_env(c, host)["FLANNEL_MTU"], docker=net, container=eth0)

    def masquerading():
        env = subnet_env(c, host)["FLANNEL_IPMASQ"]
        return env, c.run(host, MASQ_RULES).stdout.strip()

    try:
        run = run_playbook(c, "site.yml", *ONE_HOST, "--limit", host)
        assert run.rc == 0, run.tail()
        assert mtus() == dict(tun="1400", env="1400", docker="1400", container="1400")
        opts = c.run(host, "cat /run/flannel/docker", check=True).stdout
        # docker's own masquerading stays off: the forwarder's rule does it, once.
        assert "--mtu=1400" in opts and "--ip-masq=false" in opts, opts
        assert masquerading() == ("true", "1")
        key = lease_of(c, tmp_path, ip)["key"]
        assert granted_ttl(c, key) == 7200
        # A lease the forwarder re-creates keeps flannel_subnet_ttl.
        c.etcdctl("del", key)
        wait_for(lambda: lease_of(c, tmp_path, ip), timeout=30, what="the forwarder to re-create its lease")
        assert lease_of(c, tmp_path, ip)["key"] == key
        assert granted_ttl(c, key) == 7200
        docker_before = service_state(c, host, "docker.service")["MainPID"]
        c.run(host, "systemctl restart flannel-forwarder", check=True)
        wait_for(lambda: c.run(host, "systemctl is-active flannel-forwarder").stdout.strip() == "active",
                 timeout=60, what="the forwarder after a restart")
        assert subnet_env(c, host)["FLANNEL_MTU"] == "1400"
        assert service_state(c, host, "docker.service")["MainPID"] == docker_before
        again = run_playbook(c, "site.yml", *ONE_HOST, "--limit", host)
        assert again.rc == 0 and all_changed_zero(again), (again.recap, again.changed_tasks())
        assert masquerading() == ("true", "1"), "the masquerade rule was added twice"
        c.reboot(host)
        wait_for(lambda: c.run(host, "systemctl is-active flannel-forwarder docker").stdout.split()
                 == ["active", "active"], timeout=90, what="forwarder and docker after the reboot")
        assert mtus() == dict(tun="1400", env="1400", docker="1400", container="1400")
        ips = {h.name: start_container(c, h.name) for h in c.hosts}
        assert ping(c, host, ips[other]).returncode == 0
        after_reboot = run_playbook(c, "site.yml", *ONE_HOST, "--limit", host)
        assert after_reboot.rc == 0 and all_changed_zero(after_reboot), \
            (after_reboot.recap, after_reboot.changed_tasks())
        assert masquerading() == ("true", "1")
    finally:
        back = run_playbook(c, "site.yml", "--limit", host)
    assert back.rc == 0, back.tail()
    assert mtus()["env"] == "1472"
    assert masquerading() == ("false", "0")
    assert granted_ttl(c, lease_of(c, tmp_path, ip)["key"]) != 7200


def test_hosts_back_past_their_ttl_converge_in_one_run_with_their_subnet_free_or_taken(converged, tmp_path):
    """Two hosts powered off past a short TTL at once: the last finds its subnet still free (its forwarder
    re-claims it from its state file before any run: /run is new after a boot), the one before finds it taken
    by another lease meanwhile; one site.yml converges both (a new subnet, docker0 and a container with a
    restart policy on it, reaching every other host), and the next run is changed=0."""
    c = converged
    taken_host, free_host = c.hosts[1], c.hosts[2]
    away = [taken_host, free_host]
    free_before = subnet_env(c, free_host.name)["FLANNEL_SUBNET"]
    old = subnet_env(c, taken_host.name)["FLANNEL_SUBNET"]
    old_subnet = lease_of(c, tmp_path, taken_host.ip)["subnet"]
    squatter = "10.213.0.99"  # no host: a lease that took the subnet while the host was away
    run = run_playbook(c, "site.yml", "--limit", ",".join(h.name for h in away), *SHORT_TTL)
    assert run.rc == 0, run.tail()
    for host in away:
        c.stop(host.name)
    wait_for(lambda: all(lease_of(c, tmp_path, h.ip) is None for h in away), timeout=40, interval=2,
             what="the leases of the stopped hosts to expire")
    taken = module(c, tmp_path, "subnet", public_ip=squatter, subnet=old_subnet)
    assert taken["subnet"] == old_subnet
    try:
        for host in away:
            c.start(host.name)
        wait_for(lambda: c.run(free_host.name, "systemctl is-active flannel-forwarder docker").stdout.split()
                 == ["active", "active"], timeout=90, what="forwarder and docker after the start")
        assert subnet_env(c, free_host.name)["FLANNEL_SUBNET"] == free_before
        c.run(taken_host.name, "docker rm -f ofl-keep >/dev/null 2>&1; "
                               "docker run -d --restart=always --stop-timeout 1 --name ofl-keep busybox sleep 3600",
              check=True, timeout=60)
        run = run_playbook(c, "site.yml")
        assert run.rc == 0, run.tail()
        assert subnet_env(c, free_host.name)["FLANNEL_SUBNET"] == free_before
        assert bridge_address(c, free_host.name) == free_before
        new = subnet_env(c, taken_host.name)["FLANNEL_SUBNET"]
        assert new != old
        assert bridge_address(c, taken_host.name) == new
        leases = leases_in_etcd(c)["leases"]
        assert len(set(lease["subnet"] for lease in leases)) == len(leases), leases
        assert {lease["public_ip"]: lease["subnet"] for lease in leases}[squatter] == old_subnet
        keep_ip = c.run(taken_host.name, ["docker", "inspect", "-f", "{{.NetworkSettings.IPAddress}}", "ofl-keep"],
                        check=True).stdout.strip()
        assert keep_ip.rsplit(".", 1)[0] == new.split("/")[0].rsplit(".", 1)[0], (keep_ip, new)
        ips = {h.name: start_container(c, h.name) for h in c.hosts if h.name != taken_host.name}
        for other, ip in ips.items():
            res = c.run(taken_host.name, "docker exec ofl-keep ping -c 2 -W 2 %s" % ip, check=False, timeout=60)
            assert res.returncode == 0, (other, res.stdout)
            assert ping(c, other, keep_ip).returncode == 0, other
        again = run_playbook(c, "site.yml")
        assert again.rc == 0 and all_changed_zero(again), (again.recap, again.changed_tasks())
    finally:
        module(c, tmp_path, "subnet", public_ip=squatter, state="absent")
        c.run(taken_host.name, "docker rm -f ofl-keep", check=False)


def test_garbage_in_etcd_never_breaks_site_yml_or_the_forwarders(converged, tmp_path):
    """Keys that do not parse and values of the wrong shape are reported and skipped, never fatal."""
    c = converged
    prefix = "/coreos.com/network/subnets/"
    garbage = {prefix + "garbage": "x", prefix + "10.5.250.0-99": "{}", prefix + "10.5.251.0-24": "not json",
               prefix + "10.5.252.0-24": '{"PublicIP": 7, "BackendType": ["udp"]}',
               prefix + "10.5.253.0-24": '["a", "list"]'}
    before = {h.name: service_state(c, h.name, "flannel-forwarder.service")["MainPID"] for h in c.hosts}
    try:
        for key, value in garbage.items():
            c.etcdctl("put", key, value)
        info = subnet_info(c, tmp_path)
        assert set(garbage) <= set(item["key"] for item in info["invalid"]), info["invalid"]
        run = run_playbook(c, "site.yml")
        assert run.rc == 0, run.tail()
        assert all_changed_zero(run), (run.recap, run.changed_tasks())
        after = {h.name: service_state(c, h.name, "flannel-forwarder.service")["MainPID"] for h in c.hosts}
        assert after == before  # no forwarder crashed on the watch events
        ips = {h.name: start_container(c, h.name) for h in c.hosts}
        assert ping(c, c.hosts[0].name, ips[c.hosts[1].name]).returncode == 0
    finally:
        for key in garbage:
            c.etcdctl("del", key)
