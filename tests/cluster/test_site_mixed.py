"""site.yml, from the built tarball, on a fleet in the middle of an OS upgrade: Debian 12 and 13 hosts in one overlay.

Its own 3-host cluster (prefix "mx-", underlay 10.216.0.0/24, so it runs
beside the session cluster): flh1 runs bookworm (Python 3.11, docker.io
20.10, systemd 252), flh2 and flh3 run trixie (Python 3.13, docker.io 26.1,
systemd 257), each a stock image of its release (tests/cluster/harness/image.py).
One first run and one second run of site.yml: each host gets the release
staged for its own Python, docker0 carries the lease's gateway and MTU on
both docker.io versions, containers on every pair of hosts reach each other
(bookworm <-> trixie and trixie <-> trixie), and the second run changes
nothing. Both runs are `ansible-playbook overlay.flannel.site` from the
collection as a user gets it, on today's controller: the Debian 13 controller
(conftest.py `debian13`: Python 3.13 and ansible-core 2.21, the newest that
meta/runtime.yml claims) installs the built tarball with its ansible-galaxy
into an empty collections path and runs the playbooks from a temporary
directory, so a file the roles or the forwarder need that galaxy.yml's
build_ignore left out fails here too, and so does a deprecation warning that
ansible-core 2.21 prints for our code. Then report.yml, from the same
install, must find the overlay healthy. Timings are printed (pytest -s) and
written to <state dir>/mixed-timings.json.
"""

import json
import os
import subprocess
import time

import pytest

from cluster.conftest import fresh_cluster
from cluster.flannel_helpers import (
    MAX_EXPOSURE,
    NETWORK,
    ansible_tool,
    capability_mask,
    forwarder_sandbox,
    parallel,
    ping,
    service_state,
    site_from_tarball,
    start_container,
    subnet_env,
)
from support.requires_ansible import claimed_range, specifier

pytestmark = pytest.mark.cluster

SUITES = ["bookworm", "trixie", "trixie"]
# what each release ships (the stock packages of its image)
RELEASE = {"bookworm": {"version_id": "12", "python": "3.11", "docker": "20.10.", "systemd": 252},
           "trixie": {"version_id": "13", "python": "3.13", "docker": "26.1.", "systemd": 257}}
TIMINGS = {}


@pytest.fixture(scope="module")
def mixed():
    if not ansible_tool("ansible-playbook"):
        pytest.fail("ansible-playbook not installed (make venv)", pytrace=False)
    start = time.monotonic()
    for c in fresh_cluster("mixed", hosts=len(SUITES), prefix="mx-", underlay="10.216.0", suites=SUITES):
        TIMINGS["up_s"] = round(time.monotonic() - start, 1)
        TIMINGS["cluster"] = c.state.get("timings")
        yield c
        with open(os.path.join(c.state_dir, "mixed-timings.json"), "w") as fh:
            json.dump(TIMINGS, fh, indent=1)
        print("\nmixed site.yml timings: %s" % json.dumps(TIMINGS))


def host_facts(cluster, host):
    """The release, Python, docker and systemd a host runs."""
    script = (". /etc/os-release; echo $VERSION_CODENAME $VERSION_ID; "
              "python3 -c 'import sys; print(\"%d.%d\" % sys.version_info[:2])'; "
              "docker version -f '{{.Server.Version}}'; systemctl --version | head -n 1 | cut -d' ' -f2")
    out = cluster.run(host, script, check=True).stdout.split()
    return {"codename": out[0], "version_id": out[1], "python": out[2], "docker": out[3], "systemd": int(out[4])}


def test_each_host_runs_its_own_release(mixed):
    assert mixed.suites == dict(zip(mixed.host_names, SUITES))
    facts = parallel(lambda h: host_facts(mixed, h), mixed.host_names)
    for host, suite in mixed.suites.items():
        want, got = RELEASE[suite], facts[host]
        assert got["codename"] == suite and got["version_id"] == want["version_id"], (host, got)
        assert got["python"] == want["python"] and got["systemd"] == want["systemd"], (host, got)
        assert got["docker"].startswith(want["docker"]), (host, got)
    with open(mixed.inventory_path) as fh:
        inventory = fh.read()
    for host in mixed.hosts:
        assert "%s ansible_host=%s test_cluster_suite=%s" % (host.name, host.ip, mixed.suite(host.name)) in inventory


def no_deprecation(run):
    found = [line for line in run.output.splitlines() if "[DEPRECATION WARNING]" in line]
    assert not found, found


def test_the_debian13_controller_runs_the_newest_claimed_ansible_core_from_the_tarball(debian13):
    playbook_tool, (_tarball, collections, work, env) = debian13
    out = subprocess.run([playbook_tool, "--version"], capture_output=True, text=True, check=True, timeout=120,
                         cwd=work, env=env).stdout
    head = out.splitlines()[0]
    version = head.split("[core ")[1].rstrip("]")
    assert version in specifier() and version.split(".")[:2] == ["2", "21"], (head, specifier())
    assert int(claimed_range()[1].split(".")[1]) == 22, claimed_range()
    assert "python version = 3.13." in out, out
    galaxy = os.path.join(os.path.dirname(playbook_tool), "ansible-galaxy")
    found = json.loads(subprocess.run([galaxy, "collection", "list", "overlay.flannel", "--format", "json"],
                                      capture_output=True, text=True, check=True, timeout=120, cwd=work,
                                      env=env).stdout)
    installed = os.path.join(collections, "ansible_collections")
    assert list(found) == [installed], found
    assert not os.path.islink(os.path.join(installed, "overlay", "flannel"))


def test_site_converges_on_both_releases(mixed, debian13):
    playbook_tool, installed = debian13
    run = site_from_tarball(mixed, installed, playbook_tool=playbook_tool, label="tarball, Debian 13 controller")
    TIMINGS["first_run_s"] = round(run.seconds, 1)
    assert run.rc == 0, run.tail()
    no_deprecation(run)
    assert set(run.recap) == set(mixed.host_names)
    assert all(r["failed"] == 0 and r["unreachable"] == 0 for r in run.recap.values()), run.recap


def test_each_host_runs_the_release_staged_for_its_python(mixed):
    releases = {}
    for host, suite in mixed.suites.items():
        res = mixed.run(host, "cat /opt/flannel-forwarder/current/release.json", check=True)
        release = json.loads(res.stdout)
        assert release["target"]["python"] == RELEASE[suite]["python"], (host, release["target"])
        assert release["target"]["machine"] == "x86_64"
        releases[host] = release["name"]
        active = mixed.run(host, "systemctl is-active flannel-forwarder docker", check=False).stdout.split()
        assert active == ["active", "active"], (host, active)
    by_suite = {}
    for host, name in releases.items():
        by_suite.setdefault(mixed.suite(host), set()).add(name)
    # one release per distinct target: the same for the hosts of one release, another for the other
    assert all(len(names) == 1 for names in by_suite.values()), by_suite
    assert by_suite["bookworm"] != by_suite["trixie"], by_suite


def test_docker0_has_the_leased_gateway_and_mtu_on_both_docker_versions(mixed):
    gateways = {}
    for host in mixed.host_names:
        env = subnet_env(mixed, host)
        assert env["FLANNEL_NETWORK"] == NETWORK and env["FLANNEL_MTU"] == "1472", (host, env)
        addr = mixed.run(host, "ip -4 -o addr show dev docker0", check=True).stdout
        assert "inet %s " % env["FLANNEL_SUBNET"] in addr, (host, addr)
        mtu = mixed.run(host, ["docker", "network", "inspect", "-f",
                               '{{index .Options "com.docker.network.driver.mtu"}}', "bridge"], check=True)
        assert mtu.stdout.strip() == "1472", (host, mtu.stdout)
        gateways[host] = env["FLANNEL_SUBNET"]
    assert len(set(gateways.values())) == len(mixed.hosts), gateways


def test_containers_on_every_pair_of_hosts_reach_each_other(mixed):
    ips = parallel(lambda h: start_container(mixed, h), mixed.host_names)
    for host in ips:  # a container's MTU is the bridge's on both docker versions
        link = mixed.run(host, "docker exec ofl-e2e ip -o link show dev eth0", check=True).stdout
        assert " mtu 1472 " in link, (host, link)
    pairs = [(a, b) for a in mixed.host_names for b in mixed.host_names if a != b]
    results = parallel(lambda pair: ping(mixed, pair[0], ips[pair[1]]), pairs)
    failures = ["%s (%s) -> %s (%s) %s: %s" % (a, mixed.suite(a), b, mixed.suite(b), ips[b], results[(a, b)].stdout[-300:])
                for a, b in pairs if results[(a, b)].returncode != 0]
    assert not failures, "\n".join(failures)


def test_the_sandbox_holds_on_both_releases(mixed):
    """systemd 252 and 257 rate the forwarder's unit 2.5 or less; the daemon holds CAP_NET_ADMIN alone on both:
    Debian 13's systemd admits every group to unprivileged ICMP sockets (the role leaves its range alone), Debian
    12's kernel none (the role's drop-in admits the forwarder's group)."""
    boxes = parallel(lambda h: forwarder_sandbox(mixed, h), mixed.host_names)
    for host, box in boxes.items():
        gid = box["account"].split(":")[1]
        assert box["user"] == "flannel-forwarder", (host, box)
        assert box["CapEff"] == box["CapBnd"] == capability_mask(["CAP_NET_ADMIN"]), (host, box)
        assert box["exposure"] is not None and box["exposure"] <= MAX_EXPOSURE, (host, box)
        assert box["probe_socket"] == "icmp_dgram", (host, box)
        wanted = "0 2147483647" if mixed.suite(host) == "trixie" else "%s %s" % (gid, gid)
        assert box["ping_group_range"] == wanted, (host, box)
    TIMINGS["exposure"] = dict((h, b["exposure"]) for h, b in boxes.items())


def test_second_run_changes_nothing_and_restarts_nothing(mixed, debian13):
    playbook_tool, installed = debian13
    units = ("flannel-forwarder.service", "docker.service")
    before = {h: {u: service_state(mixed, h, u) for u in units} for h in mixed.host_names}
    run = site_from_tarball(mixed, installed, playbook_tool=playbook_tool, label="tarball, Debian 13 controller")
    TIMINGS["second_run_s"] = round(run.seconds, 1)
    assert run.rc == 0, run.tail()
    no_deprecation(run)
    assert all(r["changed"] == 0 for r in run.recap.values()), (run.recap, run.changed_tasks())
    after = {h: {u: service_state(mixed, h, u) for u in units} for h in mixed.host_names}
    assert after == before


def test_report_from_the_debian13_controller_finds_nothing(mixed, debian13, tmp_path):
    playbook_tool, installed = debian13
    path = tmp_path / "report.json"  # under /tmp, which the controller shares
    run = site_from_tarball(mixed, installed, "-e", "flannel_report_json=%s" % path, "-e", "flannel_report_strict=true",
                            playbook_tool=playbook_tool, playbook="report", label="tarball, Debian 13 controller")
    TIMINGS["report_s"] = round(run.seconds, 1)
    assert run.rc == 0, run.tail()
    no_deprecation(run)
    assert all(r["changed"] == 0 for r in run.recap.values()), (run.recap, run.changed_tasks())
    data = json.loads(path.read_text())
    assert data["ok"] is True and data["findings"] == [], data["findings"]
    assert sorted(row["host"] for row in data["rows"]) == sorted(mixed.host_names), data["rows"]
    assert all(row["forwarder_ready"] is True for row in data["rows"]), data["rows"]
