"""One TCP stream: host-gw vs two forwarder builds (A, B), interleaved run by run.

Run as root, on demand (not a test):

    sudo .venv/bin/python bench/datapath_ab.py --a /tmp/base/forwarder --b forwarder [--rounds 6]

On a shared machine the available CPU changes from one minute to the
next, so figures measured a minute apart are not comparable.  Here every
round measures host-gw, then A, then B (each --duration seconds, the order
rotated from round to round), and the ratios are taken within a round.
--a and --b are directories holding the ``flannel_forwarder`` package
(e.g. a ``git archive`` of an older commit).  Same topology as
bench/datapath.py (namespaces with the given prefix, nothing outside this
machine, processes stopped by their recorded PIDs, everything removed at
the end).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration", "forwarder_datapath"))

import topology  # noqa: E402
from datapath import add_placement_args, iperf, placement  # noqa: E402


def mbps(t, duration: int, cpus=None) -> float:
    j = iperf(t, [], duration, cpus)
    return j.get("end", {}).get("sum_received", {}).get("bits_per_second", 0) / 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--a", required=True, help="directory with the flannel_forwarder package of build A")
    ap.add_argument("--b", required=True, help="directory with the flannel_forwarder package of build B")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--prefix", default="fab-")
    ap.add_argument("--python", default=sys.executable)
    add_placement_args(ap)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces, TUN)", file=sys.stderr)
        return 2
    cpus, ccpus = placement(args)
    builds = {"A": os.path.abspath(args.a), "B": os.path.abspath(args.b)}
    t = topology.Topology(args.prefix)
    rows = []
    try:
        t.create()
        for r in range(args.rounds):
            order = ["host-gw", "A", "B"]
            k = r % 3
            order = order[k:] + order[:k]
            res = {}
            for what in order:
                if what == "host-gw":
                    t.host_gw(True)
                    res[what] = mbps(t, args.duration, ccpus)
                    t.host_gw(False)
                    continue
                topology.FORWARDER_DIR = builds[what]
                fs = [t.start_forwarder(h, cpu=c, python=args.python) for h, c in zip(("h1", "h2"), cpus)]
                try:
                    res[what] = mbps(t, args.duration, ccpus)
                finally:
                    for f in fs:
                        t.stop(f.proc)
                        t.procs.remove(f.proc)
            hg = res["host-gw"] or float("nan")
            row = (res["host-gw"], res["A"], res["B"], res["A"] / hg, res["B"] / hg)
            rows.append(row)
            print(f"round {r + 1}: host-gw {row[0]:.0f}  A {row[1]:.0f} ({row[3]:.3f})  B {row[2]:.0f} ({row[4]:.3f})"
                  f"  B/A {row[2] / row[1] if row[1] else float('nan'):.3f}", flush=True)
    finally:
        t.destroy()
    if rows:
        med = statistics.median
        print(f"median ratio to host-gw: A {med(r[3] for r in rows):.3f}  B {med(r[4] for r in rows):.3f}"
              f"  (B/A per round, median {med(r[2] / r[1] for r in rows if r[1]):.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
