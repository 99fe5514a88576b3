"""Smoke test of the test cluster harness on real hosts (root, ~1 min).

Its own 2-host cluster on its own underlay (10.213.9.0/24) and names
(prefix "flt-"), so it can run beside a cluster brought up by hand.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest

from cluster.conftest import fresh_cluster
from cluster.harness.cluster import v1_cgroup_dirs

pytestmark = pytest.mark.cluster

UNDERLAY = "10.213.9"
NOBODY = UNDERLAY + ".254"  # the hosts' default gateway: nothing answers there


@pytest.fixture(scope="module")
def smoke():
    yield from fresh_cluster("smoke", hosts=2, prefix="flt-", underlay=UNDERLAY)


def test_ssh_hostname_and_systemd_running(smoke):
    for host in smoke.hosts:
        res = smoke.run(host.name, "hostname; systemctl is-system-running; systemctl is-active docker ssh",
                        check=True)
        assert res.stdout.split() == [host.name, "running", "active", "active"]
    ids = {smoke.run(h.name, "cat /etc/machine-id", check=True).stdout for h in smoke.hosts}
    assert len(ids) == len(smoke.hosts)


def test_inventory_and_ssh_config(smoke):
    with open(smoke.inventory_path) as fh:
        inv = fh.read()
    for host in smoke.hosts:
        assert "%s ansible_host=%s" % (host.name, host.ip) in inv
    assert "ansible_python_interpreter=/usr/bin/python3" in inv
    endpoints = ["https://%s.%d:2379" % (UNDERLAY, i) for i in (1, 2, 3)]
    assert "flannel_etcd_endpoints=%s" % json.dumps(endpoints) in inv
    assert "flannel_etcd_password" not in inv.replace("# flannel_etcd_password: in group_vars", "")
    assert smoke.etcd.password not in inv
    st = os.stat(smoke.secrets_path)
    assert st.st_mode & 0o777 == 0o600 and st.st_uid == 0
    inventory_tool = ansible_tool("ansible-inventory")
    if not inventory_tool:
        pytest.fail("ansible-inventory not installed (make venv)", pytrace=False)
    res = subprocess.run([inventory_tool, "-i", smoke.inventory_path, "--host", smoke.hosts[0].name],
                         capture_output=True, text=True, check=True)
    hostvars = json.loads(res.stdout)
    assert hostvars["flannel_etcd_endpoints"] == smoke.etcd_endpoints == endpoints
    assert hostvars["flannel_etcd_ca_cert"] == smoke.etcd.ca_cert and os.path.isfile(smoke.etcd.ca_cert)
    assert hostvars["flannel_etcd_client_cert"] == smoke.etcd.client_cert
    assert hostvars["flannel_etcd_client_key"] == smoke.etcd.client_key
    assert hostvars["flannel_etcd_user"] == "flannel"
    assert hostvars["flannel_etcd_password"] == smoke.etcd.password  # from group_vars/flannel.yml


def ansible_tool(name):
    beside = os.path.join(os.path.dirname(sys.executable), name)
    return beside if os.access(beside, os.X_OK) else shutil.which(name)


def test_ansible_reaches_hosts_with_underlay_facts(smoke):
    tool = ansible_tool("ansible")
    if not tool:
        pytest.fail("ansible not installed (make venv)", pytrace=False)
    env = dict(os.environ, ANSIBLE_SSH_ARGS="-o ControlMaster=no")
    tree = os.path.join(smoke.state_dir, "facts")
    res = subprocess.run([tool, "-i", smoke.inventory_path, "flannel", "-m", "setup", "-t", tree,
                          "-a", "filter=ansible_default_ipv4,ansible_interfaces,ansible_service_mgr"],
                         capture_output=True, text=True, env=env, timeout=120, check=False)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    for host in smoke.hosts:
        with open(os.path.join(tree, host.name)) as fh:
            facts = json.load(fh)["ansible_facts"]
        assert facts["ansible_default_ipv4"]["address"] == host.ip
        assert facts["ansible_default_ipv4"]["interface"] == "eth0"
        assert facts["ansible_service_mgr"] == "systemd"
        assert smoke.state["underlay"]["controller_veth"] not in facts["ansible_interfaces"]
    res = subprocess.run(["ssh", "-F", smoke.ssh_config_path, smoke.hosts[0].name, "true"], timeout=30, check=False)
    assert res.returncode == 0


def test_host_sees_its_own_network(smoke):
    host = smoke.hosts[0]
    res = smoke.run(host.name, "ls /sys/class/net; cat /proc/sys/net/ipv4/ip_forward; "
                               "ip -4 route get 10.255.255.1", check=True)
    lines = res.stdout.split("\n")
    assert "eth0" in lines and "lo" in lines
    assert smoke.state["underlay"]["controller_veth"] not in lines  # not the machine's interfaces
    assert "via %s dev eth0 src %s" % (NOBODY, host.ip) in res.stdout
    # /proc/sys/net belongs to the host's own netns and is writable
    smoke.run(host.name, "sysctl -w net.ipv4.conf.eth0.rp_filter=0", check=True)
    # the IPv6 underlay (for dual-stack overlays): a global address on eth0, usable at once, reaching the other
    # hosts' and the controller's
    other = smoke.hosts[1]
    res = smoke.run(host.name, "ip -6 -o addr show dev eth0 scope global; ping -6 -c 1 -W 2 %s && ping -6 -c 1 -W 2 %s"
                    % (other.ip6, smoke.state["underlay"]["controller_ip6"]), timeout=30)
    assert " %s/64 scope global " % host.ip6 in res.stdout and "tentative" not in res.stdout, res.stdout
    assert res.returncode == 0, res.stdout + res.stderr


def test_docker_container_pings_other_host(smoke):
    a, b = smoke.hosts[0], smoke.hosts[1]
    res = smoke.run(a.name, "docker run --rm busybox ping -c 3 -W 2 %s" % b.ip, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "3 packets received" in res.stdout
    smoke.run(b.name, "docker run --rm busybox ls /bin/sh /bin/ping /sbin/ip /usr/bin/nc /usr/bin/wget",
              check=True)


def test_nothing_leaves_the_underlay(smoke):
    host = smoke.hosts[0]
    res = smoke.run(host.name, "ip -4 route show default; ping -c 2 -W 1 %s" % NOBODY, timeout=30)
    assert "default via %s dev eth0" % NOBODY in res.stdout
    assert res.returncode != 0 and "0 received" in res.stdout
    res = smoke.run(host.name, "docker run --rm busybox ping -c 1 -W 1 %s" % NOBODY, timeout=30)
    assert res.returncode != 0
    ruleset = smoke.underlay_guard_ruleset()
    assert "test_cluster_guard" in ruleset and "drop" in ruleset


def test_etcd_cluster_reachable_from_hosts_over_tls_only(smoke):
    ec = smoke.etcd
    assert ec.health() == {"etcd1": True, "etcd2": True, "etcd3": True}
    assert sorted(m["name"] for m in ec.member_list()) == ["etcd1", "etcd2", "etcd3"]
    ctl = subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", smoke.state["underlay"]["controller_veth"]],
                         capture_output=True, text=True, check=True).stdout
    for i in (1, 2, 3):
        assert " %s.%d/24 " % (UNDERLAY, i) in ctl
    files = {"ca.pem": ec.ca_cert, "client.pem": ec.client_cert, "client-key.pem": ec.client_key}
    script = ("import json, ssl, sys, urllib.request\n"
              "ctx = ssl.create_default_context(cafile='/tmp/etcd-smoke/ca.pem')\n"
              "ctx.load_cert_chain('/tmp/etcd-smoke/client.pem', '/tmp/etcd-smoke/client-key.pem')\n"
              "for url in sys.argv[1:]:\n"
              "    print(json.load(urllib.request.urlopen(url + '/version', timeout=5, context=ctx))['etcdserver'])\n")
    for host in smoke.hosts:
        smoke.run(host.name, "mkdir -p -m 0700 /tmp/etcd-smoke", check=True)
        for name, path in files.items():
            with open(path) as fh:
                smoke.run(host.name, "cat > /tmp/etcd-smoke/%s" % name, input=fh.read(), check=True)
        res = smoke.run(host.name, ["python3", "-c", script] + ec.endpoints, check=True)
        assert [v[:2] for v in res.stdout.split()] == ["3."] * 3, res.stdout
        # plain HTTP gets nothing
        res = smoke.run(host.name, ["python3", "-c", "import urllib.request; urllib.request.urlopen('%s/version', "
                                    "timeout=5)" % ec.endpoints[0].replace("https", "http")])
        assert res.returncode != 0
        smoke.run(host.name, "rm -rf /tmp/etcd-smoke", check=True)


def test_reboot_brings_host_back_with_fresh_run(smoke):
    host = smoke.hosts[1]
    smoke.run(host.name, "touch /run/before-reboot /root/before-reboot; docker run -d --stop-timeout 1 busybox sleep 600",
              check=True)
    mid = smoke.run(host.name, "cat /etc/machine-id", check=True).stdout
    launches = smoke.supervisor_info(host.name)["launches"]
    smoke.reboot(host.name)
    assert smoke.supervisor_info(host.name)["launches"] == launches + 1
    res = smoke.run(host.name, "ls /run/before-reboot; ls /root/before-reboot; findmnt -n -o FSTYPE /run; "
                               "systemctl is-system-running; cat /etc/machine-id")
    assert "No such file" in res.stderr  # /run/before-reboot is gone
    out = res.stdout.split()
    assert out[:3] == ["/root/before-reboot", "tmpfs", "running"]
    assert out[3] == mid.strip()
    res = smoke.run(host.name, "docker run --rm busybox ping -c 1 -W 2 %s" % smoke.hosts[0].ip, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr


def test_stop_and_start_keep_the_disk(smoke):
    host = smoke.hosts[0]
    smoke.run(host.name, "echo kept > /root/kept", check=True)
    smoke.stop(host.name)
    assert smoke.leader_pid(host.name) is None
    assert smoke.run(host.name, "true", timeout=30).returncode != 0
    smoke.start(host.name)
    res = smoke.run(host.name, "cat /root/kept; docker image inspect -f ok busybox", check=True)
    assert res.stdout.split() == ["kept", "ok"]


def test_down_leaves_nothing_behind(smoke):
    for host in smoke.hosts:
        smoke.run(host.name, "docker run -d busybox sleep 600", check=True)
    for host in smoke.hosts:  # docker's cgroup-parent, where down must look for it
        assert any(os.path.isdir(d) for d in smoke.state["hosts"][host.name]["docker_cgroups"])
    pids = list(smoke.etcd.pids().values()) + [smoke.state["hosts"][h.name]["supervisor"]["pid"]
                                               for h in smoke.hosts]
    assert len(smoke.etcd.pids()) == 3
    pids += [smoke.supervisor_info(h.name)["nspawn_pid"] for h in smoke.hosts]
    pids += [smoke.supervisor_info(h.name)["leader_pid"] for h in smoke.hosts]
    assert smoke.down() == []
    assert smoke.leftovers() == []
    for pid in pids:
        assert not os.path.exists("/proc/%d/cmdline" % pid) or open("/proc/%d/stat" % pid).read().split()[2] == "Z"
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    assert "flt-" not in netns
    with open("/proc/self/mountinfo") as fh:
        assert smoke.state_dir not in fh.read()
    for path in v1_cgroup_dirs() + ["/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified"]:
        assert not [d for d in os.listdir(path) if d.startswith("flt-")], path
    assert smoke.state["last_down_s"] < 30
