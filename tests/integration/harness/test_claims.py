"""support/claims.py against the real thing: a test run killed with SIGKILL (no finalizer runs) leaves a
network namespace with a process in it, a veth in the root namespace and a daemon in a session of its own;
reap_dead() leaves them alone while that run lives, and removes every one of them once it is gone."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from support import claims
from support.procs import pid_alive, proc_start_time

if os.geteuid() != 0:
    pytest.fail("needs root: network namespaces", pytrace=False)

TESTS = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# A run of the harness, cut short: it records, creates, and is then killed by the test.
RUN = r"""
import json, signal, subprocess, sys, time
sys.path.insert(0, sys.argv[3])
from support import claims
ns, link = sys.argv[1], sys.argv[2]
claims.record(netns=[ns])
subprocess.run(["ip", "netns", "add", ns], check=True)
claims.record(links=[link])
subprocess.run(["ip", "link", "add", link, "type", "veth", "peer", "name", "p0", "netns", ns], check=True)
inside = subprocess.Popen(["ip", "netns", "exec", ns, "sleep", "600"])  # not recorded: found by its namespace
daemon = subprocess.Popen(["sleep", "600"], start_new_session=True)
claims.record(pids=[daemon.pid])
time.sleep(0.2)  # `ip netns exec` has entered the namespace
print(json.dumps({"inside": inside.pid, "daemon": daemon.pid}), flush=True)
signal.pause()  # until the test kills it
"""


def exists(kind, name):
    cmd = ["ip", "netns", "pids", name] if kind == "netns" else ["ip", "link", "show", name]
    return subprocess.run(cmd, capture_output=True, check=False).returncode == 0


def test_what_a_killed_run_left_is_removed_and_a_live_run_is_left_alone():
    ns, link = "clm%d" % os.getpid(), "clm%dc" % os.getpid()
    run = subprocess.Popen([sys.executable, "-c", RUN, ns, link, TESTS], stdout=subprocess.PIPE, text=True)
    try:
        pids = json.loads(run.stdout.readline())
        procs = [(pids[k], proc_start_time(pids[k])) for k in ("inside", "daemon")]
        assert all(pid_alive(*p) for p in procs) and exists("netns", ns) and exists("link", link)
        with open(os.path.join(claims.DIR, "%d.json" % run.pid)) as fh:
            rec = json.load(fh)
        assert (rec["netns"], rec["links"], [p[0] for p in rec["procs"]]) == ([ns], [link], [pids["daemon"]])

        logged = []
        claims.reap_dead(log=logged.append)  # the run lives: its things stay
        assert not any("pid %d " % run.pid in line for line in logged)
        assert all(pid_alive(*p) for p in procs) and exists("netns", ns) and exists("link", link)

        run.send_signal(signal.SIGKILL)
        run.wait(10)
        assert all(pid_alive(*p) for p in procs) and exists("netns", ns) and exists("link", link)  # left behind

        assert claims.reap_dead(log=logged.append) >= 1
        assert any("pid %d " % run.pid in line and ns in line for line in logged), logged
        deadline = time.monotonic() + 5
        while any(pid_alive(*p) for p in procs) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(pid_alive(*p) for p in procs)
        assert not exists("netns", ns) and not exists("link", link)
        assert not os.path.exists(os.path.join(claims.DIR, "%d.json" % run.pid))
    finally:
        if run.poll() is None:
            run.kill()
            run.wait(10)
        claims.reap_dead()


def test_a_run_that_ends_normally_drops_its_record():
    """What a run leaves on purpose (a cluster it was given, left up) is not taken for a killed run's."""
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from support import claims; "
            "claims.record(links=['clmkept']); print(claims.os.path.exists(claims._path(claims.os.getpid())), "
            "flush=True); claims.drop_own(); print(claims.os.path.exists(claims._path(claims.os.getpid())))")
    out = subprocess.run([sys.executable, "-c", code, TESTS], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "False"]
