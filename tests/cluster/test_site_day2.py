"""Day-2 playbooks on the test cluster: relet.yml and retire.yml (then site.yml brings the host back)."""

import pytest

from cluster.flannel_helpers import (
    ping,
    run_playbook,
    start_container,
    subnet_env,
    subnet_info,
)

pytestmark = pytest.mark.cluster


def pings_all(cluster):
    ips = {h.name: start_container(cluster, h.name) for h in cluster.hosts}
    failures = []
    for a in cluster.hosts:
        for b in cluster.hosts:
            if a.name != b.name and ping(cluster, a.name, ips[b.name]).returncode != 0:
                failures.append("%s -> %s" % (a.name, b.name))
    return failures


def test_relet_moves_a_host_to_a_new_subnet(converged, tmp_path):
    c = converged
    host = c.hosts[1]
    old = subnet_env(c, host.name)["FLANNEL_SUBNET"]
    run = run_playbook(c, "relet.yml", "-e", "flannel_relet_host=%s" % host.name)
    assert run.rc == 0, run.tail()
    new = subnet_env(c, host.name)["FLANNEL_SUBNET"]
    assert new != old
    assert "inet %s " % new in c.run(host.name, "ip -4 -o addr show dev docker0", check=True).stdout
    leases = {lease["public_ip"]: lease["subnet"] for lease in subnet_info(c, tmp_path)["leases"]}
    assert len(leases) == len(c.hosts)
    assert leases[host.ip].split("/")[0].rsplit(".", 1)[0] == new.split("/")[0].rsplit(".", 1)[0]
    assert pings_all(c) == []
    again = run_playbook(c, "site.yml")
    assert again.rc == 0, again.tail()
    assert all(r["changed"] == 0 for r in again.recap.values()), (again.recap, again.changed_tasks())


def test_relet_without_a_host_fails_with_a_message(converged):
    run = run_playbook(converged, "relet.yml")
    assert run.rc != 0
    assert "flannel_relet_host" in run.output


def test_retire_removes_the_host_and_site_brings_it_back(converged, tmp_path):
    c = converged
    host = c.hosts[-1]
    run = run_playbook(c, "retire.yml", "-e", "flannel_retire_host=%s" % host.name,
                       "-e", "flannel_retire_reset_docker_networks=true")
    assert run.rc == 0, run.tail()
    leases = subnet_info(c, tmp_path)["leases"]
    assert host.ip not in [lease["public_ip"] for lease in leases]
    res = c.run(host.name, "systemctl is-active flannel-forwarder; ls /etc/flannel /run/flannel/subnet.env "
                           "/etc/systemd/system/docker.service.d/flannel.conf; iptables -S | grep -c overlay.flannel")
    assert res.stdout.split()[0] in ("inactive", "unknown")
    assert res.stdout.split()[-1] == "0"
    assert res.stderr.count("No such file") == 3
    assert "inet 172.17." in c.run(host.name, "ip -4 -o addr show dev docker0", check=True).stdout
    back = run_playbook(c, "site.yml")
    assert back.rc == 0, back.tail()
    assert host.ip in [lease["public_ip"] for lease in subnet_info(c, tmp_path / "again")["leases"]]
    assert pings_all(c) == []
