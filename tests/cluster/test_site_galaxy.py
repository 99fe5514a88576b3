"""The collection as a user gets it: the built tarball, installed, runs site.yml.

`ansible-galaxy collection build` makes the tarball from this checkout (with
galaxy.yml's build_ignore), `ansible-galaxy collection install` puts it into
an empty collections path, and `ansible-playbook overlay.flannel.site` runs
from a temporary directory with only that path (no checkout, no symlink to
it), against the test cluster's inventory and with the extra vars of
flannel_helpers.run_playbook. It must converge, the overlay must work, and a
second run must change nothing; a file the roles or the forwarder need that
build_ignore left out fails here.
"""

import json
import os
import subprocess
import tarfile
import time

import pytest

from cluster.flannel_helpers import (
    NETWORK,
    REPO,
    PlaybookRun,
    ansible_tool,
    parallel,
    ping,
    start_container,
    subnet_env,
)

pytestmark = pytest.mark.cluster

TIMINGS = {}


def clean_env(collections_path):
    """The environment of a user's shell: no ANSIBLE_* of the test run (which point at the checkout)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_") and k != "PYTHONPATH"}
    env.update(ANSIBLE_COLLECTIONS_PATH=collections_path, ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="False",
               ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", ANSIBLE_HOST_KEY_CHECKING="0",
               ANSIBLE_RETRY_FILES_ENABLED="0")
    return env


def run(cmd, cwd, env, timeout=300):
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout, check=False)
    assert res.returncode == 0, "%s: rc=%d\n%s%s" % (" ".join(cmd), res.returncode, res.stdout[-4000:],
                                                     res.stderr[-4000:])
    return res


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(tarball, collections path it is installed in, an empty working directory, the environment)."""
    galaxy = ansible_tool("ansible-galaxy")
    if not galaxy or not ansible_tool("ansible-playbook"):
        pytest.fail("ansible-galaxy/ansible-playbook not installed (make venv)", pytrace=False)
    base = tmp_path_factory.mktemp("galaxy")
    dist, collections, work = (str(base / d) for d in ("dist", "collections", "work"))
    for d in (dist, collections, work):
        os.makedirs(d)
    env = clean_env(collections)
    start = time.monotonic()
    run([galaxy, "collection", "build", "--output-path", dist, REPO], cwd=work, env=env)
    tarballs = [os.path.join(dist, f) for f in os.listdir(dist) if f.endswith(".tar.gz")]
    assert len(tarballs) == 1, tarballs
    run([galaxy, "collection", "install", "--offline", "-p", collections, tarballs[0]], cwd=work, env=env)
    TIMINGS["build_and_install"] = round(time.monotonic() - start, 1)
    yield tarballs[0], collections, work, env
    print("\ngalaxy timings: %s" % json.dumps(TIMINGS))


def site(cluster, built, *args, timeout=900):
    """ansible-playbook overlay.flannel.site from the installed tarball, cwd outside the checkout."""
    _tarball, _collections, work, env = built
    cmd = [ansible_tool("ansible-playbook"), "-i", cluster.inventory_path, "overlay.flannel.site",
           "-e", "flannel_network=%s" % NETWORK] + list(args)
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=work, env=env, timeout=timeout, check=False)
    return PlaybookRun(proc, time.monotonic() - start)


def test_tarball_holds_the_licence_and_names_it(built):
    tarball = built[0]
    with tarfile.open(tarball) as tar:
        names = set(tar.getnames())
        manifest = json.load(tar.extractfile("MANIFEST.json"))
        licence = tar.extractfile("LICENSE").read().decode()
    info = manifest["collection_info"]
    assert info["license_file"] == "LICENSE"
    assert "GNU GENERAL PUBLIC LICENSE" in licence and "Version 3, 29 June 2007" in licence
    with open(os.path.join(REPO, "LICENSE"), encoding="utf-8") as fh:
        assert licence == fh.read()
    # What the tarball must not carry: the checkout's tests, benchmarks, virtualenvs and caches.
    tops = {n.split("/", 1)[0] for n in names}
    assert not tops & {"tests", "bench", ".venv", ".cache", ".git", ".hypothesis", ".pytest_cache"}, tops
    assert not [n for n in names if n.startswith(".venv") or "__pycache__" in n]


def test_installed_collection_is_the_only_one_ansible_sees(built):
    _tarball, collections, work, env = built
    installed = os.path.join(collections, "ansible_collections", "overlay", "flannel")
    assert not os.path.islink(installed) and os.path.isfile(os.path.join(installed, "MANIFEST.json"))
    res = run([ansible_tool("ansible-galaxy"), "collection", "list", "overlay.flannel", "--format", "json"],
              cwd=work, env=env)
    found = json.loads(res.stdout)
    assert list(found) == [os.path.join(collections, "ansible_collections")], found


def test_site_from_the_tarball_converges(cluster, built):
    run1 = site(cluster, built)
    TIMINGS["first_run"] = round(run1.seconds, 1)
    assert run1.rc == 0, run1.tail()
    assert set(run1.recap) == set(cluster.host_names), run1.recap
    assert all(r["failed"] == 0 and r["unreachable"] == 0 for r in run1.recap.values()), run1.recap
    gateways = {}
    for host in cluster.host_names:
        env = subnet_env(cluster, host)
        assert env.get("FLANNEL_NETWORK") == NETWORK, (host, env)
        gateways[host] = env["FLANNEL_SUBNET"]
    assert len(set(gateways.values())) == len(gateways), gateways


def test_overlay_works_between_every_pair(cluster, built):
    ips = parallel(lambda h: start_container(cluster, h), cluster.host_names)
    failures = []
    for a in cluster.host_names:
        for b in cluster.host_names:
            if a != b:
                res = ping(cluster, a, ips[b])
                if res.returncode != 0:
                    failures.append("%s -> %s (%s): %s" % (a, b, ips[b], res.stdout[-300:]))
    assert not failures, failures


def test_second_run_changes_nothing(cluster, built):
    run2 = site(cluster, built)
    TIMINGS["second_run"] = round(run2.seconds, 1)
    assert run2.rc == 0, run2.tail()
    assert all(r["changed"] == 0 for r in run2.recap.values()), (run2.recap, run2.changed_tasks())
