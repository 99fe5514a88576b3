"""Benchmark: subnet lease acquisition rate and etcd round trips per acquisition.

Starts its own etcd (Debian's etcd-server) on 127.0.0.1, seeds a network that
fits the hosts, and leases one subnet per host through FlannelStore.acquire,
the code path of the overlay.flannel.subnet module. Prints figures; asserts
nothing. Run: .venv/bin/python bench/subnet_acquire.py [--hosts 1000] [--threads 16]

--cluster: the same acquisition against a 3-member etcd cluster with TLS and
authentication (tests/support/etcd_cluster.py, on loopback), and, in the same
run as the reference, against one plain etcd member. Each simulated host is
one module run: its own EtcdClient built from the module's etcd options (the
`flannel` user, the CA and the client certificate; so its own TLS connection
and its own authentication), one FlannelStore.acquire, close. All hosts run
at once by default (--concurrency: at most that many at a time), as threads
spread over --procs processes. Prints total time, acquisitions/s, etcd round
trips per lease, lost races (retried transactions) and errors; then checks
that every host holds exactly one lease and the subnets are distinct, and
exits 1 on any error or check failure.
Run: .venv/bin/python bench/subnet_acquire.py --cluster [--hosts 1000] [--procs 2] [--concurrency N]
"""

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import threading
import time
import traceback

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))
# imported for its side effects: links the collection into .cache/collections and sys.path
import conftest  # noqa: E402,F401  # pylint: disable=unused-import

from ansible_collections.overlay.flannel.plugins.module_utils.etcd_client import DEFAULT_TIMEOUT, EtcdClient  # noqa: E402
from ansible_collections.overlay.flannel.plugins.module_utils.netconfig import dumps, from_dict  # noqa: E402
from ansible_collections.overlay.flannel.plugins.module_utils.store import FlannelStore  # noqa: E402
from support.etcd_server import EtcdServer  # noqa: E402


def host_ip(i):
    return "10.200.%d.%d" % (i // 250, 1 + i % 250)


def seed(endpoint, prefix, hosts, **client_args):
    # /24 subnets in a network with room for `hosts` of them (SubnetMin skips the first).
    prefixlen = 24 - hosts.bit_length()
    cfg = from_dict({"Network": "10.0.0.0/%d" % prefixlen, "SubnetLen": 24})
    client = EtcdClient([endpoint] if isinstance(endpoint, str) else endpoint, **client_args)
    store = FlannelStore(client, prefix)
    store.write_config(dumps(cfg.to_dict()), store.snapshot())
    client.close()
    return cfg


def sequential(endpoint, prefix, hosts):
    client = EtcdClient([endpoint])
    store = FlannelStore(client, prefix)
    per_window = []
    window_rt, window_t0 = 0, time.perf_counter()
    t0 = time.perf_counter()
    for i in range(hosts):
        before = client.round_trips
        store.acquire(host_ip(i))
        window_rt += client.round_trips - before
        if (i + 1) % (hosts // 4) == 0:
            now = time.perf_counter()
            per_window.append((i + 1, window_rt / (hosts // 4), (hosts // 4) / (now - window_t0)))
            window_rt, window_t0 = 0, now
    elapsed = time.perf_counter() - t0
    total_rt = client.round_trips
    client.close()
    return elapsed, total_rt, per_window


def concurrent(endpoint, prefix, hosts, threads):
    clients = [EtcdClient([endpoint], timeout=30) for _thread in range(threads)]
    barrier = threading.Barrier(threads)
    errors = []

    def work(n):
        store = FlannelStore(clients[n], prefix)
        barrier.wait()
        for i in range(n, hosts, threads):
            try:
                store.acquire(host_ip(i))
            except Exception as exc:  # reported below
                errors.append(exc)

    pool = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    t0 = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - t0
    total_rt = sum(c.round_trips for c in clients)
    for c in clients:
        c.close()
    return elapsed, total_rt, errors


# -- --cluster: one module run per simulated host, all at once -------------------------------------------


class CountingClient(EtcdClient):
    """The real EtcdClient; it also counts the transactions that lost their compare (a lost race) and the
    connections it dropped to fail over to another member (a request that met a transport error)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.lost = 0
        self.failovers = 0
        self._closing = False

    def _drop(self, index):
        if not self._closing and index in self._channels:
            self.failovers += 1
        super()._drop(index)

    def close(self):
        self._closing = True
        super().close()

    def txn(self, compare, success, failure=()):
        ok, revision, ranges = super().txn(compare, success, failure)
        if not ok:
            self.lost += 1
        return ok, revision, ranges


def client_kwargs(args):
    """EtcdClient's arguments from the modules' etcd options, as ansible_etcd.connect() builds them."""
    return dict(endpoints=args["etcd_endpoints"], ca_cert=args.get("etcd_ca_cert"),
                client_cert=args.get("etcd_client_cert"), client_key=args.get("etcd_client_key"),
                user=args.get("etcd_user"), password=args.get("etcd_password"),
                timeout=args.get("etcd_timeout", DEFAULT_TIMEOUT))


def one_host(i, module_args):
    """One module run: connect, acquire, close.
    -> (host, subnet or None, round trips, lost races, error, failovers)."""
    client = None
    try:
        client = CountingClient(**client_kwargs(module_args))
        store = FlannelStore(client, module_args["etcd_prefix"])
        out = store.acquire(host_ip(i))
        return (i, str(out.lease.subnet), client.round_trips, client.lost, None, client.failovers)
    except Exception as exc:  # counted and shown; the run fails on any
        return (i, None, client.round_trips if client else 0, client.lost if client else 0,
                "%s: %s" % (type(exc).__name__, exc), client.failovers if client else 0)
    finally:
        if client is not None:
            client.close()


def proc_main(hosts, threads, module_args, ready, go, results):
    """One process: `threads` threads share `hosts`; all wait for `go`, then run their hosts one by one."""
    try:
        out = []
        lock = threading.Lock()
        todo = list(hosts)

        def work():
            go.wait()
            while True:
                with lock:
                    if not todo:
                        return
                    i = todo.pop()
                r = one_host(i, module_args)
                r = r[:5] + (time.time(), r[5])
                with lock:
                    out.append(r)

        pool = [threading.Thread(target=work, daemon=True) for _thread in range(threads)]
        for t in pool:
            t.start()
        ready.put(os.getpid())
        for t in pool:
            t.join()
        results.put(out)
    except Exception:
        results.put([(-1, None, 0, 0, traceback.format_exc(), time.time(), 0)])


def storm(module_args, hosts, procs, concurrency):
    """`hosts` module runs, at most `concurrency` at a time, over `procs` processes.  -> figures (dict)."""
    ctx = multiprocessing.get_context("spawn")  # no fork after gRPC is loaded
    ready, results, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    share = [list(range(p, hosts, procs)) for p in range(procs)]
    per_proc = [max(1, -(-concurrency * len(h) // hosts)) for h in share]
    workers = [ctx.Process(target=proc_main, args=(share[p], per_proc[p], module_args, ready, go, results))
               for p in range(procs)]
    for w in workers:
        w.start()
    for _worker in workers:
        ready.get(timeout=120)
    t0 = time.time()
    go.set()
    rows = []
    for _worker in workers:
        rows += results.get(timeout=1800)
    for w in workers:
        w.join(30)
    end = max(r[5] for r in rows) if rows else time.time()
    ok = [r for r in rows if r[4] is None]
    errors = [r for r in rows if r[4] is not None]
    elapsed = end - t0
    return dict(elapsed=elapsed, rate=len(ok) / elapsed if elapsed > 0 else 0.0, done=len(ok), errors=errors,
                rows=rows, rt=sum(r[2] for r in rows) / max(1, len(rows)), lost=sum(r[3] for r in rows),
                lost_max=max((r[3] for r in rows), default=0), threads=sum(per_proc),
                failovers=sum(r[6] for r in rows),
                rt_median=statistics.median(r[2] for r in rows) if rows else 0)


def verify(module_args, hosts, figures):
    """Every host holds exactly one lease, on distinct subnets; the subnets the runs reported are the stored
    ones.  -> list of problems."""
    problems = ["host %s: %s" % (r[0], r[4]) for r in figures["errors"]]
    client = EtcdClient(**client_kwargs(module_args))
    try:
        snap = FlannelStore(client, module_args["etcd_prefix"]).snapshot()
    except Exception as exc:  # an etcd still electing a leader after the storm
        return problems + ["the leases could not be read back: %s: %s" % (type(exc).__name__, exc)]
    finally:
        client.close()
    by_host = {}
    for lease in snap.leases:
        by_host.setdefault(lease.public_ip, []).append(str(lease.subnet))
    subnets = [str(lease.subnet) for lease in snap.leases]
    if len(snap.leases) != hosts:
        problems.append("%d leases stored, expected %d" % (len(snap.leases), hosts))
    if len(set(subnets)) != len(subnets):
        problems.append("%d leases share a subnet" % (len(subnets) - len(set(subnets))))
    if snap.bad:
        problems.append("%d unreadable leases" % len(snap.bad))
    for i in range(hosts):
        held = by_host.get(host_ip(i), [])
        if len(held) != 1:
            problems.append("host %s holds %d leases" % (host_ip(i), len(held)))
    reported = {host_ip(r[0]): r[1] for r in figures["rows"] if r[4] is None}
    wrong = [ip for ip, subnet in reported.items() if by_host.get(ip) != [subnet]]
    if wrong:
        problems.append("%d hosts were told another subnet than the stored one (e.g. %s)" % (len(wrong), wrong[0]))
    return problems


def report(label, f, ref=None):
    line = ("%-34s %5d leases in %6.2f s = %6.1f/s, %.2f round trips per lease (median %d), "
            "%d lost races (at most %d for one host), %d fail-overs, %d errors"
            % (label, f["done"], f["elapsed"], f["rate"], f["rt"], f["rt_median"], f["lost"], f["lost_max"],
               f["failovers"], len(f["errors"])))
    if ref is not None:
        line += "; %.3f x the plain member's %.1f/s" % (f["rate"] / ref["rate"], ref["rate"])
    print(line)


def cluster_main(args):
    concurrency = args.concurrency or args.hosts
    problems = []
    base = tempfile.mkdtemp(prefix="bench-etcd-cluster-")
    from support.etcd_cluster import EtcdCluster  # noqa: E402  (tests/ is on sys.path)

    print("%d hosts, each one module run (own connection, authentication when the etcd has it, acquire), "
          "at most %d at a time, %d threads over %d processes, etcd_timeout %g s"
          % (args.hosts, concurrency, concurrency, args.procs, args.etcd_timeout or DEFAULT_TIMEOUT))
    with EtcdServer(name="bench-plain") as server:
        plain = {"etcd_endpoints": [server.endpoint], "etcd_prefix": "/coreos.com/network"}
        if args.etcd_timeout:
            plain["etcd_timeout"] = args.etcd_timeout
        seed(server.endpoint, plain["etcd_prefix"], args.hosts)
        ref = storm(plain, args.hosts, args.procs, concurrency)
        report("1 member, plain http, no auth:", ref)
        problems += ["plain: " + p for p in verify(plain, args.hosts, ref)]
    cluster = EtcdCluster(["127.0.0.1"] * 3, base, client_port=None, peer_port=None)
    try:
        cluster.start()
        tls = cluster.module_args(cert_auth=args.auth == "cert")
        if args.etcd_timeout:
            tls["etcd_timeout"] = args.etcd_timeout
        seed(tls["etcd_endpoints"], tls["etcd_prefix"], args.hosts,
             **{k: v for k, v in client_kwargs(tls).items() if k != "endpoints"})
        f = storm(tls, args.hosts, args.procs, concurrency)
        report("3 members, TLS + auth (flannel, %s):" % args.auth, f, ref)
        problems += ["cluster: " + p for p in verify(tls, args.hosts, f)]
    finally:
        left = cluster.destroy()
        if left:
            print("left running: %s" % left)
    for r in (ref.get("errors", []) + f.get("errors", []))[:5]:
        print("error, host %s: %s" % (host_ip(r[0]), r[4].strip().splitlines()[-1]))
    if problems:
        print("FAILED (%d problems):\n  %s" % (len(problems), "\n  ".join(problems[:20])))
        return 1
    print("ok: %d distinct subnets, one lease per host, no errors (lost races retried)" % args.hosts)
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--cluster", action="store_true",
                        help="one module run per host against a 3-member TLS+auth cluster and a plain member")
    parser.add_argument("--procs", type=int, default=2, help="--cluster: processes the hosts' threads run in")
    parser.add_argument("--concurrency", type=int, default=0,
                        help="--cluster: hosts running at once (default: all of them)")
    parser.add_argument("--auth", choices=("password", "cert"), default="password",
                        help="--cluster: the flannel user logs in with its password (a bcrypt check per module "
                             "run), or is the CN of its client certificate (etcd's certificate authentication)")
    parser.add_argument("--etcd-timeout", type=float, default=None,
                        help="--cluster: the modules' etcd_timeout (default: the modules' default, %g s)"
                             % DEFAULT_TIMEOUT)
    args = parser.parse_args()
    if args.cluster:
        sys.exit(cluster_main(args))
    with EtcdServer(name="bench") as server:
        cfg = seed(server.endpoint, "/bench/seq", args.hosts)
        print("network %s, /%d subnets, capacity %d, %d hosts" % (cfg.network, cfg.subnet_len, cfg.capacity, args.hosts))
        elapsed, rts, windows = sequential(server.endpoint, "/bench/seq", args.hosts)
        print("sequential: %d acquisitions in %.2f s = %.0f/s, %.2f etcd round trips per acquisition"
              % (args.hosts, elapsed, args.hosts / elapsed, rts / args.hosts))
        for done, rt, rate in windows:
            print("  leases %4d..%4d existing: %.2f round trips per acquisition, %.0f/s" % (
                done - args.hosts // 4, done, rt, rate))
        seed(server.endpoint, "/bench/par", args.hosts)
        elapsed, rts, errors = concurrent(server.endpoint, "/bench/par", args.hosts, args.threads)
        print("concurrent (%d threads): %d acquisitions in %.2f s = %.0f/s, %.2f round trips per acquisition, %d errors"
              % (args.threads, args.hosts, elapsed, args.hosts / elapsed, rts / args.hosts, len(errors)))
        # The second run of every host: nothing to do but read and check its TTL.
        client = EtcdClient([server.endpoint])
        store = FlannelStore(client, "/bench/seq")
        t0 = time.perf_counter()
        for i in range(0, args.hosts, 10):
            store.acquire(host_ip(i))
        n = len(range(0, args.hosts, 10))
        print("re-run on an existing lease (%d hosts): %.0f/s, %.2f round trips each"
              % (n, n / (time.perf_counter() - t0), client.round_trips / n))
        client.close()


if __name__ == "__main__":
    main()
