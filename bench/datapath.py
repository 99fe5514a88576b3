"""Throughput of flannel-forwarder's three backends against the kernel set up by hand, same run, same namespaces.

Run as root, on demand (not a test):

    sudo .venv/bin/python bench/datapath.py [--duration 5] [--repeat 3] [--rounds 1] [--modes fwd-vxlan,offload]

Builds two hosts + two containers as network namespaces (prefix fbench-,
addresses 10.213.0.x underlay and 10.5.x.x overlay, nothing outside this
machine) and gives each simulated host one core: its forwarder or daemon
and its container's iperf3 and ping run there (for the hand-made modes
too; with --float-containers only the forwarders/daemons are pinned, the
containers' iperf3 goes wherever the scheduler puts it, and single runs
vary a lot more).  The modes, measured one after the other in this order
(--modes names a subset; host-gw is always measured, and the hand-made
reference of a fwd-* mode is added when it is missing):

  host-gw      kernel routes "peer subnet via peer host" set by hand: the reference of everything
  fwd-host-gw  flannel-forwarder's host-gw backend: the daemon programs those routes
  vxlan        a flanneld-shaped VXLAN device set up by hand with ip: flannel.1, VNI 1, dstport 0
               (the kernel's 8472), nolearning, MTU underlay - 50, the subnet's network address /32,
               and for the peer a permanent neighbour, an FDB entry and an onlink route
  fwd-vxlan    flannel-forwarder's vxlan backend: the daemon programs the same (same MACs)
  vxlan6       the IPv6 side of a dual-stack flanneld host set up by hand: flannel-v6.1 over the hosts'
               IPv6 underlay addresses (fd00:213::1x), MTU underlay - 70, the IPv6 subnet's network
               address /128, the peer's IPv6 neighbour, FDB entry and onlink route; measured between
               the containers' IPv6 addresses (fd00:5:0:x::2)
  fwd-vxlan6   flannel-forwarder's vxlan backend on a dual-stack network, measured over IPv6: the
               daemon programs the same (same MACs), beside its IPv4 side
  fwd-vxlan6-stopped  the same, its daemons stopped (SIGSTOP) once they programmed the kernel and resumed
               after the measurement: the kernel state of fwd-vxlan6 without the daemons' own work (the
               sync, the lease watch, the probes), to tell one from the other
  fwd-udp      flannel-forwarder's udp backend (the daemon, with etcd and leases), its peer probes off
               (--probe-interval 0): the reference of fwd-udp-probes
  fwd-udp-probes  the same with its peer probes on (--probe-interval, default 1 s: the rate of the
               probes' fast rounds), whose echoes cross the packet loop's TUN and socket
  offload      the udp forwarder (userspace, TUN), offloads
  no-offload   the udp forwarder, --no-offload (one packet per syscall)

The fwd-* modes run ``python -m flannel_forwarder`` in each host namespace
against a real etcd (Debian's etcd-server, tests/support/etcd_server.py)
holding the network config of that backend and the two hosts' leases; the
etcd runs in the root namespace on 10.213.9.1 and the hosts reach it over
a veth each (10.213.9.0/30, 10.213.9.4/30), a link nothing of the data
path uses (the daemons get --public-ip, so their underlay stays u0).  The
daemons leave their kernel state in place on SIGTERM (by design), so after
a fwd-* mode ``--remove-kernel-state`` runs in both hosts; every mode
starts from a checked clean state (no device, no route to the peer subnet
left by the previous one).  The containers' MTU follows the mode: udp
1472, vxlan 1450, host-gw 1500 (backends.mtu of the 1500-byte underlay);
the IPv6 modes 1430 (backends.mtu6: flannel-v6.1's, so that no packet
needs path MTU discovery in either of them).

Measures with iperf3 between the containers: TCP 1 stream, TCP 4
streams, 64-byte UDP packet rate, and ping RTT (medians of --repeat for
TCP), and the CPU our processes (daemons, udp forwarders) used meanwhile.
Prints the figures of every mode and the ratios, each with the
reference's own figure: fwd-vxlan to vxlan, fwd-host-gw to host-gw, and
every mode to host-gw.  On a shared machine the spare CPU drifts from one
minute to the next: --rounds N measures all the modes N times in turn (the
order reversed every other round, a reference always next to its fwd-*
mode) and reports medians, the ratios as medians of each round's ratios.
--abba measures each mode twice in a round, the order mirrored (host-gw,
fwd-udp, fwd-udp-probes, fwd-udp-probes, fwd-udp, host-gw): a drift of the
spare CPU within the round weighs the same on a mode and its reference, and
the round's figure of a mode is the mean of its two.  Each round's ratios
are printed as it ends.  The daemons' threads name themselves (datapath,
peer-probes): the CPU each used and how often it waited (its voluntary
context switches: sleeps, and waits for the interpreter's lock) are printed
per measurement.  The daemons' files (the peer status file the probes
rewrite every round) are on a tmpfs (/dev/shm), as /run/flannel is on the
hosts.
Tears everything down (processes by recorded PID, then the namespaces,
the root-side veths and the etcd).

The udp forwarder's fast paths need numpy (requirements/forwarder.txt); its
"h1:" line shows the way it runs ("way": "numpy", or "python" without numpy)
for the interpreter given by --python
(which runs the daemons too: it needs pyroute2).
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
# the checkout linked as the collection overlay.flannel, its collections path on sys.path
from repo_collection import COLLECTIONS, REPO  # noqa: E402
sys.path.insert(0, os.path.join(REPO, "tests", "integration", "forwarder_datapath"))

from topology import HOSTS, NETWORK, UNDERLAY_MTU, Topology, sh  # noqa: E402

from ansible_collections.overlay.flannel.plugins.module_utils import backends  # noqa: E402
from support.etcd_server import EtcdServer  # noqa: E402  (topology put tests/ on the path)

PROBE = os.path.join(HERE, "..", "tests", "integration", "forwarder_datapath", "probe.py")
C2_IP = HOSTS["h2"][3]
# The IPv6 side (the *6 modes): underlay addresses on u0, the hosts' IPv6 subnets, the containers' addresses.
NETWORK6 = "fd00:5::/48"
UNDER6 = {"h1": "fd00:213::11", "h2": "fd00:213::12"}
SUBNET6 = {"h1": "fd00:5:0:1::/64", "h2": "fd00:5:0:2::/64"}
C2_IP6 = "fd00:5:0:2::2"
# The daemon's package and the collection's module_utils, as the roles install them.
DAEMON_PATH = os.pathsep.join([os.path.join(REPO, "forwarder"), COLLECTIONS])

# mode: (its backend: the containers' MTU, what is measured)
MODES = {
    "host-gw": (backends.HOST_GW, "kernel routes set by hand (the reference)"),
    "fwd-host-gw": (backends.HOST_GW, "flannel-forwarder's host-gw backend (etcd, leases; it programs the routes)"),
    "vxlan": (backends.VXLAN, "a flannel.1 VXLAN device set up by hand with ip, flanneld's shape (reference)"),
    "fwd-vxlan": (backends.VXLAN, "flannel-forwarder's vxlan backend (etcd, leases; it programs the kernel)"),
    "vxlan6": (backends.VXLAN, "a flannel-v6.1 VXLAN device over IPv6 set up by hand, flanneld's shape (reference)"),
    "fwd-vxlan6": (backends.VXLAN, "flannel-forwarder's vxlan backend on a dual-stack network, over IPv6"),
    "fwd-vxlan6-stopped": (backends.VXLAN, "fwd-vxlan6 with its daemons stopped (SIGSTOP) while measured"),
    "offload": (backends.UDP, "the udp forwarder (userspace, TUN), offloads"),
    "no-offload": (backends.UDP, "the udp forwarder, --no-offload"),
    "fwd-udp": (backends.UDP, "flannel-forwarder's udp backend (etcd, leases), peer probes off"),
    "fwd-udp-probes": (backends.UDP, "flannel-forwarder's udp backend (etcd, leases), peer probes on"),
}
REFERENCE = {"fwd-host-gw": "host-gw", "fwd-vxlan": "vxlan", "fwd-vxlan6": "vxlan6", "fwd-vxlan6-stopped": "vxlan6",
             "fwd-udp-probes": "fwd-udp"}
# the modes that run our daemon (with etcd): {mode: its peer probes on}
DAEMON_MODES = {"fwd-host-gw": False, "fwd-vxlan": False, "fwd-vxlan6": False, "fwd-vxlan6-stopped": False,
                "fwd-udp": False, "fwd-udp-probes": True}
STOPPED_MODES = {"fwd-vxlan6-stopped"}  # the daemons stopped (SIGSTOP) while measured
V6_MODES = {"vxlan6", "fwd-vxlan6", "fwd-vxlan6-stopped"}  # measured between the containers' IPv6 addresses
GOAL = 0.95  # of its reference, for the fwd-* kernel modes: nothing of ours is in their data path
# probes on / off: the probes must not hold up the udp backend's packet loop (issue 23)
GOALS = {"fwd-udp-probes": 0.97}

VNI = backends.DEFAULT_VNI
DEVICE = f"flannel.{VNI}"
DEVICE6 = f"flannel-v6.{VNI}"
FLANNEL_PROTO = "70"  # the daemon's routes' protocol (kernel.FLANNEL_PROTO), as `ip -j route` prints it
ETCD_PREFIX = "/coreos.com/network"
CONTROL_IP = "10.213.9.1"
# host: (the root side's address, the host side's (its veth e0)); the etcd listens on CONTROL_IP
CONTROL_LINKS = {"h1": (CONTROL_IP + "/30", "10.213.9.2/30"), "h2": ("10.213.9.5/30", "10.213.9.6/30")}
HOST_LINKS = {"lo", "u0", "cv0", "e0"}  # what a host namespace holds when no mode is set up


def other(host: str) -> str:
    return "h2" if host == "h1" else "h1"


def ipj(t: Topology, host: str, *args: str) -> list:
    out = t.exec(host, "ip", "-j", *args).stdout.strip()
    return json.loads(out) if out else []


def iperf(t: Topology, args: list[str], duration: int, cpus: tuple[int, int] | None = None, dst: str = C2_IP) -> dict:
    """One iperf3 run from c1 to c2; *cpus*: the cores of h1 and h2, where c1's and c2's iperf3 then run."""
    c1_cpu, c2_cpu = cpus if cpus else (None, None)
    srv = t.spawn("c2", "iperf3", "-s", "-1", "-J", cpu=c2_cpu, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                  text=True)
    time.sleep(0.4)
    cli = t.spawn("c1", "iperf3", "-c", dst, "-t", str(duration), "-J", *args, cpu=c1_cpu,
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


def tcp_mbps(t: Topology, args: list[str], duration: int, repeat: int, cpus=None, dst=C2_IP) -> tuple[float, list]:
    """Median Mbit/s received over *repeat* runs (this machine is shared: single runs vary)."""
    runs = []
    for _run in range(repeat):
        j = iperf(t, args, duration, cpus, dst)
        runs.append(j.get("end", {}).get("sum_received", {}).get("bits_per_second", 0) / 1e6)
    return statistics.median(runs), [round(r) for r in runs]


def measure(t: Topology, duration: int, label: str, repeat: int = 1, tcp1_only: bool = False, cpus=None,
            dst: str = C2_IP) -> dict:
    res = {}
    res["tcp1"], res["tcp1_runs"] = tcp_mbps(t, [], duration, repeat, cpus, dst)
    if tcp1_only:
        res["tcp4"] = res["udp64_kpps"] = 0.0
        res["ping_ms"] = None
        print(f"  [{label}] tcp1={res['tcp1']:.3f}, tcp1_runs={res['tcp1_runs']}", flush=True)
        return res
    res["tcp4"], res["tcp4_runs"] = tcp_mbps(t, ["-P", "4"], duration, repeat, cpus, dst)
    j = iperf(t, ["-u", "-b", "0", "-l", "64"], duration, cpus, dst)
    s = j.get("end", {}).get("sum", {})
    got = (s.get("packets") or 0) - (s.get("lost_packets") or 0)
    res["udp64_kpps"] = got / duration / 1e3
    res["udp64_loss_pct"] = s.get("lost_percent")
    pin = ["taskset", "-c", str(cpus[0])] if cpus else []
    p = json.loads(t.exec("c1", *pin, sys.executable, PROBE, "ping", dst, "20", "0.05").stdout)
    res["ping_ms"] = p["rtt_ms_median"]
    res["ping_received"] = p["received"]
    shown = (f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in res.items())
    print(f"  [{label}] " + ", ".join(shown), flush=True)
    return res


def add_placement_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--cpus", default="0,1", help="the cores of h1,h2: their forwarders and containers run there")
    ap.add_argument("--float-containers", action="store_true",
                    help="let the containers' iperf3 run on any core (only the forwarders are pinned)")


def placement(args) -> tuple[list[int], tuple[int, ...] | None]:
    """(the forwarders' cores, the containers' cores or None when they float) from add_placement_args's options."""
    cpus = [int(c) for c in args.cpus.split(",")]
    return cpus, None if args.float_containers else tuple(cpus)


# -- the modes' set-up ---------------------------------------------------------------


def set_container_mtu(t: Topology, mtu: int) -> None:
    """The containers' links on both ends (cv0 in the host, eth0 in the container): FLANNEL_MTU of the mode."""
    for h in ("h1", "h2"):
        sh("ip", "-n", t.ns(h), "link", "set", "cv0", "mtu", str(mtu))
        sh("ip", "-n", t.ns("c" + h[1]), "link", "set", "eth0", "mtu", str(mtu))


def hand_vxlan(t: Topology, mtu: int) -> None:
    """flanneld's vxlan shape, with ip and bridge: the device, then neighbour, FDB entry, onlink route for the peer.

    The MACs are the ones our daemon derives (backends.vtep_mac), so the two vxlan modes differ only in who
    programmed the kernel."""
    for h in ("h1", "h2"):
        under, subnet = HOSTS[h][:2]
        peer_under, peer_subnet = HOSTS[other(h)][:2]
        own = str(ipaddress.IPv4Network(subnet).network_address)
        peer_gw = str(ipaddress.IPv4Network(peer_subnet).network_address)
        peer_mac = backends.vtep_mac(peer_under, VNI)
        t.exec(h, "ip", "link", "add", DEVICE, "address", backends.vtep_mac(under, VNI), "mtu", str(mtu),
               "type", "vxlan", "id", str(VNI), "local", under, "dev", "u0", "nolearning", "dstport", "0")
        t.exec(h, "ip", "addr", "add", own + "/32", "dev", DEVICE)
        t.exec(h, "ip", "link", "set", DEVICE, "up")
        t.exec(h, "ip", "neigh", "replace", peer_gw, "lladdr", peer_mac, "dev", DEVICE, "nud", "permanent")
        t.exec(h, "bridge", "fdb", "append", peer_mac, "dev", DEVICE, "dst", peer_under, "self", "permanent")
        t.exec(h, "ip", "route", "replace", peer_subnet, "via", peer_gw, "dev", DEVICE, "onlink")


def hand_vxlan_remove(t: Topology) -> None:
    for h in ("h1", "h2"):
        t.exec(h, "ip", "link", "del", DEVICE, check=False)  # the neighbour, FDB entry and route go with it
        t.exec(h, "ip", "link", "del", DEVICE6, check=False)


def add_ipv6(t: Topology) -> None:
    """The IPv6 side of the topology (used by the *6 modes only; the IPv4 modes never route IPv6): the
    underlay addresses, the containers' addresses and default routes, IPv6 forwarding in the hosts."""
    for h in ("h1", "h2"):
        n = h[1]
        t.exec(h, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
        sh("ip", "-n", t.ns(h), "addr", "add", UNDER6[h] + "/64", "dev", "u0", "nodad")
        sh("ip", "-n", t.ns(h), "addr", "add", f"fd00:5:0:{n}::1/64", "dev", "cv0", "nodad")
        sh("ip", "-n", t.ns("c" + n), "addr", "add", f"fd00:5:0:{n}::2/64", "dev", "eth0", "nodad")
        sh("ip", "-n", t.ns("c" + n), "-6", "route", "add", "default", "via", f"fd00:5:0:{n}::1")


def hand_vxlan6(t: Topology, mtu: int) -> None:
    """flanneld's IPv6 vxlan shape (flannel-v6.1), with ip and bridge; the MACs are the ones our daemon derives
    (backends.vtep_mac6)."""
    for h in ("h1", "h2"):
        peer = other(h)
        own = str(ipaddress.IPv6Network(SUBNET6[h]).network_address)
        peer_gw = str(ipaddress.IPv6Network(SUBNET6[peer]).network_address)
        peer_mac = backends.vtep_mac6(HOSTS[peer][0], VNI)
        t.exec(h, "ip", "link", "add", DEVICE6, "address", backends.vtep_mac6(HOSTS[h][0], VNI), "mtu", str(mtu),
               "type", "vxlan", "id", str(VNI), "local", UNDER6[h], "dev", "u0", "nolearning", "dstport", "0")
        t.exec(h, "ip", "addr", "add", own + "/128", "dev", DEVICE6, "nodad")
        t.exec(h, "ip", "link", "set", DEVICE6, "up")
        t.exec(h, "ip", "neigh", "replace", peer_gw, "lladdr", peer_mac, "dev", DEVICE6, "nud", "permanent")
        t.exec(h, "bridge", "fdb", "append", peer_mac, "dev", DEVICE6, "dst", UNDER6[peer], "self", "permanent")
        t.exec(h, "ip", "-6", "route", "replace", SUBNET6[peer], "via", peer_gw, "dev", DEVICE6, "onlink")


class Control:
    """The etcd of the fwd-* modes, in the root namespace, reachable from h1 and h2 over a veth each."""

    def __init__(self, t: Topology):
        self.t = t
        self.links: list[str] = []
        self.server = None

    def create(self) -> "Control":
        for h, (root_addr, host_addr) in CONTROL_LINKS.items():
            name = f"{self.t.prefix}e{h[1]}"
            if len(name) > 15:
                raise RuntimeError(f"--prefix too long for the root-side link name {name}")
            sh("ip", "link", "add", name, "type", "veth", "peer", "name", "e0", "netns", self.t.ns(h))
            self.links.append(name)
            sh("ip", "addr", "add", root_addr, "dev", name)
            sh("ip", "link", "set", name, "up")
            sh("ip", "-n", self.t.ns(h), "addr", "add", host_addr, "dev", "e0")
            sh("ip", "-n", self.t.ns(h), "link", "set", "e0", "up")
        # h2 reaches the etcd's address over its own link (root has both /30s; nothing else is routed there)
        sh("ip", "-n", self.t.ns("h2"), "route", "add", CONTROL_IP + "/32", "via",
           CONTROL_LINKS["h2"][0].partition("/")[0], "dev", "e0")
        self.server = EtcdServer(host=CONTROL_IP, name="fbench").start()
        return self

    def network(self, btype: str, dual: bool = False) -> None:
        """The network config of backend `btype` (`dual`: dual-stack, IPv6Network NETWORK6), and both hosts'
        leases as the subnet module writes them.

        (A client of its own, closed again: an idle one would be sent away by etcd for its keepalive pings.)"""
        from ansible_collections.overlay.flannel.plugins.module_utils.etcd_client import EtcdClient
        from ansible_collections.overlay.flannel.plugins.module_utils.netconfig import dumps, from_dict
        from ansible_collections.overlay.flannel.plugins.module_utils.store import FlannelStore

        backend = backends.normalise({"Type": btype})
        raw = {"Network": NETWORK, "Backend": {"Type": btype}}
        if dual:
            raw.update(EnableIPv6=True, IPv6Network=NETWORK6)
        config = dumps(from_dict(raw).to_dict())
        client = EtcdClient([self.server.endpoint])
        try:
            store = FlannelStore(client, ETCD_PREFIX)
            if not store.write_config(config, store.snapshot()):
                raise RuntimeError("could not write the network config")
            for h in ("h1", "h2"):
                under, subnet = HOSTS[h][:2]
                store.release(under)
                store.acquire(under, requested=ipaddress.IPv4Network(subnet), backend_type=btype,
                              backend_data=backends.lease_data(backend, under),
                              public_ipv6=UNDER6[h] if dual else None,
                              requested6=ipaddress.IPv6Network(SUBNET6[h]) if dual else None)
        finally:
            client.close()

    def destroy(self) -> None:
        if self.server is not None:
            self.server.stop()
        for name in self.links:
            sh("ip", "link", "del", name, check=False, capture=True)  # gone already when its namespace went


class Daemon:
    """flannel-forwarder in a host namespace, pinned to the host's core, with a NOTIFY_SOCKET of ours."""

    def __init__(self, t: Topology, host: str, endpoint: str, cpu: int, python: str, tmp: str,
                 probe_interval: float = 0.0):
        self.host = host
        d = os.path.join(tmp, host)
        os.makedirs(d, exist_ok=True)
        self.log_path = os.path.join(d, "daemon.log")
        self.status_file = os.path.join(d, "peers.json")
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(os.path.join(d, "notify"))
        env = dict(os.environ, NOTIFY_SOCKET=os.path.join(d, "notify"), PYTHONPATH=DAEMON_PATH)
        # the peer probes only where they are measured (fwd-udp-probes); their status file in our directory
        cmd = [python, "-m", "flannel_forwarder", "--etcd-endpoints", endpoint, "--etcd-prefix", ETCD_PREFIX,
               "--public-ip", HOSTS[host][0], "--public-ipv6", UNDER6[host],
               "--subnet-file", os.path.join(d, "subnet.env"),
               "--docker-opts-file", os.path.join(d, "docker"), "--lease-state-file", os.path.join(d, "subnet"),
               "--probe-interval", str(probe_interval), "--peer-status-file", self.status_file,
               "--log-level", "info"]
        with open(self.log_path, "ab") as log:
            self.proc = t.spawn(host, *cmd, cpu=cpu, env=env, stdout=log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as fh:
            return fh.read()[-3000:]

    def wait_ready(self, timeout: float = 30) -> str:
        self.notify.settimeout(0.5)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the daemon on {self.host} exited {self.proc.returncode}:\n{self.log()}")
            try:
                msg = self.notify.recv(4096).decode()
            except socket.timeout:
                continue
            if "READY=1" in msg.split("\n"):
                return next((line[7:] for line in msg.split("\n") if line.startswith("STATUS=")), "")
        raise RuntimeError(f"the daemon on {self.host} was not ready within {timeout}s:\n{self.log()}")


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.1)


def programmed(t: Topology, host: str, dual: bool = False) -> bool:
    """Does `host` hold the daemon's route to the peer subnet (its last entry, in flanneld's order), and with
    `dual` the one to its IPv6 subnet?"""
    if dual and not any(r.get("dst") == SUBNET6[other(host)]
                        for r in ipj(t, host, "-6", "route", "show", "proto", FLANNEL_PROTO)):
        return False
    return any(r.get("dst") == HOSTS[other(host)][1] for r in ipj(t, host, "route", "show", "proto", FLANNEL_PROTO))


def peer_up(status_file: str) -> bool:
    """Does the daemon's peer status file show its peer up (the probes answered through the overlay)?"""
    try:
        with open(status_file, encoding="utf-8") as fh:
            return [p.get("state") for p in json.load(fh).get("peers", [])] == ["up"]
    except (OSError, ValueError):
        return False


@contextlib.contextmanager
def daemons_running(t: Topology, control: Control, btype: str, cpus: list[int], python: str, dual: bool = False,
                    probe_interval: float = 0.0):
    """Both daemons under a `btype` network, their kernel state in place (udp: their peer tables; with
    `probe_interval`, their peer probes seeing each other up); afterwards stopped and that state removed
    (--remove-kernel-state in both hosts: SIGTERM leaves it, by design)."""
    # on a tmpfs, as the status file's /run/flannel is on the hosts (not a disk the probes would write to)
    tmp = tempfile.mkdtemp(prefix="fbench-daemons-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    started: list[Daemon] = []
    try:
        control.network(btype, dual)
        for h, cpu in zip(("h1", "h2"), cpus):
            started.append(Daemon(t, h, control.server.endpoint, cpu, python, tmp, probe_interval))
        for d in started:
            print(f"  {d.host}: {d.wait_ready()}", flush=True)
        if btype != backends.UDP:
            for h in ("h1", "h2"):
                wait_for(lambda h=h: programmed(t, h, dual), 10, f"the daemon on {h} to program its peer")
        if probe_interval:
            for d in started:
                wait_for(lambda d=d: peer_up(d.status_file), 30, f"the probes of {d.host} to see the peer up")
        sizes = [os.path.getsize(d.log_path) for d in started]
        yield [d.proc for d in started]
        # What the daemons changed in the kernel while measured (nothing, when the sync finds it as it left it).
        for d, size in zip(started, sizes):
            with open(d.log_path, encoding="utf-8", errors="replace") as fh:
                fh.seek(size)
                later = [line for line in fh.read().splitlines()
                         if " set " in line or " removed " in line or "repaired" in line or "WARNING" in line]
            print(f"  {d.host}: {len(later)} kernel change(s) or warning(s) logged while measured"
                  + (": " + " | ".join(later[:3]) if later else ""), flush=True)
    finally:
        for d in started:
            code = t.stop(d.proc)
            t.procs.remove(d.proc)
            d.notify.close()
            if code:
                print(f"  the daemon on {d.host} exited {code}:\n{d.log()}", flush=True)
        for h in ("h1", "h2"):
            out = t.exec(h, "env", "PYTHONPATH=" + DAEMON_PATH, python, "-m", "flannel_forwarder",
                         "--remove-kernel-state", check=False)
            if out.returncode:
                print(f"  {h}: --remove-kernel-state failed: {out.stderr.strip()[-500:]}", flush=True)
            else:
                print(f"  {h}: " + ("; ".join(out.stdout.split("\n")[:-1]) or "nothing to remove"), flush=True)
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def mode_running(t: Topology, mode: str, args, cpus: list[int], control: Control | None):
    """The data path of `mode` set up between the hosts, yielding our processes in it (h1's, h2's: the daemons,
    the udp forwarders; none for the hand-made modes); taken down again afterwards."""
    btype = MODES[mode][0]
    if mode == "host-gw":
        try:
            t.host_gw(True)
            yield []
        finally:
            t.host_gw(False)
    elif mode == "vxlan":
        try:
            hand_vxlan(t, backends.mtu(btype, UNDERLAY_MTU))
            yield []
        finally:
            hand_vxlan_remove(t)
    elif mode == "vxlan6":
        try:
            hand_vxlan6(t, backends.mtu6(btype, UNDERLAY_MTU))
            yield []
        finally:
            hand_vxlan_remove(t)
    elif mode in DAEMON_MODES:
        probes = args.probe_interval if DAEMON_MODES[mode] else 0.0
        with daemons_running(t, control, btype, cpus, args.python, mode in V6_MODES, probes) as procs:
            yield procs
    else:
        extra = ["--threads"] if args.threads else []
        fs = []
        try:
            for h, cpu in zip(("h1", "h2"), cpus):
                fs.append(t.start_forwarder(h, offload=mode == "offload", cpu=cpu, python=args.python,
                                            extra_args=extra))
            print(f"  h1: {json.dumps(fs[0].info)}", flush=True)
            yield [f.proc for f in fs]
        finally:
            for f in fs:
                t.stop(f.proc)
                t.procs.remove(f.proc)


def check_clean(t: Topology) -> None:
    """Nothing of an earlier mode is left in the hosts: no extra device, no route into the overlay but the own."""
    left = []
    for h in ("h1", "h2"):
        left += [f"{h}: device {link['ifname']}" for link in ipj(t, h, "link", "show")
                 if link["ifname"] not in HOST_LINKS]
        left += [f"{h}: IPv6 route {r['dst']}" for r in ipj(t, h, "-6", "route", "show", "proto", FLANNEL_PROTO)]
        for r in ipj(t, h, "route", "show"):
            dst = r.get("dst", "")
            if dst != "default" and ipaddress.IPv4Network(dst).subnet_of(ipaddress.IPv4Network(NETWORK)) \
                    and (dst, r.get("dev")) != (HOSTS[h][1], "cv0"):
                left.append(f"{h}: route {dst} {r.get('gateway', '')} {r.get('dev', '')}")
    if left:
        raise RuntimeError("not a clean state: " + "; ".join(left))


def check_path(t: Topology, dst: str = C2_IP) -> None:
    p = json.loads(t.exec("c1", sys.executable, PROBE, "ping", dst, "3", "0.05").stdout)
    if not p["received"]:
        raise RuntimeError(f"c1 cannot reach c2: {p}")


def describe(t: Topology, mode: str) -> None:
    """What h1 holds for the peer: the route, and the VXLAN device's settings, addresses, neighbour and FDB
    entries (compare the hand-made and our vxlan modes line by line)."""
    route = t.exec("h1", "ip", "-d", "route", "show", HOSTS["h2"][1]).stdout.strip()
    print(f"  h1 route: {route or '(none: the TUN route of the whole network)'}", flush=True)
    if MODES[mode][0] == backends.VXLAN:
        device = DEVICE6 if mode in V6_MODES else DEVICE
        family = "-6" if mode in V6_MODES else "-4"
        if mode in V6_MODES:
            route = t.exec("h1", "ip", "-6", "-d", "route", "show", SUBNET6["h2"]).stdout.strip()
            print(f"  h1 IPv6 route: {route}", flush=True)
        link = ipj(t, "h1", "-d", "link", "show", device)[0]
        print(f"  h1 {device}: mtu {link['mtu']} {link['address']} flags {','.join(link['flags'])} "
              f"qdisc {link.get('qdisc')} txqlen {link.get('txqlen')} gso {link.get('gso_max_size')}/"
              f"{link.get('gso_max_segs')} gro {link.get('gro_max_size')} "
              f"{json.dumps(link['linkinfo']['info_data'], sort_keys=True)}", flush=True)
        flags = ("tentative", "nodad", "dadfailed")
        addrs = [f"{a['local']}/{a['prefixlen']}" + "".join(f" {k}" for k in flags if a.get(k))
                 for x in ipj(t, "h1", family, "addr", "show", "dev", device) for a in x.get("addr_info", [])]
        print(f"  h1 {device} addresses: {', '.join(addrs)}", flush=True)
        neigh = t.exec("h1", "ip", family, "neigh", "show", "dev", device).stdout.strip().replace("\n", "; ")
        fdb = t.exec("h1", "bridge", "fdb", "show", "dev", device).stdout.strip().replace("\n", "; ")
        print(f"  h1 {device} neighbours: {neigh}; FDB: {fdb}", flush=True)


def cpu_seconds(proc: subprocess.Popen) -> float:
    """User + system CPU time of a process of ours, all its threads (``ip netns exec`` and taskset exec it)."""
    with open(f"/proc/{proc.pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


NAMED_THREADS = ("datapath", "peer-probes")  # the daemons' threads reported one by one (they name themselves)


def thread_times(proc: subprocess.Popen) -> dict:
    """{name: (CPU seconds, voluntary context switches)} of the NAMED_THREADS of a process of ours (the CPU time
    from schedstat, in nanoseconds: a thread that runs for microseconds at a time stays 0 in stat's ticks)."""
    out = {}
    base = f"/proc/{proc.pid}/task"
    for tid in os.listdir(base):
        try:
            with open(f"{base}/{tid}/stat") as fh:
                name = fh.read().split(" (", 1)[1].rsplit(")", 1)[0]
            if name not in NAMED_THREADS:
                continue
            with open(f"{base}/{tid}/status") as fh:
                waits = next(int(line.split()[1]) for line in fh if line.startswith("voluntary_ctxt_switches"))
            with open(f"{base}/{tid}/schedstat") as fh:
                ran = int(fh.read().split()[0]) / 1e9
        except (OSError, StopIteration):
            continue
        out[name] = (ran, waits)
    return out


def modes_of(text: str) -> list[str]:
    """The modes to measure, in MODES's order: the named ones, host-gw, and the reference of each fwd-* mode."""
    named = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in named if m not in MODES]
    if unknown:
        raise ValueError(f"unknown mode(s) {', '.join(unknown)} (the modes: {', '.join(MODES)})")
    want = set(named) | {"host-gw"} | {REFERENCE[m] for m in named if m in REFERENCE}
    return [m for m in MODES if m in want]


FIGURES = (("tcp1", "TCP x1", ".0f"), ("tcp4", "TCP x4", ".0f"), ("udp64_kpps", "UDP64 kpps", ".1f"),
           ("ping_ms", "ping ms", ".3f"))


def median_of(rounds: list[dict], mode: str, key: str) -> float | None:
    values = [r[mode].get(key) for r in rounds]
    return None if any(v is None for v in values) else statistics.median(values)


def ratios_of(rounds: list[dict], mode: str, ref: str, key: str) -> list[float] | None:
    """mode / ref of one figure, round by round (both measured within minutes of each other)."""
    pairs = [(r[mode].get(key), r[ref].get(key)) for r in rounds]
    return None if not all(a and b for a, b in pairs) else [a / b for a, b in pairs]


def report(rounds: list[dict], modes: list[str]) -> None:
    """Figures (medians over the rounds), then the ratios (medians of the rounds' ratios) with the reference's
    figure beside each."""
    print()
    print(f"{'':18} {'MTU':>5} {'TCP x1 Mbit/s':>14} {'TCP x4 Mbit/s':>14} {'UDP64 kpps':>10} {'ping ms':>8} "
          f"{'our CPU h1/h2':>14}")
    for mode in modes:
        fig = {key: median_of(rounds, mode, key) for key, _l, _f in FIGURES}
        cpu = "/".join(f"{statistics.median(r[mode]['ours_cpu'][i] for r in rounds):.1%}"
                       for i in range(len(rounds[0][mode]["ours_cpu"]))) or "-"
        print(f"{mode:18} {rounds[0][mode]['mtu']:5d} {fig['tcp1']:14.0f} {fig['tcp4']:14.0f} "
              f"{fig['udp64_kpps']:10.1f} {fig['ping_ms'] or float('nan'):8.3f} {cpu:>14}")
    for mode in modes:
        named = [sorted(set.intersection(*(set(r[mode]["threads"][i]) for r in rounds)))
                 for i in range(len(rounds[0][mode].get("threads", [])))]
        if any(named):
            print(f"{mode} threads, medians over the rounds: " + "; ".join(
                f"{h} " + ", ".join(f"{n} {statistics.median(r[mode]['threads'][i][n][0] for r in rounds):.2%} of a "
                                    f"core ({statistics.median(r[mode]['threads'][i][n][1] for r in rounds):.0f} "
                                    f"waits/s)" for n in names)
                for i, (h, names) in enumerate(zip(("h1", "h2"), named))))
    pairs = [(m, REFERENCE[m]) for m in modes if REFERENCE.get(m) in modes]
    pairs += [(m, "host-gw") for m in modes if m != "host-gw" and (m, "host-gw") not in pairs]
    print()
    print("ratios: mode / reference" + (f", medians of the {len(rounds)} rounds' ratios" if len(rounds) > 1 else "")
          + "; the reference's own figure after 'of' (ping: RTT ratio, lower is better)")
    print(f"{'':32}" + "".join(f" {label:>17}" for _k, label, _f in FIGURES))
    for mode, ref in pairs:
        cells = []
        for key, _label, fmt in FIGURES:
            q, b = ratios_of(rounds, mode, ref, key), median_of(rounds, ref, key)
            cells.append(f"{statistics.median(q):.3f} of {b:{fmt}}" if q else "n/a")
        print(f"{mode + ' / ' + ref:32}" + "".join(f" {c:>17}" for c in cells))
    for mode, ref in pairs:
        if ref != REFERENCE.get(mode):
            continue
        goal = GOALS.get(mode, GOAL)
        below = []
        for key, label, _f in FIGURES[:3]:
            q = ratios_of(rounds, mode, ref, key)
            if q and statistics.median(q) < goal:
                below.append(f"{label} {statistics.median(q):.3f}")
            if q and len(rounds) > 1:
                print(f"{mode} / {ref} {label} by round: " + ", ".join(f"{x:.3f}" for x in q))
        verdict = "NOT met: " + ", ".join(below) if below else "met"
        print(f"goal {mode} >= {goal} of {ref} (throughput): {verdict}")


def run_mode(t: Topology, mode: str, args, cpus: list[int], ccpus, control: Control | None) -> dict:
    """Set `mode` up from a checked clean state, measure it, take it down."""
    check_clean(t)
    v6 = mode in V6_MODES
    mtu = (backends.mtu6 if v6 else backends.mtu)(MODES[mode][0], UNDERLAY_MTU)
    set_container_mtu(t, mtu)
    dst = C2_IP6 if v6 else C2_IP
    print(f"{mode}: {MODES[mode][1]}; container MTU {mtu}", flush=True)
    with mode_running(t, mode, args, cpus, control) as ours:
        check_path(t, dst)
        describe(t, mode)
        stopped = ours if mode in STOPPED_MODES else []
        for p in stopped:
            os.kill(p.pid, signal.SIGSTOP)
        try:
            before, start = [cpu_seconds(p) for p in ours], time.monotonic()
            threads_before = [thread_times(p) for p in ours]
            res = measure(t, args.duration, mode, args.repeat, args.tcp1_only, ccpus, dst)
            wall = time.monotonic() - start
        finally:
            for p in stopped:
                os.kill(p.pid, signal.SIGCONT)
        res["mtu"] = mtu
        res["ours_cpu"] = [(cpu_seconds(p) - b) / wall for p, b in zip(ours, before)]
        # {name: (share of a core, waits a second)} of each host's named threads
        res["threads"] = [{n: ((c - tb[n][0]) / wall, (w - tb[n][1]) / wall) for n, (c, w) in thread_times(p).items()
                           if n in tb} for p, tb in zip(ours, threads_before)]
        if ours:
            used = ", ".join(f"{h}: {c:.1%}" for h, c in zip(("h1", "h2"), res["ours_cpu"]))
            print(f"  our processes used {used} of a core over the measurement", flush=True)
        for h, named in zip(("h1", "h2"), res["threads"]):
            if named:
                shown = (f"{n} {c:.2%} of a core ({w:.0f} waits/s)" for n, (c, w) in sorted(named.items()))
                print(f"  {h} threads: " + ", ".join(shown), flush=True)
    return res


def mean_of(runs: list[dict]) -> dict:
    """One round's figures of a mode measured more than once (--abba): the means, the TCP runs all kept."""
    if len(runs) == 1:
        return runs[0]
    res = dict(runs[0])
    for key, value in runs[0].items():
        values = [r[key] for r in runs]
        if key.endswith("_runs"):
            res[key] = [x for v in values for x in v]
        elif key == "ours_cpu":
            res[key] = [statistics.mean(v) for v in zip(*values)]
        elif key == "threads":
            res[key] = [{n: tuple(statistics.mean(x) for x in zip(*(h[n] for h in hosts))) for n in hosts[0]
                         if all(n in h for h in hosts)} for hosts in zip(*values)]
        elif isinstance(value, (int, float)) and key != "mtu" and all(isinstance(v, (int, float)) for v in values):
            res[key] = statistics.mean(values)
    return res


def round_ratios(one: dict, modes: list[str]) -> str:
    """This round's TCP x1 ratio of each mode to its reference, to follow a long run as it goes."""
    return ", ".join(f"{m} / {REFERENCE[m]} {one[m]['tcp1'] / one[REFERENCE[m]]['tcp1']:.3f}" for m in modes
                     if REFERENCE.get(m) in modes and one[REFERENCE[m]]["tcp1"]) or "no pair"


def load() -> str:
    with open("/proc/loadavg") as fh:
        return " ".join(fh.read().split()[:3])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--prefix", default="fbench-")
    ap.add_argument("--modes", default=",".join(MODES),
                    help=f"comma-separated, of {', '.join(MODES)} (default: all; host-gw is always measured)")
    ap.add_argument("--repeat", type=int, default=1, help="TCP runs per figure (the median is reported)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="measure all the modes this many times in turn, the order reversed every other round; "
                         "figures are medians over the rounds, ratios the medians of each round's ratios")
    ap.add_argument("--abba", action="store_true",
                    help="measure every mode twice in a round, the second time in the mirrored order (A B B A), "
                         "a mode's figure of the round the mean of its two")
    ap.add_argument("--python", default=sys.executable, help="interpreter that runs the forwarders and daemons")
    ap.add_argument("--threads", action="store_true", help="run each udp forwarder with --threads")
    ap.add_argument("--tcp1-only", action="store_true", help="measure only one TCP stream (quicker)")
    ap.add_argument("--probe-interval", type=float, default=1.0,
                    help="seconds between two probes of the peer in fwd-udp-probes (the daemons' flag; 1: the "
                         "rate of the probes' fast rounds, 10 the default)")
    add_placement_args(ap)
    args = ap.parse_args()
    try:
        modes = modes_of(args.modes)
    except ValueError as exc:
        ap.error(str(exc))
    if os.geteuid() != 0:
        print("needs root (network namespaces, TUN)", file=sys.stderr)
        return 2
    cpus, ccpus = placement(args)
    t = Topology(args.prefix)
    control = None
    rounds = []
    try:
        t.create()
        if any(m in V6_MODES for m in modes):
            add_ipv6(t)
        if any(m in DAEMON_MODES for m in modes):
            control = Control(t).create()
        print(f"modes {', '.join(modes)}; {args.duration}s per iperf run, TCP medians of {args.repeat}, "
              f"{args.rounds} round(s){', each mode twice (ABBA)' if args.abba else ''}; h1 on core {cpus[0]}, h2 on core {cpus[1]}"
              + (" (the containers float)" if ccpus is None else " (with their containers)")
              + f"; load average {load()}", flush=True)
        for n in range(args.rounds):
            if args.rounds > 1:
                print(f"-- round {n + 1} of {args.rounds}", flush=True)
            order = modes if n % 2 == 0 else modes[::-1]
            runs: dict[str, list[dict]] = {}
            for mode in order + (order[::-1] if args.abba else []):
                runs.setdefault(mode, []).append(run_mode(t, mode, args, cpus, ccpus, control))
            rounds.append({mode: mean_of(r) for mode, r in runs.items()})
            print(f"-- round {n + 1}: TCP x1 {round_ratios(rounds[-1], modes)}; load average {load()}", flush=True)
        check_clean(t)
    finally:
        t.destroy()
        if control is not None:
            control.destroy()
    print(f"load average at the end {load()} (other work on the machine skews the figures)")
    report(rounds, modes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
