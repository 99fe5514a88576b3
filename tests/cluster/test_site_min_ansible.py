"""site.yml with the oldest ansible-core that meta/runtime.yml claims, on the session cluster.

The rest of tests/cluster runs the newest claimed ansible-core (the test
venv's). Here ansible-playbook is the one of the min venv (make's .venv-min,
requirements/controller-min.txt; OVERLAY_FLANNEL_MIN_VENV=DIR names another),
whose Python also runs the etcd modules and stages the forwarder on the
controller. Its ansible-core must be the lower bound of requires_ansible.

site.yml must converge (rc 0, no host failed, every host on the overlay with a
subnet of its own, the containers reaching each other) and a following run
must change nothing. On a cluster that the other tests left converged the
first run already changes nothing: then the state the newest ansible-core
made is the one the oldest wants too, and that run is the second one. On a
fresh cluster (this file run alone) the first run provisions everything.
Then report.yml (its filter plugin and templates on that ansible-core) must
find the overlay healthy. The cluster is left as converged as it was found:
the same network and backend (flannel_helpers.run_playbook's defaults).
"""

import json
import os
import subprocess
import time

import pytest

from cluster.flannel_helpers import (
    NETWORK,
    REPO,
    PlaybookRun,
    describe,
    note_converged,
    parallel,
    ping,
    record_run,
    start_container,
    subnet_env,
)
from support.ansible_under_test import core_version, tool
from support.requires_ansible import claimed_range

pytestmark = pytest.mark.cluster

MIN_VENV = os.environ.get("OVERLAY_FLANNEL_MIN_VENV") or os.path.join(REPO, ".venv-min")


def play(cluster, playbook_tool, playbook="site.yml", *args):
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", ANSIBLE_HOST_KEY_CHECKING="0",
               ANSIBLE_RETRY_FILES_ENABLED="0")
    cmd = [playbook_tool, "-i", cluster.inventory_path, os.path.join(REPO, "playbooks", playbook),
           "-e", "flannel_network=%s" % NETWORK] + list(args)
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900, cwd=REPO, check=False)
    run = PlaybookRun(proc, time.monotonic() - start)
    record_run("%s (oldest ansible-core)" % describe(playbook, args), run)
    if playbook == "site.yml" and not args and run.rc == 0:
        note_converged(cluster)
    return run


def assert_ok(run, cluster):
    assert run.rc == 0, run.tail()
    assert set(run.recap) == set(cluster.host_names), run.recap
    assert all(r["failed"] == 0 and r["unreachable"] == 0 for r in run.recap.values()), run.recap


def changed(run):
    return sum(r["changed"] for r in run.recap.values())


@pytest.fixture(scope="module")
def min_playbook():
    playbook_tool = tool("ansible-playbook", venv=MIN_VENV) if os.path.isdir(MIN_VENV) else None
    if not playbook_tool:
        pytest.fail("no ansible-playbook in %s (make venv-min)" % MIN_VENV, pytrace=False)
    version = core_version(MIN_VENV)
    minimum = claimed_range()[0]
    assert version.split(".")[:2] == minimum.split(".")[:2], (
        "%s has ansible-core %s, but requires_ansible starts at %s" % (MIN_VENV, version, minimum))
    return playbook_tool


def test_site_with_the_oldest_ansible_converges_then_changes_nothing(cluster, min_playbook):
    first = play(cluster, min_playbook)
    assert_ok(first, cluster)
    subnets = {}
    for host in cluster.host_names:
        env = subnet_env(cluster, host)
        assert env.get("FLANNEL_NETWORK") == NETWORK, (host, env)
        subnets[host] = env["FLANNEL_SUBNET"]
        state = cluster.run(host, "systemctl is-active flannel-forwarder docker", check=False).stdout.split()
        assert state == ["active", "active"], (host, state)
    assert len(set(subnets.values())) == len(subnets), subnets
    ips = parallel(lambda h: start_container(cluster, h), cluster.host_names)
    failures = ["%s -> %s" % (a, b) for a in cluster.host_names for b in cluster.host_names
                if a != b and ping(cluster, a, ips[b]).returncode != 0]
    assert not failures, failures
    runs = {"first_run_s": round(first.seconds, 1), "first_run_changed": changed(first)}
    last = first
    if changed(first):
        last = play(cluster, min_playbook)
        assert_ok(last, cluster)
        runs["second_run_s"] = round(last.seconds, 1)
    warnings = sorted({line.strip() for run in (first, last) for line in run.output.splitlines()
                       if line.startswith(("[WARNING]", "[DEPRECATION WARNING]"))})
    print("\nsite.yml with ansible-core %s: %s; warnings: %s" % (core_version(MIN_VENV), runs, warnings or "none"))
    assert changed(last) == 0, (last.recap, last.changed_tasks())


def test_report_with_the_oldest_ansible_finds_nothing(cluster, min_playbook, tmp_path):
    path = tmp_path / "report.json"
    run = play(cluster, min_playbook, "report.yml", "-e", "flannel_report_json=%s" % path,
               "-e", "flannel_report_strict=true")
    assert run.rc == 0, run.tail()
    assert changed(run) == 0, (run.recap, run.changed_tasks())
    data = json.loads(path.read_text())
    assert data["ok"] is True and data["findings"] == [], data["findings"]
    assert sorted(row["host"] for row in data["rows"]) == sorted(cluster.host_names), data["rows"]
    assert all(row["forwarder_ready"] is True for row in data["rows"]), data["rows"]
    print("\nreport.yml with ansible-core %s: %.1f s" % (core_version(MIN_VENV), run.seconds))
