"""The daemon's footprint: resident memory and threads per backend, at start and with 1000 peers; the release's size.

Run as root, on demand (not a test):

    sudo .venv/bin/python bench/footprint.py [--backends udp,vxlan,host-gw] [--peers 1000] [--settle 11]
                                             [--source DIR] [--python /usr/bin/python3] [--no-release]

What a host runs is measured: the release the forwarder role installs
(roles/forwarder/files/stage_release.py stages it from --source, default
this checkout, for --python's version on this machine's kind; then
unpack_release.py unpacks and byte-compiles it as on a host), run by
--python -I <release>/bin/flannel-forwarder as the unit runs it, with the
unit's settings but the paths (files under a temporary directory). With
--no-release the daemon runs from --source's tree with this interpreter
instead (python -m flannel_forwarder, this checkout's; --source is for
releases), and no size is printed.

Per backend, a namespace host on the harness of the forwarder's integration
tests (tests/integration/forwarder/lab.py: a bridged underlay, a real etcd
in the root namespace, tests/support/etcd_server.py) gets the network
config of that backend (Network 10.16.0.0/12, SubnetLen 24) and its own
lease, and the daemon is started; when it is ready (READY=1) and --settle
seconds later (one probe round and a few kernel syncs), its resident set is
read from /proc (VmRSS, the PSS of smaps_rollup, VmHWM: the peak) with its
threads (by the names the kernel knows). Then --peers leases of that backend
are written into etcd (transactions of 100 puts), their public IPs on a
/16 the underlay interface also has (so host-gw routes every one), and once
the daemon has them all (the peers metric; for vxlan and host-gw every
route programmed, the kernel_entries metric) and --settle seconds later it
is read again.

Beside it: what importing alone costs, in a fresh interpreter of the same
kind (the same Python, the same release or tree): the interpreter, + the
etcd stack (the collection's etcd_client: grpcio, protobuf, python-etcd3),
+ pyroute2 as the daemon loads it, + the daemon's own modules for that
backend (udp: with the way of its data path, numpy). "own" is the daemon's
RSS less that total: its threads, buffers, caches and peers.

The reference: flanneld's reference manifest limits it to 50 MiB
(kube-flannel.yml, resources.limits.memory). The release's size: the
unpacked, byte-compiled release directory, the archive copied to the host,
and the largest packages in its lib/.
"""

from __future__ import annotations

import argparse
import collections
import glob
import ipaddress
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
# the checkout linked as the collection overlay.flannel, its collections path on sys.path
from repo_collection import COLLECTIONS, REPO  # noqa: E402
sys.path.insert(0, os.path.join(REPO, "tests", "integration", "forwarder"))
sys.path.insert(0, os.path.join(REPO, "tests"))

from ansible_collections.overlay.flannel.plugins.module_utils import backends  # noqa: E402
from ansible_collections.overlay.flannel.plugins.module_utils.etcd_client import EtcdClient, put  # noqa: E402
from ansible_collections.overlay.flannel.plugins.module_utils.netconfig import dumps, from_dict  # noqa: E402
from ansible_collections.overlay.flannel.plugins.module_utils.store import FlannelStore  # noqa: E402
from lab import CONTROLLER, Lab, host_ip, wait_for  # noqa: E402
from support.etcd_server import EtcdServer  # noqa: E402

STAGE = os.path.join(REPO, "roles", "forwarder", "files", "stage_release.py")
UNPACK = os.path.join(REPO, "roles", "forwarder", "files", "unpack_release.py")
MIB = 1024 * 1024
LIMIT_MIB = 50  # flanneld's memory limit in its reference manifest
PREFIX = "/coreos.com/network"
NETWORK = "10.16.0.0/12"
OWN_SUBNET = "10.16.1.0/24"
PEER_NET = "10.215.0.0/16"  # the peers' public IPs: a second address of the underlay interface makes them direct
PER_TXN = 100
BACKENDS = (backends.UDP, backends.VXLAN, backends.HOST_GW)

# Run in a fresh interpreter of the daemon's kind: RSS and PSS (kB) after each step of the daemon's imports.
IMPORTS = r'''
import importlib, json, os, sys
lib, backend = sys.argv[1], sys.argv[2]
if lib:
    sys.path.insert(0, lib)

def sample():
    out = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                out["rss"] = int(line.split()[1])
    with open("/proc/self/smaps_rollup") as fh:
        for line in fh:
            if line.startswith("Pss:"):
                out["pss"] = int(line.split()[1])
    return out

steps = [("interpreter", sample())]
importlib.import_module("ansible_collections.overlay.flannel.plugins.module_utils.etcd_client")
steps.append(("etcd stack", sample()))
try:  # as the daemon loads it (flannel_forwarder.iproute); a tree before that module imported pyroute2 whole
    from flannel_forwarder.iproute import IPRoute
except ImportError:
    from pyroute2 import IPRoute
IPRoute().close()
steps.append(("pyroute2", sample()))
importlib.import_module("flannel_forwarder.cli")
from flannel_forwarder import backend as registry
registry.get(backend)
if backend == "udp":
    from flannel_forwarder.udp import ways
    ways.choose()
    importlib.import_module("flannel_forwarder.udp.loops")
    importlib.import_module("flannel_forwarder.udp.tun.device")
    importlib.import_module("flannel_forwarder.udp.conn")
else:
    importlib.import_module("flannel_forwarder.kernel")
steps.append(("daemon modules", sample()))
print(json.dumps(steps))
'''


def proc_memory(pid: int) -> dict:
    """RSS, peak RSS, PSS (kB) and the threads of process `pid`, by their names."""
    out = {}
    with open("/proc/%d/status" % pid) as fh:
        for line in fh:
            key, _sep, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "Threads"):
                out[key] = int(value.split()[0])
    with open("/proc/%d/smaps_rollup" % pid) as fh:
        for line in fh:
            if line.startswith("Pss:"):
                out["Pss"] = int(line.split()[1])
    names = collections.Counter()
    for comm in glob.glob("/proc/%d/task/*/comm" % pid):
        try:
            with open(comm) as fh:
                names[fh.read().strip()] += 1
        except OSError:  # a thread that ended meanwhile
            pass
    out["names"] = dict(sorted(names.items()))
    return out


def peer_subnet(i: int) -> ipaddress.IPv4Network:
    # /24s of 10.16.0.0/12 from 10.16.2.0 on (10.16.0.0/24 is below SubnetMin, 10.16.1.0/24 is ours)
    return ipaddress.IPv4Network((int(ipaddress.IPv4Address("10.16.2.0")) + (i << 8), 24))


def peer_ip(i: int) -> str:
    return "10.215.%d.%d" % (i // 250, 1 + i % 250)


def lease_value(backend: dict, ip: str) -> str:
    return json.dumps({"PublicIP": ip, "PublicIPv6": None, "BackendType": backend["Type"],
                       "BackendData": backends.lease_data(backend, ip)})


class Release:
    """The release the forwarder role installs, staged from `source` and unpacked as on a host, under `work`."""

    def __init__(self, source: str, python: str, work: str):
        version = subprocess.run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                                 check=True, capture_output=True, text=True).stdout.strip()
        glibc = platform.libc_ver()[1]
        out = subprocess.run([sys.executable, STAGE, "stage", source, os.path.join(work, "cache"), "--python", version,
                              "--machine", platform.machine(), "--glibc", glibc],
                             check=True, capture_output=True, text=True)
        staged = json.loads(out.stdout.strip().splitlines()[-1])
        self.archive = staged["archive"]
        self.name = staged["name"]
        releases = os.path.join(work, "releases")
        staging = os.path.join(releases, ".staging")
        os.makedirs(staging)
        shutil.copy(self.archive, staging)
        subprocess.run([python, UNPACK, staging, os.path.join(staging, os.path.basename(self.archive)), self.name,
                        releases], check=True, capture_output=True, text=True)
        self.dir = os.path.join(releases, self.name)
        self.lib = os.path.join(self.dir, "lib")
        self.launcher = os.path.join(self.dir, "bin", "flannel-forwarder")

    def sizes(self) -> dict:
        return {"archive": os.path.getsize(self.archive), "tree": du(self.dir),
                "parts": sorted(((du(p), os.path.basename(p)) for p in glob.glob(os.path.join(self.lib, "*"))
                                 if not p.endswith((".dist-info", "__pycache__"))), reverse=True)}


def du(path: str) -> int:
    """Bytes on disk (allocated blocks, as du counts them) of a file or tree."""
    total = 0
    if os.path.isfile(path):
        return os.lstat(path).st_blocks * 512
    for dirpath, _dirs, files in os.walk(path):
        total += os.lstat(dirpath).st_blocks * 512
        total += sum(os.lstat(os.path.join(dirpath, f)).st_blocks * 512 for f in files)
    return total


def import_costs(python: str, lib: str | None, backend: str) -> list:
    env = dict(os.environ)
    cmd = [python, "-I", "-c", IMPORTS, lib or "", backend]
    if lib is None:  # the tree: the daemon's package and the collection (as lab.PYTHONPATH)
        cmd = [python, "-c", IMPORTS, "", backend]
        env["PYTHONPATH"] = os.pathsep.join([os.path.join(REPO, "forwarder"), COLLECTIONS])
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out)


def measure_backend(btype: str, args, release: Release | None) -> dict:
    backend = backends.normalise({"Type": btype})
    lab = Lab("fp%d-" % (os.getpid() % 10000))
    server = None
    client = None
    try:
        lab.create()
        server = EtcdServer(host=CONTROLLER, name="footprint").start()
        client = EtcdClient([server.endpoint])
        store = FlannelStore(client, PREFIX)
        store.write_config(dumps(from_dict({"Network": NETWORK, "SubnetLen": 24, "Backend": {"Type": btype}}).to_dict()),
                           store.snapshot())
        lab.add_host(1, mtu=backends.mtu(btype, 1500))
        lab.run("h1", "ip", "addr", "add", str(ipaddress.IPv4Network(PEER_NET)[-2]) + "/16", "dev", "u0")
        store.acquire(host_ip(1), requested=ipaddress.IPv4Network(OWN_SUBNET), backend_type=btype,
                      backend_data=backends.lease_data(backend, host_ip(1)))
        command = [args.python, "-I", release.launcher] if release else None
        proc = lab.start_forwarder(1, server.endpoint, "--public-ip", host_ip(1), "--log-level", "info",
                                   "--peer-status-file", os.path.join(lab.tmp, "peers.json"), command=command,
                                   timeout=60)
        t0 = time.monotonic()
        at_ready = proc_memory(proc.pid)
        time.sleep(args.settle)
        started = proc_memory(proc.pid)
        ops = [put(PREFIX + "/subnets/%s-24" % peer_subnet(i).network_address, lease_value(backend, peer_ip(i)))
               for i in range(args.peers)]
        written = time.monotonic()
        for i in range(0, len(ops), PER_TXN):
            ok, _rev, _ranges = client.txn([], ops[i:i + PER_TXN])
            assert ok
        wait_for(lambda: lab.metric(1, "peers") == args.peers, timeout=120, interval=0.5,
                 what="%d peers in the daemon" % args.peers)
        if btype != backends.UDP:
            wait_for(lambda: lab.metric(1, 'kernel_entries{kind="route"}') == args.peers, timeout=120, interval=0.5,
                     what="%d routes programmed" % args.peers)
        programmed = time.monotonic() - written
        time.sleep(args.settle)
        loaded = proc_memory(proc.pid)
        alive = proc.poll() is None
        lab.stop(proc)
        if btype != backends.UDP:  # the daemon leaves its kernel state: gone with the namespace anyway
            pass
        return {"ready": started, "at_ready": at_ready, "peers": loaded, "programmed_s": programmed, "alive": alive,
                "run_s": time.monotonic() - t0,
                "imports": import_costs(args.python, release.lib if release else None, btype)}
    finally:
        if client is not None:
            client.close()
        lab.destroy()
        if server is not None:
            server.stop()


def mib(kb: int) -> str:
    return "%.1f" % (kb / 1024)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--peers", type=int, default=1000)
    parser.add_argument("--settle", type=float, default=11.0,
                        help="seconds after ready and after the peers are in before reading (default 11: one probe "
                             "round of the default 10 s interval)")
    parser.add_argument("--source", default=REPO, help="the checkout whose daemon is measured (default: this one)")
    parser.add_argument("--python", default="/usr/bin/python3", help="the hosts' Python (default /usr/bin/python3)")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="an environment variable for the daemon (e.g. MALLOC_ARENA_MAX=2; repeat)")
    parser.add_argument("--no-release", action="store_true",
                        help="run the daemon from --source's tree with this interpreter, not from a staged release")
    args = parser.parse_args()
    if os.geteuid() != 0:
        parser.error("needs root: network namespaces")
    if args.no_release:
        args.python = sys.executable
    args.source = os.path.realpath(args.source)
    for item in args.env:  # the lab starts the daemon with this process's environment
        key, _sep, value = item.partition("=")
        os.environ[key] = value
    chosen = [b.strip() for b in args.backends.split(",") if b.strip()]
    work = tempfile.mkdtemp(prefix="footprint-")
    try:
        release = None
        if not args.no_release:
            release = Release(args.source, args.python, work)
            print("release %s, run by %s -I" % (release.name, args.python), flush=True)
        results = {}
        for btype in chosen:
            results[btype] = measure_backend(btype, args, release)
            r = results[btype]
            print("  %s: ready %s MiB, %d peers %s MiB (programmed in %.1f s)" % (
                btype, mib(r["ready"]["VmRSS"]), args.peers, mib(r["peers"]["VmRSS"]), r["programmed_s"]), flush=True)
        report(results, args, release)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def report(results: dict, args, release: Release | None) -> None:
    print()
    print("flannel-forwarder's footprint, %s, Python %s (%s)%s; reference: flanneld's limit %d MiB" % (
        "release" if release else "tree", args.python, platform.machine(),
        ", environment " + " ".join(args.env) if args.env else "", LIMIT_MIB))
    print("| backend | when | RSS MiB | PSS MiB | peak RSS MiB | anon MiB | threads | RSS / %d MiB |" % LIMIT_MIB)
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for btype, r in results.items():
        for when, key in (("ready", "ready"), ("%d peers" % args.peers, "peers")):
            m = r[key]
            print("| %s | %s | %s | %s | %s | %s | %d | %.2f |" % (
                btype, when, mib(m["VmRSS"]), mib(m["Pss"]), mib(m["VmHWM"]), mib(m["RssAnon"]), m["Threads"],
                m["VmRSS"] / 1024 / LIMIT_MIB))
    print()
    print("What the imports alone cost (a fresh interpreter, the same release; RSS MiB, cumulative) and the daemon's own")
    print("| backend | interpreter | + etcd stack | + pyroute2 | + daemon modules | own at ready | own with %d peers |"
          % args.peers)
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for btype, r in results.items():
        steps = dict(r["imports"])
        cum = [steps[k]["rss"] for k in ("interpreter", "etcd stack", "pyroute2", "daemon modules")]
        print("| %s | %s | %s (+%s) | %s (+%s) | %s (+%s) | %s | %s |" % (
            btype, mib(cum[0]), mib(cum[1]), mib(cum[1] - cum[0]), mib(cum[2]), mib(cum[2] - cum[1]), mib(cum[3]),
            mib(cum[3] - cum[2]), mib(r["ready"]["VmRSS"] - cum[3]), mib(r["peers"]["VmRSS"] - cum[3])))
    print()
    for btype, r in results.items():
        print("%s threads with %d peers: %s" % (btype, args.peers, ", ".join(
            "%s x%d" % (n, c) if c > 1 else n for n, c in r["peers"]["names"].items())))
        if not r["alive"]:
            print("  %s: THE DAEMON HAD EXITED before it was stopped" % btype)
    if release is not None:
        s = release.sizes()
        print()
        print("release on disk: %.1f MiB unpacked and byte-compiled (%s), archive %.1f MiB" % (
            s["tree"] / MIB, release.name, s["archive"] / MIB))
        print("largest parts of lib/: " + ", ".join("%s %.1f" % (name, size / MIB) for size, name in s["parts"][:8]))


if __name__ == "__main__":
    sys.exit(main())
