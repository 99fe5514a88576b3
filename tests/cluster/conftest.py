"""Fixtures for end-to-end tests on the systemd-nspawn test cluster.

`cluster` (session scope): a Cluster with OVERLAY_FLANNEL_CLUSTER_HOSTS hosts
(default 3) brought up in a temporary state dir and torn down at the end; or,
when OVERLAY_FLANNEL_CLUSTER_STATE names the state dir of a cluster already up
(`tests/cluster/harness/cluster.py up --state-dir DIR`), that cluster, left up.
Tests that use it should carry the `cluster` marker.

OVERLAY_FLANNEL_CLUSTER_PREFIX and OVERLAY_FLANNEL_CLUSTER_UNDERLAY set the
--prefix/--underlay of that fixture cluster (default "" and 10.213.0), so two
can run side by side; OVERLAY_FLANNEL_CLUSTER_ETCD_PLAIN=1 gives it the single
plain-HTTP etcd instead of the 3-member TLS + auth cluster.
"""

import os
import shutil
import tempfile

import pytest

from cluster.harness.cluster import Cluster
from support import claims


def cluster_skip_reason():
    if os.geteuid() != 0:
        return "the test cluster needs root"
    for tool in ("systemd-nspawn", "debootstrap", "ip", "nsenter", "ssh", "ssh-keygen", "etcd", "etcdctl",
                 "openssl"):
        if shutil.which(tool) is None:
            return "%s not installed" % tool
    if not os.path.isdir("/sys/fs/cgroup/systemd"):
        return "no cgroup v1 name=systemd hierarchy"
    return None


def require_cluster_tools():
    reason = cluster_skip_reason()
    if reason:
        pytest.fail("the test cluster cannot run here: %s" % reason, pytrace=False)


def fresh_cluster(name, **kwargs):
    """Generator for fixtures: a new cluster in a temporary state dir, torn down afterwards."""
    require_cluster_tools()
    state_dir = tempfile.mkdtemp(prefix="overlay-flannel-%s-" % name)
    c = Cluster(state_dir, **kwargs)
    claims.record(clusters=[state_dir])  # a run killed before its `down` leaves it to the next (support/claims.py)
    try:
        c.up()
        yield c
    finally:
        c.down()
        if not c.leftovers():
            shutil.rmtree(state_dir, ignore_errors=True)
            claims.forget(clusters=[state_dir])


@pytest.fixture(scope="session")
def cluster():
    existing = os.environ.get("OVERLAY_FLANNEL_CLUSTER_STATE")
    if existing:
        require_cluster_tools()
        c = Cluster.load(existing)
        if c.state.get("phase") != "up":
            pytest.fail("cluster in %s is %s, not up" % (existing, c.state.get("phase")))
        yield c
        return
    yield from fresh_cluster("cluster", hosts=int(os.environ.get("OVERLAY_FLANNEL_CLUSTER_HOSTS", "3")),
                             prefix=os.environ.get("OVERLAY_FLANNEL_CLUSTER_PREFIX", ""),
                             underlay=os.environ.get("OVERLAY_FLANNEL_CLUSTER_UNDERLAY", "10.213.0"),
                             etcd_plain=os.environ.get("OVERLAY_FLANNEL_CLUSTER_ETCD_PLAIN", "") not in ("", "0"))


@pytest.fixture(scope="module")
def converged(cluster):
    """The session cluster converged on the defaults (for the test modules that start from a converged
    overlay): site.yml runs, unless the cluster is exactly as the last default site.yml run left it
    (flannel_helpers.still_converged: every host's flannel files, services, rules and docker0, and etcd)."""
    from cluster.flannel_helpers import ansible_tool, run_playbook, still_converged
    if not ansible_tool("ansible-playbook"):
        pytest.fail("ansible-playbook not installed (make venv)", pytrace=False)
    if not still_converged(cluster):
        run = run_playbook(cluster, "site.yml")
        assert run.rc == 0, run.tail()
    return cluster


@pytest.fixture(scope="module")
def overlay_up(cluster):
    """The session cluster with the overlay up in whatever configuration the file before left it (for a test
    module whose first site.yml run sets a configuration of its own anyway, so that a default run before it
    would be wasted): site.yml (the defaults) runs only when a host has no subnet.env or no active forwarder."""
    from cluster.flannel_helpers import ansible_tool, parallel, run_playbook
    if not ansible_tool("ansible-playbook"):
        pytest.fail("ansible-playbook not installed (make venv)", pytrace=False)
    up = parallel(lambda h: cluster.run(h, "test -s /run/flannel/subnet.env && systemctl is-active -q "
                                           "flannel-forwarder", check=False).returncode == 0, cluster.host_names)
    if not all(up.values()):
        run = run_playbook(cluster, "site.yml")
        assert run.rc == 0, run.tail()
    return cluster


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    """The collection as a user gets it: this checkout's tarball, installed into an empty collections path
    (flannel_helpers.build_and_install); test_site_galaxy.py checks the tarball, `debian13` installs it on
    the Debian 13 controller, from which test_site_mixed.py runs site.yml."""
    from cluster.flannel_helpers import ansible_tool, build_and_install
    if not ansible_tool("ansible-galaxy") or not ansible_tool("ansible-playbook"):
        pytest.fail("ansible-galaxy/ansible-playbook not installed (make venv)", pytrace=False)
    return build_and_install(tmp_path_factory.mktemp("galaxy"))


@pytest.fixture(scope="session")
def debian13(built, tmp_path_factory):
    """The Debian 13 controller (harness/controller.py: Python 3.13, ansible-core 2.21, entered with chroot
    in the root network namespace; make test builds it in its set-up, else it is built here): `built`'s
    tarball installed by that controller's ansible-galaxy into another empty collections path.
    (its ansible-playbook, (tarball, collections, work, env) as `built`)."""
    from cluster.flannel_helpers import install_tarball
    from cluster.harness import controller
    require_cluster_tools()
    ctl = controller.ensure_controller()
    bindir = os.path.join(ctl.venv("2.21"), "bin")
    installed = install_tarball(os.path.join(bindir, "ansible-galaxy"), built[0], tmp_path_factory.mktemp("debian13"))
    return os.path.join(bindir, "ansible-playbook"), installed
