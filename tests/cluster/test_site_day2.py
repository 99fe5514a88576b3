"""Day-2 playbooks on the test cluster: relet.yml (rolling, verified) and retire.yml (then site.yml brings the host
back)."""

import json

import pytest

from cluster.flannel_helpers import (
    SANDBOXED_FILES,
    capability_mask,
    containers,
    forwarder_sandbox,
    gateway_of,
    host_snapshot,
    leases_in_etcd,
    pings_all,
    pings_during,
    run_playbook,
)

pytestmark = pytest.mark.cluster


def leases_by_ip(c, _tmp_path=None):
    return {lease["public_ip"]: lease["subnet"] for lease in leases_in_etcd(c)["leases"]}


def free_subnet(held, start=200):
    for n in range(start, 255):
        if "10.5.%d.0/24" % n not in held:
            return "10.5.%d.0/24" % n
    raise AssertionError("no free subnet")


def test_relet_without_a_choice_of_hosts_refuses(converged):
    run = run_playbook(converged, "relet.yml")
    assert run.rc != 0
    assert "-l <hosts>" in run.output and "flannel_relet_hosts" in run.output, run.tail()
    run = run_playbook(converged, "relet.yml", "-e", "flannel_relet_hosts=nosuchhost*")
    assert run.rc != 0 and "matches flannel_relet_hosts=nosuchhost*" in run.output, run.tail()


def test_relet_one_host_while_the_others_ping(converged, tmp_path):
    """-l one host: it moves, is verified across the overlay, the other two hosts' containers lose at most
    one packet between them, nothing is done on them."""
    c = converged
    a, moved, b = c.host_names[0], c.host_names[1], c.host_names[2]
    ips = containers(c)
    old = gateway_of(c, moved)
    others_before = {h: host_snapshot(c, h) for h in (a, b)}
    run, results = pings_during(c, ips, lambda: run_playbook(c, "relet.yml", "-l", moved), pairs=[(a, b), (b, a)])
    assert run.rc == 0, run.tail()
    print("pings during the relet: %s" % results)
    for pair, (sent, received) in results.items():
        assert sent - received <= 1, (pair, sent, received)
    new = gateway_of(c, moved)
    assert new != old
    assert "inet %s " % new in c.run(moved, "ip -4 -o addr show dev docker0", check=True).stdout
    # Verified from the moved host and towards it, with the other hosts named.
    assert "Reach every other host's docker0 gateway from this host" in run.stdout
    for h in (a, b):
        assert "%s %s" % (h, gateway_of(c, h).split("/")[0]) in run.stdout, run.stdout[-3000:]
    assert set(run.recap) == {moved}, run.recap
    assert {h: host_snapshot(c, h) for h in (a, b)} == others_before
    leases = leases_by_ip(c, tmp_path)
    assert len(leases) == len(c.hosts) and len(set(leases.values())) == len(c.hosts)
    assert pings_all(c) == []


def test_relet_onto_a_named_subnet(converged, tmp_path):
    """-e flannel_relet_subnet: --check --diff shows the move and changes nothing; the move; the same command
    again is changed=0; a subnet for two hosts is refused."""
    c = converged
    host = c.hosts[2]
    target = free_subnet(set(leases_by_ip(c, tmp_path).values()))
    before = {h: host_snapshot(c, h) for h in c.host_names}
    leases_before = leases_by_ip(c, tmp_path)
    check = run_playbook(c, "relet.yml", "-l", host.name, "-e", "flannel_relet_subnet=%s" % target, "--check",
                         "--diff")
    assert check.rc == 0, check.tail()
    assert "-> %s" % target in check.stdout, check.stdout[-3000:]
    assert leases_by_ip(c, tmp_path / "check") == leases_before
    assert {h: host_snapshot(c, h) for h in c.host_names} == before

    run = run_playbook(c, "relet.yml", "-l", host.name, "-e", "flannel_relet_subnet=%s" % target)
    assert run.rc == 0, run.tail()
    assert leases_by_ip(c, tmp_path / "after")[host.ip] == target
    assert gateway_of(c, host.name) == target.replace(".0/24", ".1/24")
    again = run_playbook(c, "relet.yml", "-l", host.name, "-e", "flannel_relet_subnet=%s" % target)
    assert again.rc == 0, again.tail()
    assert again.recap[host.name]["changed"] == 0, again.changed_tasks()
    assert "(already there)" in again.stdout

    two = run_playbook(c, "relet.yml", "-e", "flannel_relet_hosts=%s:%s" % (c.host_names[0], c.host_names[1]),
                       "-e", "flannel_relet_subnet=%s" % free_subnet({target}, start=210))
    assert two.rc != 0 and "names the subnet of one host" in two.output, two.tail()
    assert leases_by_ip(c, tmp_path / "two") == leases_by_ip(c, tmp_path / "after")
    assert pings_all(c) == []


BROKEN_DROPIN = "/etc/systemd/system/docker.service.d/zz-test-broken.conf"


def test_a_failed_relet_stops_the_rollout(converged, tmp_path):
    """docker cannot start on the first host: the rollout stops there, the hosts after it are untouched."""
    c = converged
    first, rest = c.host_names[0], c.host_names[1:]
    before = {h: host_snapshot(c, h) for h in rest}
    leases_before = leases_by_ip(c, tmp_path)
    c.run(first, "printf '[Service]\\nExecStartPre=/bin/false\\n' > %s && systemctl daemon-reload" % BROKEN_DROPIN,
          check=True)
    try:
        run = run_playbook(c, "relet.yml", "-e", "flannel_relet_hosts=all")
        assert run.rc != 0, run.tail()
        assert run.recap[first]["failed"] == 1, run.recap
        assert set(run.recap) - {"localhost"} == {first}, run.recap  # the hosts after it were never reached
        assert {h: host_snapshot(c, h) for h in rest} == before
        after = leases_by_ip(c, tmp_path / "after")
        assert after[c.hosts[0].ip] != leases_before[c.hosts[0].ip]  # (it did move, then docker failed)
        assert {ip: s for ip, s in after.items() if ip != c.hosts[0].ip} == {
            ip: s for ip, s in leases_before.items() if ip != c.hosts[0].ip}
        # report.yml shows the failed host: its docker0 is not on its new lease. (Its peers' probes see it
        # down too, seconds later: the matrix is left out, so that the findings do not depend on that moment.)
        path = tmp_path / "report.json"
        report = run_playbook(c, "report.yml", "-e", "flannel_report_json=%s" % path, "-e", "flannel_report_matrix=false")
        assert report.rc == 0, report.tail()
        findings = json.loads(path.read_text())["findings"]
        assert [(f["kind"], f["host"]) for f in findings] == [("docker0_mismatch", first)], findings
    finally:
        c.run(first, "rm -f %s && systemctl daemon-reload" % BROKEN_DROPIN, check=True)
    # The run that brings the first host back also upgrades the last one from a root daemon (ROOT_DAEMON): the
    # state directory, /run/flannel and the TLS files are the sandboxed daemon's after that one run.
    upgraded = c.host_names[-1]
    plant_root_daemon(c, upgraded)
    back = run_playbook(c, "site.yml")
    assert back.rc == 0, back.tail()
    assert pings_all(c) == []
    box = forwarder_sandbox(c, upgraded)
    assert box["user"] == "flannel-forwarder" and box["CapEff"] == capability_mask(["CAP_NET_ADMIN"]), box
    assert box["stat"] == SANDBOXED_FILES, box


# A host as a release before the sandbox left it: the forwarder runs as root with the three capabilities and no
# system-call filter, and what it wrote, its state directory and the etcd TLS files are root's alone.
ROOT_DAEMON = r"""
set -e
unit=/etc/systemd/system/flannel-forwarder.service
sed -i -e '/^User=/d' -e '/^Group=/d' -e '/^SystemCall/d' -e '/^UMask=/d' \
    -e 's/^\(CapabilityBoundingSet\|AmbientCapabilities\)=.*/\1=CAP_NET_ADMIN CAP_NET_RAW CAP_NET_BIND_SERVICE/' $unit
systemctl daemon-reload
systemctl restart flannel-forwarder.service
chown -R root:root /var/lib/flannel-forwarder /run/flannel /etc/flannel/pki
chmod 0700 /etc/flannel/pki
chmod 0600 /etc/flannel/pki/client-key.pem
stat -c %U /proc/$(systemctl show -p MainPID --value flannel-forwarder.service)
"""


def plant_root_daemon(c, host):
    assert c.run(host, "sh -s", input=ROOT_DAEMON, check=True).stdout.split() == ["root"]


def test_retire_removes_the_host_and_site_brings_it_back(converged, tmp_path):
    c = converged
    host = c.hosts[-1]
    before, leases_before = host_snapshot(c, host.name), leases_by_ip(c, tmp_path / "before")
    check = run_playbook(c, "retire.yml", "-e", "flannel_retire_host=%s" % host.name, "--check", "--diff")
    assert check.rc == 0, check.tail()
    assert host_snapshot(c, host.name) == before and leases_by_ip(c, tmp_path / "check") == leases_before
    run = run_playbook(c, "retire.yml", "-e", "flannel_retire_host=%s" % host.name,
                       "-e", "flannel_retire_reset_docker_networks=true")
    assert run.rc == 0, run.tail()
    leases = leases_in_etcd(c)["leases"]
    assert host.ip not in [lease["public_ip"] for lease in leases]
    res = c.run(host.name, "systemctl is-active flannel-forwarder; ls /etc/flannel /run/flannel/subnet.env "
                           "/etc/systemd/system/docker.service.d/flannel.conf; iptables -S | grep -c overlay.flannel")
    assert res.stdout.split()[0] in ("inactive", "unknown")
    assert res.stdout.split()[-1] == "0"
    assert res.stderr.count("No such file") == 3
    # its account and the ping_group_range drop-in went too; the range is the kernel's again
    res = c.run(host.name, "getent passwd flannel-forwarder; getent group flannel-forwarder; "
                           "ls /etc/sysctl.d/60-flannel-forwarder.conf; cat /proc/sys/net/ipv4/ping_group_range")
    assert res.stdout.split() == ["1", "0"] and res.stderr.count("No such file") == 1, res
    assert "inet 172.17." in c.run(host.name, "ip -4 -o addr show dev docker0", check=True).stdout
    back = run_playbook(c, "site.yml")
    assert back.rc == 0, back.tail()
    assert host.ip in [lease["public_ip"] for lease in leases_in_etcd(c)["leases"]]
    assert pings_all(c) == []
