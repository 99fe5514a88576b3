"""playbooks/report.yml on the test cluster: the healthy overlay, planted problems, an unreachable host."""

import calendar
import json
import re
import time

import pytest

from cluster.flannel_helpers import PREFIX, leases_in_etcd, run_playbook, subnet_env, wait_for

pytestmark = pytest.mark.cluster

ORPHAN = ("10.5.250.0/24", "192.0.2.250")
RESERVATION = ("10.5.251.0/24", "192.0.2.251")


def key(subnet):
    return "%s/subnets/%s" % (PREFIX, subnet.replace("/", "-"))


def value(ip):
    return json.dumps({"PublicIP": ip, "PublicIPv6": None, "BackendType": "udp", "BackendData": None},
                      separators=(",", ":"))


def report(c, tmp_path, *args, name="report.json"):
    path = tmp_path / name
    run = run_playbook(c, "report.yml", "-e", "flannel_report_json=%s" % path, *args)
    data = json.loads(path.read_text()) if path.exists() else None
    return run, data


def unchanged(run):
    return all(r["changed"] == 0 for r in run.recap.values()) and run.recap


def found(data):
    return sorted((f["kind"], f["host"] or f["subnet"]) for f in data["findings"])


def epoch(text):
    return calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ"))


def test_healthy_overlay_reports_every_host_and_no_findings(converged, tmp_path):
    c = converged
    run, data = report(c, tmp_path, "-e", "flannel_report_strict=true")
    assert run.rc == 0, run.tail()
    assert unchanged(run), (run.recap, run.changed_tasks())
    assert data["findings"] == [] and data["ok"] is True, data["findings"]
    assert '"no findings"' in run.stdout
    info = leases_in_etcd(c)
    assert data["network"] == info["config"]["Network"]
    rows = {row["host"]: row for row in data["rows"]}
    assert sorted(rows) == sorted(h.name for h in c.hosts)
    leases = {lease["public_ip"]: lease for lease in info["leases"]}
    assert len(leases) == len(c.hosts) == len(data["rows"])
    for h in c.hosts:
        row, lease = rows[h.name], leases[h.ip]
        assert row["public_ip"] == h.ip
        assert (row["subnet"], row["backend"], row["key"], row["reservation"]) == (
            lease["subnet"], lease["backend_type"], lease["key"], lease["reservation"])
        assert abs(epoch(row["expires_at"]) - epoch(lease["expires_at"])) < 120
        assert row["forwarder"] == "ready" and row["forwarder_ready"] is True
        assert row["subnet_env"] == subnet_env(c, h.name)["FLANNEL_SUBNET"]
        assert row["subnet_env"] in row["docker0"]
        # the table line of the host
        assert re.search(r"^\s*\"%s\s+%s\s+%s\s+udp\s+20\d\d-" % (h.name, re.escape(lease["subnet"]), re.escape(h.ip)),
                         run.stdout, re.M), run.stdout[-3000:]

    # --check and --diff: the same report, still nothing changed, the JSON file still written
    check, data2 = report(c, tmp_path, "--check", "--diff", name="check.json")
    assert check.rc == 0, check.tail()
    assert unchanged(check), (check.recap, check.changed_tasks())
    assert data2["findings"] == [] and [r["subnet"] for r in data2["rows"]] == [r["subnet"] for r in data["rows"]]

    # every lease has less than 100000 h left, but each is renewed by a ready forwarder
    far, data3 = report(c, tmp_path, "-e", "flannel_report_warn_hours=100000", name="far.json")
    assert far.rc == 0 and data3["findings"] == [], far.tail()
    assert data3["warn_hours"] == 100000


def test_bad_warn_hours_is_refused_before_anything(converged):
    run = run_playbook(converged, "report.yml", "-e", "flannel_report_warn_hours=-3")
    assert run.rc != 0
    assert "flannel_report_warn_hours must be a non-negative number of hours (got -3)" in run.output
    assert "Read the leases from etcd" not in run.stdout


def test_planted_problems_are_found(converged, tmp_path):
    c = converged
    taken = [lease["subnet"] for lease in leases_in_etcd(c)["leases"]]
    assert ORPHAN[0] not in taken and RESERVATION[0] not in taken
    stopped, moved, edited = c.hosts[1].name, c.hosts[2].name, c.hosts[0].name
    env_before = c.run(edited, "cat /run/flannel/subnet.env", check=True).stdout
    gateway_moved = subnet_env(c, moved)["FLANNEL_SUBNET"]
    grant = c.etcdctl("lease", "grant", "3600")
    lease_id = re.search(r"lease ([0-9a-f]+) granted", grant).group(1)
    try:
        c.etcdctl("put", "--lease=%s" % lease_id, key(ORPHAN[0]), value(ORPHAN[1]))
        c.etcdctl("put", key(RESERVATION[0]), value(RESERVATION[1]))
        c.run(stopped, "systemctl stop flannel-forwarder.service", check=True)
        c.run(moved, "ip addr flush dev docker0 && ip addr add 10.5.252.1/24 brd + dev docker0", check=True)
        c.run(edited, "sed -i 's|^FLANNEL_SUBNET=.*|FLANNEL_SUBNET=10.5.253.1/24|' /run/flannel/subnet.env",
              check=True)

        run, data = report(c, tmp_path)
        print(run.stdout)
        assert run.rc == 0, run.tail()
        assert unchanged(run), (run.recap, run.changed_tasks())
        assert found(data) == sorted([
            ("orphan", ORPHAN[0]), ("unused_reservation", RESERVATION[0]),
            ("forwarder_not_ready", stopped),
            # its lease (24 h TTL) has less than 72 h left and no ready forwarder renews it
            ("expiring", stopped),
            ("docker0_mismatch", moved), ("subnet_env_mismatch", edited)]), data["findings"]
        messages = "\n".join(f["message"] for f in data["findings"])
        assert "orphan lease %s: its public IP %s is no inventory host" % ORPHAN in messages
        assert "reservation %s (%s) is used by no inventory host" % RESERVATION in messages
        assert "%s: forwarder not ready (inactive)" % stopped in messages
        assert "%s: docker0 has 10.5.252.1/24" % moved in messages
        assert "%s: subnet.env has FLANNEL_SUBNET=10.5.253.1/24" % edited in messages
        rows = {(row["host"], row["subnet"]): row for row in data["rows"]}
        assert rows[(None, ORPHAN[0])]["public_ip"] == ORPHAN[1]
        assert rows[(None, RESERVATION[0])]["expiry"] == "reservation"
        assert rows[(None, RESERVATION[0])]["expires_at"] is None
        assert [row["forwarder"] for row in data["rows"] if row["host"] == stopped] == ["not ready (inactive)"]
        assert len([row for row in data["rows"] if row["host"]]) == len(c.hosts)
        for f in data["findings"]:
            assert f["message"] in run.stdout

        # strict, in --check --diff, with a warn window shorter than the leases' 24 h: the same findings but
        # "expiring"; the play fails at the end naming them, and nothing changed
        strict, data2 = report(c, tmp_path, "--check", "--diff", "-e", "flannel_report_strict=true",
                               "-e", "flannel_report_warn_hours=1", name="strict.json")
        assert strict.rc != 0, strict.tail()
        assert unchanged(strict), (strict.recap, strict.changed_tasks())
        assert "expiring" not in [f["kind"] for f in data2["findings"]]
        assert len(data2["findings"]) == 5
        fatal = [line for line in strict.stdout.splitlines() if line.startswith("fatal:") and "FAILED!" in line]
        assert len(fatal) == 1 and "5 findings: (1) " in fatal[0], strict.tail()
        for f in data2["findings"]:
            assert f["message"] in fatal[0]
    finally:
        c.run(stopped, "systemctl start flannel-forwarder.service", check=False)
        c.run(moved, "ip addr flush dev docker0 && ip addr add %s brd + dev docker0" % gateway_moved, check=False)
        c.run(edited, "cat > /run/flannel/subnet.env", input=env_before, check=False)
        c.etcdctl("del", key(RESERVATION[0]))
        c.etcdctl("lease", "revoke", lease_id)
    wait_for(lambda: c.run(stopped, "systemctl is-active flannel-forwarder.service", check=False).stdout.strip()
             == "active", timeout=90, what="the forwarder on %s" % stopped)
    run, data = report(c, tmp_path, "-e", "flannel_report_strict=true", name="after.json")
    assert run.rc == 0 and data["findings"] == [], run.tail()


def test_unreachable_host_is_a_finding_and_the_others_are_reported(converged, tmp_path):
    c = converged
    down = c.hosts[-1]
    c.stop(down.name)
    try:
        run, data = report(c, tmp_path)
        assert run.rc == 0, run.tail()
        assert unchanged(run), (run.recap, run.changed_tasks())
        kinds = {(f["kind"], f["host"]) for f in data["findings"]}
        assert ("not_reachable", down.name) in kinds
        # its public IP (ansible_default_ipv4) is unknown without facts: its lease belongs to no known host
        assert [f["kind"] for f in data["findings"]] == ["not_reachable", "orphan"], data["findings"]
        assert "whose public IP is unknown" in data["findings"][1]["message"]
        rows = {row["host"]: row for row in data["rows"] if row["host"]}
        assert rows[down.name]["forwarder"] == "not reachable"
        for h in c.hosts[:-1]:
            assert rows[h.name]["forwarder"] == "ready" and rows[h.name]["public_ip"] == h.ip
            assert rows[h.name]["subnet"]

        strict, _data = report(c, tmp_path, "-e", "flannel_report_strict=true", name="strict.json")
        assert strict.rc != 0
        fatal = [line for line in strict.stdout.splitlines() if line.startswith("fatal:") and "FAILED!" in line]
        assert len(fatal) == 1 and "%s is not reachable" % down.name in fatal[0], strict.tail()
        assert "TASK [Show the hosts and their leases]" in strict.stdout
    finally:
        c.start(down.name)
    c.wait_ready(down.name)


def test_site_converges_and_the_report_is_clean_again(converged, tmp_path):
    c = converged
    site = run_playbook(c, "site.yml")
    assert site.rc == 0, site.tail()
    run, data = report(c, tmp_path, "-e", "flannel_report_strict=true")
    assert run.rc == 0 and data["findings"] == [], run.tail()
    print(run.stdout)
    print(json.dumps(data, indent=2))
