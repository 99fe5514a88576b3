"""Hosts leasing at once against a real etcd: each in its own thread with its own client, released together."""

import threading

from ansible_collections.overlay.flannel.plugins.module_utils.etcd_client import EtcdClient
from ansible_collections.overlay.flannel.plugins.module_utils.store import FlannelStore


def acquire_all(server, prefix, hosts, **acquire_args):
    """{public IP: lease or exception} of FlannelStore.acquire for each host, started at once. A host is its
    public IP, or (public IP, public IPv6); `acquire_args` go to every acquire (e.g. backend_type="vxlan")."""
    hosts = [host if isinstance(host, tuple) else (host, None) for host in hosts]
    barrier = threading.Barrier(len(hosts))
    results = {}

    def worker(ip, ipv6):
        client = EtcdClient([server.endpoint], timeout=30)
        try:
            barrier.wait()
            args = dict(acquire_args, public_ipv6=ipv6) if ipv6 else acquire_args
            results[ip] = FlannelStore(client, prefix).acquire(ip, **args)
        except Exception as exc:  # collected and asserted on by the caller
            results[ip] = exc
        finally:
            client.close()

    threads = [threading.Thread(target=worker, args=host) for host in hosts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results
