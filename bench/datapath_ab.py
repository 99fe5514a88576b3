"""Two forwarder builds (A, B) against host-gw, interleaved run by run: one TCP stream, 64-byte UDP, CPU per GB.

Run as root, on demand (not a test):

    sudo .venv/bin/python bench/datapath_ab.py --a /tmp/base/forwarder --b forwarder [--rounds 6]

On a shared machine the available CPU changes from one minute to the
next, so figures measured a minute apart are not comparable.  Here every
round measures host-gw, then A, then B (the order rotated from round to
round), each with one TCP stream and then 64-byte UDP datagrams at full
rate (iperf3 -u -b 0 -l 64) for --duration seconds, and the ratios are
taken within a round.  For A and B it also reads the CPU time both
forwarders used during each measurement and divides it by the payload
bytes iperf3 received: CPU seconds per GB moved (lower is better; it
shows the cost of a build even when the pinned core is shared).  --a and
--b are directories holding the ``flannel_forwarder`` package (e.g. a
``git archive`` of an older commit).  Same topology and placement as
bench/datapath.py (namespaces with the given prefix, each simulated host
and its container on one core, nothing outside this machine, processes
stopped by their recorded PIDs, everything removed at the end).
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
from datapath import add_placement_args, cpu_seconds, iperf, placement  # noqa: E402

MEASURES = {
    # name: (iperf3 arguments, unit)
    "tcp1": ([], "Mbit/s"),
    "udp64": (["-u", "-b", "0", "-l", "64"], "kpps"),
}


def run(t, measure: str, duration: int, cpus, procs=()) -> tuple[float, float | None]:
    """(the figure of *measure*, CPU seconds of *procs* per GB of payload received; None without procs)."""
    before = [cpu_seconds(p) for p in procs]
    j = iperf(t, MEASURES[measure][0], duration, cpus)
    used = sum(cpu_seconds(p) - b for p, b in zip(procs, before))
    end = j.get("end", {})
    if measure == "tcp1":
        got = end.get("sum_received", {})
        figure, moved = got.get("bits_per_second", 0) / 1e6, got.get("bytes", 0)
    else:
        s = end.get("sum", {})
        packets = (s.get("packets") or 0) - (s.get("lost_packets") or 0)
        figure, moved = packets / duration / 1e3, packets * 64
    return figure, (used / (moved / 1e9) if procs and moved else None)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--a", required=True, help="directory with the flannel_forwarder package of build A")
    ap.add_argument("--b", required=True, help="directory with the flannel_forwarder package of build B")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--measures", default="tcp1,udp64", help="of: " + ", ".join(MEASURES))
    ap.add_argument("--prefix", default="fab-")
    ap.add_argument("--python", default=sys.executable)
    add_placement_args(ap)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces, TUN)", file=sys.stderr)
        return 2
    measures = [m for m in args.measures.split(",") if m]
    cpus, ccpus = placement(args)
    builds = {"A": os.path.abspath(args.a), "B": os.path.abspath(args.b)}
    t = topology.Topology(args.prefix)
    rows = []  # per round: {measure: {what: (figure, cpu s/GB)}}
    try:
        t.create()
        for r in range(args.rounds):
            order = ["host-gw", "A", "B"]
            k = r % 3
            order = order[k:] + order[:k]
            res = {m: {} for m in measures}
            for what in order:
                if what == "host-gw":
                    t.host_gw(True)
                    for m in measures:
                        res[m][what] = run(t, m, args.duration, ccpus)
                    t.host_gw(False)
                    continue
                topology.FORWARDER_DIR = builds[what]
                fs = [t.start_forwarder(h, cpu=c, python=args.python) for h, c in zip(("h1", "h2"), cpus)]
                try:
                    for m in measures:
                        res[m][what] = run(t, m, args.duration, ccpus, [f.proc for f in fs])
                finally:
                    for f in fs:
                        t.stop(f.proc)
                        t.procs.remove(f.proc)
            rows.append(res)
            for m in measures:
                hg, (a, a_cpu), (b, b_cpu) = res[m]["host-gw"][0], res[m]["A"], res[m]["B"]
                print(f"round {r + 1} {m}: host-gw {hg:.1f}  A {a:.1f} ({a / hg if hg else float('nan'):.3f},"
                      f" {a_cpu or float('nan'):.2f} CPU s/GB)  B {b:.1f} ({b / hg if hg else float('nan'):.3f},"
                      f" {b_cpu or float('nan'):.2f} CPU s/GB)  B/A {b / a if a else float('nan'):.3f}", flush=True)
    finally:
        t.destroy()
    med = statistics.median
    for m in measures:
        per = [row[m] for row in rows]
        ok = [p for p in per if p["A"][0] and p["host-gw"][0]]
        if not ok:
            continue
        print(f"{m} ({MEASURES[m][1]}), medians of {len(ok)} rounds: host-gw {med(p['host-gw'][0] for p in ok):.1f};"
              f" ratio to host-gw A {med(p['A'][0] / p['host-gw'][0] for p in ok):.3f}"
              f" B {med(p['B'][0] / p['host-gw'][0] for p in ok):.3f};"
              f" B/A {med(p['B'][0] / p['A'][0] for p in ok):.3f}"
              f" (rounds {min(p['B'][0] / p['A'][0] for p in ok):.3f}-{max(p['B'][0] / p['A'][0] for p in ok):.3f});"
              f" CPU s/GB A {med(p['A'][1] or 0 for p in ok):.2f} B {med(p['B'][1] or 0 for p in ok):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
