"""Benchmark: how long site.yml takes on a cluster of stock hosts, against a ten-task ping play of the same run.

Brings up N hosts with the test harness (tests/cluster/harness, root; a plain etcd by default, --tls for the
3-member TLS + auth cluster), then times, in this order: a ten-task `ansible.builtin.ping` play (the
reference: what any play costs per task on these hosts), a fresh `site.yml`, a converged `site.yml` (changed
must be 0), `site.yml --check --diff` on the converged cluster, and the ping play again. Prints seconds, task
results per host (ok + changed + skipped of the recap), the ratios to the ping play (the mean of both of its
runs) and the ten costliest tasks of the converged run (from a callback of its own, bench/callback_plugins).
The release cache of the controller is the user's (warm after the first run of the tests or of this script).
Asserts nothing but that the runs succeed; tears the cluster down.

Run (root): .venv/bin/python bench/converge.py [--hosts 3] [--tls] [--rounds 1] [--keep]
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))
# imported for its side effects: links the collection into .cache/collections and sys.path
import conftest  # noqa: E402,F401  # pylint: disable=unused-import

from cluster.harness.cluster import Cluster  # noqa: E402

NETWORK = "10.5.0.0/16"
RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)\s+skipped=(\d+)", re.M)
PING_PLAY = """- name: Ten pings
  hosts: flannel
  gather_facts: false
  tasks:
""" + "".join("    - name: Ping %d\n      ansible.builtin.ping:\n" % i for i in range(10))


def play(cluster, playbook, *args, times_file=None):
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_HOST_KEY_CHECKING="0", ANSIBLE_RETRY_FILES_ENABLED="0")
    if times_file:
        env.update(ANSIBLE_CALLBACK_PLUGINS=os.path.join(REPO, "bench", "callback_plugins"),
                   ANSIBLE_CALLBACKS_ENABLED="task_times", OVERLAY_FLANNEL_TASK_TIMES=times_file)
    cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", cluster.inventory_path, playbook,
           "-e", "flannel_network=%s" % NETWORK] + list(args)
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, check=False)
    seconds = time.monotonic() - start
    if proc.returncode != 0:
        sys.exit("%s failed (rc %d):\n%s" % (" ".join(cmd), proc.returncode, (proc.stdout + proc.stderr)[-4000:]))
    recap = {m.group(1): dict(ok=int(m.group(2)), changed=int(m.group(3)), skipped=int(m.group(6)))
             for m in RECAP.finditer(proc.stdout)}
    return seconds, recap


def results_per_host(recap):
    return {h: r["ok"] + r["changed"] + r["skipped"] for h, r in recap.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--hosts", type=int, default=3)
    ap.add_argument("--tls", action="store_true", help="the 3-member TLS + auth etcd instead of one plain member")
    ap.add_argument("--rounds", type=int, default=1, help="converged runs to time (the median is reported)")
    ap.add_argument("--keep", action="store_true", help="leave the cluster up")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/converge.py brings up test hosts: run it as root")
    state = tempfile.mkdtemp(prefix="overlay-flannel-bench-")
    cluster = Cluster(state, hosts=args.hosts, prefix="bc-", underlay="10.217.0", etcd_plain=not args.tls)
    site = os.path.join(REPO, "playbooks", "site.yml")
    with tempfile.TemporaryDirectory() as tmp:
        pings = os.path.join(tmp, "ping10.yml")
        with open(pings, "w") as fh:
            fh.write(PING_PLAY)
        times = os.path.join(tmp, "task_times.json")
        fresh_times_file = os.path.join(tmp, "fresh_task_times.json")
        try:
            cluster.up()
            ping_a = play(cluster, pings)[0]
            fresh, fresh_recap = play(cluster, site, times_file=fresh_times_file)
            converged = []
            for _round in range(args.rounds):
                seconds, recap = play(cluster, site, times_file=times)
                if any(r["changed"] for r in recap.values()):
                    sys.exit("the converged run changed something: %s" % recap)
                converged.append(seconds)
            check, check_recap = play(cluster, site, "--check", "--diff")
            ping_b = play(cluster, pings)[0]
            with open(times) as fh:
                task_times = json.load(fh)
            with open(fresh_times_file) as fh:
                fresh_times = json.load(fh)
        finally:
            if not args.keep and cluster.down() == [] and not cluster.leftovers():
                shutil.rmtree(state, ignore_errors=True)
    ping = statistics.mean([ping_a, ping_b])
    conv = statistics.median(converged)
    kind = "TLS + auth 3-member" if args.tls else "plain"
    print("site.yml on %d stock hosts, %s etcd (%s)" % (args.hosts, kind, time.strftime("%Y-%m-%d %H:%M")))
    print("  ten-ping play (reference): %.1f s and %.1f s, mean %.1f s" % (ping_a, ping_b, ping))
    print("  fresh site.yml:        %5.1f s = %.2f x the ping play, task results per host %s"
          % (fresh, fresh / ping, results_per_host(fresh_recap)))
    print("  converged site.yml:    %5.1f s = %.2f x the ping play (median of %d: %s), task results per host %s"
          % (conv, conv / ping, len(converged), ", ".join("%.1f" % s for s in converged), results_per_host(recap)))
    print("  --check --diff:        %5.1f s = %.2f x the ping play, task results per host %s"
          % (check, check / ping, results_per_host(check_recap)))
    for title, times_of in (("the fresh run", fresh_times), ("the last converged run", task_times)):
        print("  the ten costliest tasks of %s (wall seconds of each task, all hosts at once):" % title)
        for seconds, name in sorted(((s, n) for n, s in times_of.items()), reverse=True)[:10]:
            print("    %5.2f  %s" % (seconds, name))
    if args.keep:
        print("cluster left up: %s (tests/cluster/harness/cluster.py down --state-dir %s)" % (state, state))


if __name__ == "__main__":
    main()
