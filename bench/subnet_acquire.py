#!/usr/bin/env python3
"""Benchmark: subnet lease acquisition rate and etcd round trips per acquisition.

Starts its own etcd (Debian's etcd-server) on 127.0.0.1, seeds a network that
fits the hosts, and leases one subnet per host through FlannelStore.acquire,
the code path of the overlay.flannel.subnet module. Prints figures; asserts
nothing. Run: .venv/bin/python bench/subnet_acquire.py [--hosts 1000] [--threads 16]
"""

import argparse
import os
import sys
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))
import conftest  # noqa: E402,F401  (links the collection into .cache/collections and sys.path)

from ansible_collections.overlay.flannel.plugins.module_utils.etcd_client import EtcdClient  # noqa: E402
from ansible_collections.overlay.flannel.plugins.module_utils.netconfig import dumps, from_dict  # noqa: E402
from ansible_collections.overlay.flannel.plugins.module_utils.store import FlannelStore  # noqa: E402
from support.etcd_server import EtcdServer  # noqa: E402


def host_ip(i):
    return "10.200.%d.%d" % (i // 250, 1 + i % 250)


def seed(endpoint, prefix, hosts):
    # /24 subnets in a network with room for `hosts` of them (SubnetMin skips the first).
    prefixlen = 24 - hosts.bit_length()
    cfg = from_dict({"Network": "10.0.0.0/%d" % prefixlen, "SubnetLen": 24})
    client = EtcdClient([endpoint])
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
    clients = [EtcdClient([endpoint], timeout=30) for _ in range(threads)]
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=16)
    args = parser.parse_args()
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
