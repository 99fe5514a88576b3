#!/usr/bin/env python3
"""Throughput of the forwarder against plain kernel routing ("host-gw"), same run, same namespaces.

Run as root, on demand (not a test):

    sudo .venv/bin/python bench/datapath.py [--duration 5] [--repeat 3] [--modes offload,no-offload]

Builds two hosts + two containers as network namespaces (prefix fbench-,
addresses 10.213.0.x underlay and 10.5.x.x overlay, nothing outside this
machine) and gives each simulated host one core: its forwarder and its
container's iperf3 and ping run there (for host-gw too; with
--float-containers only the forwarders are pinned, the containers' iperf3
goes wherever the scheduler puts it, and single runs vary a lot more).
Measures with iperf3 between the containers: TCP 1 stream, TCP 4
streams, 64-byte UDP packet rate, and ping RTT.  Prints Mbit/s and the
ratio to host-gw.  Tears everything down (processes by recorded PID, then
the namespaces).

The forwarder's fast paths need numpy (requirements/forwarder.txt); the
"h1:" line shows "numpy": true/false for the interpreter given by --python.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration", "forwarder_datapath"))

from topology import HOSTS, Topology  # noqa: E402

PROBE = os.path.join(HERE, "..", "tests", "integration", "forwarder_datapath", "probe.py")
C2_IP = HOSTS["h2"][3]


def iperf(t: Topology, args: list[str], duration: int, cpus: tuple[int, int] | None = None) -> dict:
    """One iperf3 run from c1 to c2; *cpus*: the cores of h1 and h2, where c1's and c2's iperf3 then run."""
    c1_cpu, c2_cpu = cpus if cpus else (None, None)
    srv = t.spawn("c2", "iperf3", "-s", "-1", "-J", cpu=c2_cpu, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                  text=True)
    time.sleep(0.4)
    cli = t.spawn("c1", "iperf3", "-c", C2_IP, "-t", str(duration), "-J", *args, cpu=c1_cpu,
                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = cli.communicate(timeout=duration + 30)
        try:
            srv.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            pass
    except subprocess.TimeoutExpired:
        out, err = "", "iperf3 client timed out"
    finally:
        for p in (cli, srv):
            t.stop(p)
            t.procs.remove(p)
    try:
        return json.loads(out)
    except json.JSONDecodeError:
        return {"error": (out + err)[-500:]}


def tcp_mbps(t: Topology, args: list[str], duration: int, repeat: int, cpus=None) -> tuple[float, list]:
    """Median Mbit/s received over *repeat* runs (this machine is shared: single runs vary)."""
    runs = []
    for _ in range(repeat):
        j = iperf(t, args, duration, cpus)
        runs.append(j.get("end", {}).get("sum_received", {}).get("bits_per_second", 0) / 1e6)
    return statistics.median(runs), [round(r) for r in runs]


def measure(t: Topology, duration: int, label: str, repeat: int = 1, tcp1_only: bool = False, cpus=None) -> dict:
    res = {}
    res["tcp1"], res["tcp1_runs"] = tcp_mbps(t, [], duration, repeat, cpus)
    if tcp1_only:
        res["tcp4"] = res["udp64_kpps"] = 0.0
        res["ping_ms"] = None
        print(f"  [{label}] tcp1={res['tcp1']:.3f}, tcp1_runs={res['tcp1_runs']}", flush=True)
        return res
    res["tcp4"], res["tcp4_runs"] = tcp_mbps(t, ["-P", "4"], duration, repeat, cpus)
    j = iperf(t, ["-u", "-b", "0", "-l", "64"], duration, cpus)
    s = j.get("end", {}).get("sum", {})
    got = (s.get("packets") or 0) - (s.get("lost_packets") or 0)
    res["udp64_kpps"] = got / duration / 1e3
    res["udp64_loss_pct"] = s.get("lost_percent")
    pin = ["taskset", "-c", str(cpus[0])] if cpus else []
    p = json.loads(t.exec("c1", *pin, sys.executable, PROBE, "ping", C2_IP, "20", "0.05").stdout)
    res["ping_ms"] = p["rtt_ms_median"]
    res["ping_received"] = p["received"]
    print(f"  [{label}] " + ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                                       for k, v in res.items()), flush=True)
    return res


def add_placement_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--cpus", default="0,1", help="the cores of h1,h2: their forwarders and containers run there")
    ap.add_argument("--float-containers", action="store_true",
                    help="let the containers' iperf3 run on any core (only the forwarders are pinned)")


def placement(args) -> tuple[list[int], tuple[int, ...] | None]:
    """(the forwarders' cores, the containers' cores or None when they float) from add_placement_args's options."""
    cpus = [int(c) for c in args.cpus.split(",")]
    return cpus, None if args.float_containers else tuple(cpus)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--prefix", default="fbench-")
    ap.add_argument("--modes", default="offload,no-offload")
    ap.add_argument("--repeat", type=int, default=1, help="TCP runs per figure (the median is reported)")
    ap.add_argument("--python", default=sys.executable, help="interpreter that runs the forwarders")
    ap.add_argument("--threads", action="store_true", help="run each forwarder with --threads")
    ap.add_argument("--tcp1-only", action="store_true", help="measure only one TCP stream (quicker)")
    add_placement_args(ap)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces, TUN)", file=sys.stderr)
        return 2
    cpus, ccpus = placement(args)
    t = Topology(args.prefix)
    results = {}
    try:
        t.create()
        print(f"host-gw (kernel routing between the host namespaces), {args.duration}s per iperf run", flush=True)
        t.host_gw(True)
        results["host-gw"] = measure(t, args.duration, "host-gw", args.repeat, args.tcp1_only, ccpus)
        t.host_gw(False)
        for mode in [m for m in args.modes.split(",") if m]:
            offload = mode == "offload"
            print(f"forwarder, {mode}", flush=True)
            extra = ["--threads"] if args.threads else []
            f1 = t.start_forwarder("h1", offload=offload, cpu=cpus[0], python=args.python, extra_args=extra)
            f2 = t.start_forwarder("h2", offload=offload, cpu=cpus[1], python=args.python, extra_args=extra)
            print(f"  h1: {json.dumps(f1.info)}", flush=True)
            results[mode] = measure(t, args.duration, mode, args.repeat, args.tcp1_only, ccpus)
            for f in (f1, f2):
                t.stop(f.proc)
                t.procs.remove(f.proc)
    finally:
        t.destroy()
    base = results.get("host-gw", {})
    print()
    print(f"{'':12} {'TCP x1 Mbit/s':>14} {'ratio':>6} {'TCP x4 Mbit/s':>14} {'ratio':>6} "
          f"{'UDP64 kpps':>10} {'ratio':>6} {'ping ms':>8}")
    for name, r in results.items():
        def ratio(k):
            return r[k] / base[k] if base.get(k) else float("nan")
        print(f"{name:12} {r['tcp1']:14.0f} {ratio('tcp1'):6.3f} {r['tcp4']:14.0f} {ratio('tcp4'):6.3f} "
              f"{r['udp64_kpps']:10.1f} {ratio('udp64_kpps'):6.3f} {r['ping_ms'] or float('nan'):8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
