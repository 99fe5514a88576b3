"""Benchmark: the peer table's per-packet cost against the number of peers, and the cost of a burst of updates.

Times what the data path really calls (forwarder/flannel_forwarder/udp/loops.py):
- TX, once per packet read from the TUN: ``PeerTable.lookup(dst)`` with the
  destination as a 32-bit int (in ``DataPath.route_tx``);
- RX, once per received datagram (batch): ``PeerTable.sender_subnets(addr[0])``
  then the inner source checked against the (network, mask) pairs it returns
  (``routes.source_allowed``, in udp.loops.check_datagrams; the numpy way
  checks a batch from a one-subnet sender with ``src & mask == net``).
with 10, 100, 1000 and 10000 peers (one /24 each in a /8, the common single
SubnetLen), destinations spread over all peers. Also: the time to apply N
single-subnet updates one by one (what the lease watch does per event) and as
one batch. Prints ns per lookup and the ratio to 10 peers; asserts only that
every lookup finds its peer. Run: .venv/bin/python bench/peer_table.py [--repeat 5]
"""

import argparse
import ipaddress
import os
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "forwarder"))

from flannel_forwarder.routes import Peer, PeerTable, source_allowed  # noqa: E402

SIZES = (10, 100, 1000, 10000)


def subnet(i):
    # /24s in 10.0.0.0/8, skipping 10.0.0.0/24 (the SubnetMin rule); 10000 fit.
    i += 1
    return ipaddress.IPv4Network("10.%d.%d.0/24" % (i // 256, i % 256))


def public_ip(i):
    return "192.168.%d.%d" % (i // 250, 1 + i % 250)


def table_of(n):
    return PeerTable({subnet(i): Peer(public_ip(i), 8285) for i in range(n)})


def probes(n, count=4096):
    """Destinations (ints) and (sender, inner source) pairs spread over every peer, in a scrambled order."""
    step = 7919  # a prime: walks every peer in a non-sequential order
    idx = [(k * step) % n for k in range(count)]
    dsts = [int(subnet(i).network_address) + 1 + (k % 250) for k, i in enumerate(idx)]
    rx = [(public_ip(i), int(subnet(i).network_address) + 2 + (k % 250)) for k, i in enumerate(idx)]
    return dsts, rx


def time_tx(table, dsts, loops):
    lookup = table.lookup
    t0 = time.perf_counter_ns()
    for _loop in range(loops):
        for d in dsts:
            if lookup(d) is None:
                raise AssertionError("lookup missed %d" % d)
    return (time.perf_counter_ns() - t0) / (loops * len(dsts))


def time_rx(table, rx, loops):
    sender_subnets = table.sender_subnets
    t0 = time.perf_counter_ns()
    for _loop in range(loops):
        for ip, src in rx:
            nets = sender_subnets(ip)
            if nets is None:
                raise AssertionError("unknown sender %s" % ip)
            if not source_allowed(nets, src):
                raise AssertionError("spoof check refused %s from %s" % (src, ip))
    return (time.perf_counter_ns() - t0) / (loops * len(rx))


def time_loop_overhead(dsts, loops):
    """The same loop with a constant function: what the interpreter costs, to subtract by eye."""
    def f(d):
        return d

    t0 = time.perf_counter_ns()
    for _loop in range(loops):
        for d in dsts:
            if f(d) is None:
                raise AssertionError
    return (time.perf_counter_ns() - t0) / (loops * len(dsts))


def time_updates(n):
    """Seconds to add n peers one update() at a time to an empty table, and with one apply() (one swap)."""
    items = [(subnet(i), Peer(public_ip(i), 8285)) for i in range(n)]
    table = PeerTable()
    t0 = time.perf_counter()
    for net, peer in items:
        table.update(net, peer)
    one_by_one = time.perf_counter() - t0
    assert len(table) == n
    batch = None
    if hasattr(PeerTable, "apply"):
        table = PeerTable()
        t0 = time.perf_counter()
        table.apply(items)
        batch = time.perf_counter() - t0
        assert len(table) == n
    return one_by_one, batch


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="rounds; medians are printed")
    parser.add_argument("--loops", type=int, default=50, help="passes over 4096 probes per round")
    args = parser.parse_args()
    tables = {n: table_of(n) for n in SIZES}
    probe = {n: probes(n) for n in SIZES}
    tx = {n: [] for n in SIZES}
    rx = {n: [] for n in SIZES}
    base = []
    for _rep in range(args.repeat):
        for n in SIZES:  # interleaved, so that machine noise hits every size alike
            tx[n].append(time_tx(tables[n], probe[n][0], args.loops))
            rx[n].append(time_rx(tables[n], probe[n][1], args.loops))
        base.append(time_loop_overhead(probe[10][0], args.loops))
    med = statistics.median
    print("peer table lookups, medians of %d rounds of %d lookups (loop overhead alone: %.0f ns)"
          % (args.repeat, args.loops * 4096, med(base)))
    print("%8s %14s %8s %16s %8s" % ("peers", "TX lookup ns", "ratio", "RX sender+src ns", "ratio"))
    for n in SIZES:
        print("%8d %14.0f %8.2f %16.0f %8.2f" % (n, med(tx[n]), med(tx[n]) / med(tx[10]),
                                                 med(rx[n]), med(rx[n]) / med(rx[10])))
    for n in (1000,):
        runs = [time_updates(n) for _rep in range(3)]
        one = med(r[0] for r in runs)
        line = "updates: %d peers added one update() at a time: %.1f ms (%.1f us each)" % (n, one * 1e3, one * 1e6 / n)
        if runs[0][1] is not None:
            b = med(r[1] for r in runs)
            line += "; as one apply(): %.1f ms" % (b * 1e3)
        print(line)


if __name__ == "__main__":
    main()
