"""Fixtures for end-to-end tests on the systemd-nspawn test cluster.

`cluster` (session scope): a Cluster with OVERLAY_FLANNEL_CLUSTER_HOSTS hosts
(default 3) brought up in a temporary state dir and torn down at the end; or,
when OVERLAY_FLANNEL_CLUSTER_STATE names the state dir of a cluster already up
(`tests/cluster/harness/cluster.py up --state-dir DIR`), that cluster, left up.
Tests that use it should carry the `cluster` marker.
"""

import os
import shutil
import tempfile

import pytest

from cluster.harness.cluster import Cluster


def cluster_skip_reason():
    if os.geteuid() != 0:
        return "the test cluster needs root"
    for tool in ("systemd-nspawn", "debootstrap", "ip", "nsenter", "ssh", "ssh-keygen", "etcd"):
        if shutil.which(tool) is None:
            return "%s not installed" % tool
    if not os.path.isdir("/sys/fs/cgroup/systemd"):
        return "no cgroup v1 name=systemd hierarchy"
    return None


@pytest.fixture(scope="session")
def cluster():
    reason = cluster_skip_reason()
    if reason:
        pytest.fail("the test cluster cannot run here: %s" % reason, pytrace=False)
    existing = os.environ.get("OVERLAY_FLANNEL_CLUSTER_STATE")
    if existing:
        c = Cluster.load(existing)
        if c.state.get("phase") != "up":
            pytest.fail("cluster in %s is %s, not up" % (existing, c.state.get("phase")))
        yield c
        return
    state_dir = tempfile.mkdtemp(prefix="overlay-flannel-cluster-")
    c = Cluster(state_dir, hosts=int(os.environ.get("OVERLAY_FLANNEL_CLUSTER_HOSTS", "3")))
    try:
        c.up()
        yield c
    finally:
        c.down()
        if not c.leftovers():
            shutil.rmtree(state_dir, ignore_errors=True)
