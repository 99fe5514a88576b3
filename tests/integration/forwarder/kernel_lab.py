"""Shared by test_kernel_vxlan.py and test_kernel_hostgw.py: a lab per backend and readers of the kernel state.

Each backend gets its own lab (one module at a time: labs share addresses) (three hosts, their containers, an
etcd); the leases come from FlannelStore.acquire with the BackendData the
subnet module writes (backends.lease_data). The labs are dual-stack (the
network has EnableIPv6 and IPv6Network NETWORK6, the hosts an IPv6 underlay
address and their containers an IPv6 address), so that every test of the
IPv4 side also runs beside an IPv6 side, and the IPv6 tests share the set-up. What is checked is what the
kernel holds (read with `ip -j` and `bridge -j`, not through our code) and
what crosses it: pings and a checksummed TCP transfer between containers.
"""

import ipaddress
import json
import os
import subprocess
import sys


from ansible_collections.overlay.flannel.plugins.module_utils import backends
from ansible_collections.overlay.flannel.plugins.module_utils.etcd_client import EtcdClient
from ansible_collections.overlay.flannel.plugins.module_utils.netconfig import dumps, from_dict
from ansible_collections.overlay.flannel.plugins.module_utils.store import FlannelStore
from support.etcd_server import EtcdServer

from lab import CONTROLLER, NETWORK, NETWORK6, PROBE, Lab, container_ip, host_ip, host_ip6, subnet, subnet6

PREFIX = "/coreos.com/network"
VNI = 1
DEVICE = "flannel.1"
DEVICE6 = "flannel-v6.1"
PROTO = "70"  # kernel.FLANNEL_PROTO, as `ip -j route` prints it


def ipj(lab, host, *args):
    out = lab.run(host, "ip", "-j", *args).stdout.strip()
    return json.loads(out) if out else []


def routes(lab, host):
    """{dst: route} of the IPv4 routes with our protocol on `host`."""
    return {r["dst"]: r for r in ipj(lab, host, "route", "show", "proto", PROTO)}


def routes6(lab, host):
    """{dst: route} of the IPv6 routes with our protocol on `host`."""
    return {r["dst"]: r for r in ipj(lab, host, "-6", "route", "show", "proto", PROTO)}


def neighbours(lab, host, device=DEVICE):
    return {n["dst"]: n["lladdr"] for n in ipj(lab, host, "neigh", "show", "dev", device, "nud", "permanent")}


def fdb(lab, host, device=DEVICE):
    out = lab.run(host, "bridge", "-j", "fdb", "show", "dev", device).stdout.strip()
    return {e["mac"]: e.get("dst") for e in (json.loads(out) if out else []) if e.get("dst")}


def lease_value(store, n):
    """The value of host n's lease (under its dual-stack key or its IPv4-only one), as JSON."""
    found = [lease for lease in store.snapshot().leases if str(lease.subnet) == subnet(n)]
    kv = store.client.get(found[0].key) if found else None
    return json.loads(kv.value) if kv is not None else None


def lease_key_of(store, n):
    found = [lease.key for lease in store.snapshot().leases if str(lease.subnet) == subnet(n)]
    return found[0] if found else None


def lease(store, backend, n):
    """Host n's lease as the subnet module writes it under `backend`, with its IPv6 half on a dual-stack
    network."""
    dual = store.require_config(store.snapshot()).dual_stack
    store.acquire(host_ip(n), requested=ipaddress.IPv4Network(subnet(n)), backend_type=backend["Type"],
                  backend_data=backends.lease_data(backend, host_ip(n)),
                  public_ipv6=host_ip6(n) if dual else None,
                  requested6=ipaddress.IPv6Network(subnet6(n)) if dual else None)


def transfer(lab, src, dst_n, port, ip=container_ip):
    srv = subprocess.Popen(["ip", "netns", "exec", lab.ns("c%d" % dst_n), sys.executable, PROBE, "serve", str(port)],
                           stdout=subprocess.PIPE, text=True)
    lab.procs.append(srv)
    srv.notify = open(os.devnull)  # destroy() closes it
    assert json.loads(srv.stdout.readline())["listening"] == port
    sent = lab.probe(src, "send", ip(dst_n), str(port), str(8 << 20), "11")
    got = json.loads(srv.stdout.readline())
    srv.wait(10)
    return sent, got


def make_env(request, btype, tag, dual=True):
    backend = backends.normalise({"Type": btype})
    lab = Lab("k%s%d-" % (tag, os.getpid() % 10000))
    request.addfinalizer(lab.destroy)
    lab.create()
    server = EtcdServer(host=CONTROLLER, name="kb" + tag).start()
    request.addfinalizer(server.stop)
    client = EtcdClient([server.endpoint])
    request.addfinalizer(client.close)
    store = FlannelStore(client, PREFIX)
    raw = {"Network": NETWORK, "Backend": {"Type": btype}}
    if dual:
        raw.update(EnableIPv6=True, IPv6Network=NETWORK6)
    store.write_config(dumps(from_dict(raw).to_dict()), store.snapshot())
    mtu = backends.mtu(btype, 1500)
    for n in (1, 2, 3):
        lab.add_host(n, mtu=mtu, ipv6=dual)
    for n in (1, 2):
        lease(store, backend, n)
    procs = {n: lab.start_forwarder(n, server.endpoint) for n in (1, 2)}
    return {"lab": lab, "server": server, "store": store, "procs": procs, "backend": backend, "mtu": mtu}
