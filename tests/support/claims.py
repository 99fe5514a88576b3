"""What the test harnesses put on the machine outside their own process, recorded per owning process, so that
the next run removes what a run that was killed left behind.

A run stopped from outside (a CI job's time limit, a SIGKILL, a machine whose session ends) runs no
finalizer: its network namespaces stay, with the links and addresses in them and the veths they hold in
the root namespace, and so do the daemons it started in sessions of their own (etcd, the test cluster's
hosts). The next run then meets an address that is taken (a lab's controller address, the cluster's
underlay) and fails in set-up, naming the leftovers but not removing them.

So each process that creates such a thing records it first, in /run/overlay-flannel-tests/<pid>.json:
the namespaces and root-namespace links by name, the processes by PID and start time, the test clusters
by state directory. `reap_dead()` (run when a pytest session starts, and when a benchmark builds its
topology) removes, for every record whose process is gone, what it lists: the processes by their recorded
PID (only while that PID still has the recorded start time) and any process still inside a recorded
namespace, then the namespaces and links, and `down` for a cluster. A record of a process that still runs
(another run beside this one) is left alone. /run is a tmpfs, like /run/netns: both end at a reboot.

A process that ends normally drops its record (`drop_own()`, at the end of every pytest process): what it
leaves then, it left on purpose. The cluster harness's command line records nothing (`disable()`): the
cluster it brings up outlives it by design, until its `down`.
"""

import fcntl
import json
import os
import shutil
import subprocess
import threading

from .procs import pid_alive, proc_start_time, stop_recorded

DIR = "/run/overlay-flannel-tests"
_lock = threading.Lock()
_enabled = [True]


def disable():
    """Record nothing from this process on (a command whose creations outlive it on purpose)."""
    _enabled[0] = False


def drop_own():
    """This process ends normally: drop its record, so that what it leaves is not taken for a killed run's."""
    with _lock:
        try:
            os.unlink(_path(os.getpid()))
        except OSError:
            pass


def _path(pid):
    return os.path.join(DIR, "%d.json" % pid)


def _read(path):
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def _write(path, rec):
    os.makedirs(DIR, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(rec, fh)
    os.replace(tmp, path)


def _update(change):
    if os.geteuid() != 0 or not _enabled[0]:  # without root a run makes no namespace, and /run is not ours
        return
    with _lock:
        pid = os.getpid()
        path = _path(pid)
        rec = _read(path)
        if not rec or rec.get("start_time") != proc_start_time(pid):  # none yet, or one of a dead earlier PID
            rec = {"pid": pid, "start_time": proc_start_time(pid)}
        for key in ("netns", "links", "procs", "clusters"):
            rec.setdefault(key, [])
        change(rec)
        rec["procs"] = [p for p in rec["procs"] if pid_alive(*p)]
        if any(rec[key] for key in ("netns", "links", "procs", "clusters")):
            _write(path, rec)
        else:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass


def record(netns=(), links=(), pids=(), clusters=()):
    """Record, before or right after creating them, namespaces and root-namespace links (names), processes
    (PIDs) and test clusters (state dirs) that this process owns."""
    def change(rec):
        rec["netns"] += [n for n in netns if n not in rec["netns"]]
        rec["links"] += [n for n in links if n not in rec["links"]]
        rec["procs"] += [[p, proc_start_time(p)] for p in pids]
        rec["clusters"] += [d for d in clusters if d not in rec["clusters"]]
    _update(change)


def forget(netns=(), links=(), pids=(), clusters=()):
    """Drop records of what this process removed itself."""
    def change(rec):
        rec["netns"] = [n for n in rec["netns"] if n not in netns]
        rec["links"] = [n for n in rec["links"] if n not in links]
        rec["procs"] = [p for p in rec["procs"] if p[0] not in pids]
        rec["clusters"] = [d for d in rec["clusters"] if d not in clusters]
    _update(change)


def _netns_pids(name):
    res = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True, check=False)
    return [int(p) for p in res.stdout.split() if p.isdigit()] if res.returncode == 0 else []


def reap(rec, log=print):
    """Remove what one record lists (its owner is gone)."""
    procs = [tuple(p) for p in rec.get("procs", [])]
    for name in rec.get("netns", []):
        procs += [(p, proc_start_time(p)) for p in _netns_pids(name)]
    stop_recorded(procs)
    for state_dir in rec.get("clusters", []):
        if os.path.exists(os.path.join(state_dir, "state.json")):
            from cluster.harness.cluster import Cluster  # pylint: disable=import-outside-toplevel
            try:
                cluster = Cluster.load(state_dir)
                cluster.down(force=True)
                if not cluster.leftovers():
                    shutil.rmtree(state_dir, ignore_errors=True)
            except Exception as exc:  # pylint: disable=broad-except  # the rest is still removed
                log("claims: down of the cluster in %s failed: %s" % (state_dir, exc))
    for name in rec.get("netns", []):
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
    for name in rec.get("links", []):
        subprocess.run(["ip", "link", "del", name], capture_output=True, check=False)


def reap_dead(log=print):
    """Remove what every record of a process that is gone lists, then the record; returns how many. Two runs
    that start together (make test's main pytest and its checks lane) take turns."""
    if not os.path.isdir(DIR):
        return 0
    with open(os.path.join(DIR, ".reap.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _reap_dead(log)


def _reap_dead(log):
    names = sorted(os.listdir(DIR))
    reaped = 0
    for name in names:
        path = os.path.join(DIR, name)
        if not name.endswith(".json"):
            continue
        rec = _read(path)
        if rec is None:
            continue
        if pid_alive(rec.get("pid"), rec.get("start_time")):
            continue
        log("claims: removing what the test run of pid %s left behind: %s" % (rec.get("pid"), ", ".join(
            "%s %s" % (key, rec[key]) for key in ("netns", "links", "procs", "clusters") if rec.get(key))))
        reap(rec, log)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        reaped += 1
    return reaped
