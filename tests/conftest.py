"""Make the repository importable as the collection overlay.flannel, for every test.

Ansible finds collections as ansible_collections/<namespace>/<name>; a symlink
tree under .cache/ points that path at this checkout, so tests, ansible-playbook
and the forwarder all import the very same module_utils files.
"""

import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS = os.path.join(REPO, ".cache", "collections")


def _link_collection():
    parent = os.path.join(COLLECTIONS, "ansible_collections", "overlay")
    link = os.path.join(parent, "flannel")
    os.makedirs(parent, exist_ok=True)
    if os.path.realpath(link) != REPO:
        tmp = link + ".%d" % os.getpid()
        os.symlink(REPO, tmp)
        os.replace(tmp, link)


_link_collection()
if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)
os.environ["ANSIBLE_COLLECTIONS_PATH"] = COLLECTIONS
for path in (os.path.join(REPO, "forwarder"), os.path.join(REPO, "tests")):
    if path not in sys.path:
        sys.path.insert(0, path)


# --- the time ledger (tests/support/ledger.py): one entry per test, setup and teardown included -----------
_DURATIONS = {}
_IN_WORKER = []  # set in a pytest-xdist worker: the controller, which sees every report, records the tests


def pytest_configure(config):
    if hasattr(config, "workerinput"):
        _IN_WORKER.append(config.workerinput.get("workerid"))


def pytest_sessionstart(session):
    """Before any fixture: remove what an earlier run that was killed left on the machine (support/claims.py)."""
    if not _IN_WORKER and os.geteuid() == 0:
        from support import claims
        claims.reap_dead()


def pytest_sessionfinish(session):
    """This pytest process ends normally (a worker or the controller): whatever it still leaves, it leaves on
    purpose (a cluster given by OVERLAY_FLANNEL_CLUSTER_STATE, its restarted etcd members)."""
    from support import claims
    claims.drop_own()


def pytest_runtest_logreport(report):
    if _IN_WORKER:
        return
    from support import ledger
    seconds, outcome = _DURATIONS.get(report.nodeid, (0.0, "ok"))
    seconds += report.duration
    if report.failed:
        outcome = "failed in %s" % report.when
    elif report.skipped and outcome == "ok":
        outcome = "skipped"
    _DURATIONS[report.nodeid] = (seconds, outcome)
    if report.when == "teardown":
        del _DURATIONS[report.nodeid]
        extra = {}
        worker = getattr(getattr(getattr(report, "node", None), "gateway", None), "id", None)
        if worker:
            extra["worker"] = worker
        ledger.record("test", report.nodeid, seconds, test=report.nodeid, outcome=outcome, **extra)


# --- two workers (make test: pytest -n 2, see tests/support/lanes.py) ----------------------------------------
@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    from support import lanes
    return lanes.scheduler(config, log)


def pytest_collection_modifyitems(config, items):
    if _IN_WORKER:
        from support import lanes
        items[:] = lanes.in_lane_order(items)
