"""Two simulated hosts in network namespaces, each with a "container" namespace behind it.

    c1 (10.5.1.2/24) --veth-- h1 (10.5.1.1, underlay 10.213.0.11/24)
                                 |  veth underlay
    c2 (10.5.2.2/24) --veth-- h2 (10.5.2.1, underlay 10.213.0.12/24)

Everything lives in namespaces this module creates (names start with the
given prefix) and is removed by ``destroy()``; processes are started with
``spawn`` and stopped by their recorded PIDs only.  Used by the
integration tests and by bench/datapath.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
if os.path.join(REPO, "tests") not in sys.path:  # (bench/ imports this module too)
    sys.path.insert(0, os.path.join(REPO, "tests"))

from support import claims  # noqa: E402
from support.procs import stop_process  # noqa: E402

FORWARDER_DIR = os.path.join(REPO, "forwarder")
# The checkout as the collection (tests/conftest.py and bench/repo_collection.py link it there): the data path
# takes pyroute2 from flannel_forwarder/iproute.py, which imports the collection's module_utils, as the daemon does.
COLLECTIONS = os.path.join(REPO, ".cache", "collections")


def debug_module(forwarder_dir: str) -> str:
    """The data path's debug command line in the build at *forwarder_dir* (bench/datapath_ab.py runs older builds,
    where it was flannel_forwarder.device)."""
    if os.path.exists(os.path.join(forwarder_dir, "flannel_forwarder", "udp", "debug.py")):
        return "flannel_forwarder.udp.debug"
    return "flannel_forwarder.device"


NETWORK = "10.5.0.0/16"
HOSTS = {
    # name: (underlay ip, subnet, gateway in subnet, container ip)
    "h1": ("10.213.0.11", "10.5.1.0/24", "10.5.1.1", "10.5.1.2"),
    "h2": ("10.213.0.12", "10.5.2.0/24", "10.5.2.1", "10.5.2.2"),
}
PORT = 8285
UNDERLAY_MTU = 1500
OVERLAY_MTU = UNDERLAY_MTU - 28


def sh(*args: str, check: bool = True, capture: bool = False, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(args, check=check, text=True, capture_output=capture, timeout=timeout)


class Topology:
    def __init__(self, prefix: str):
        self.prefix = prefix
        self.procs: list[subprocess.Popen] = []
        self.created: list[str] = []

    def ns(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def exec(self, name: str, *cmd: str, check: bool = True, capture: bool = True, timeout: float = 60):
        return sh("ip", "netns", "exec", self.ns(name), *cmd, check=check, capture=capture, timeout=timeout)

    def _sysctl(self, name: str, key: str, value: str) -> None:
        self.exec(name, "sysctl", "-qw", f"{key}={value}")

    def create(self) -> "Topology":
        claims.reap_dead()  # bench/datapath.py runs it outside pytest, whose session start reaps otherwise
        for n in ("h1", "h2", "c1", "c2"):
            claims.record(netns=[self.ns(n)])
            sh("ip", "netns", "add", self.ns(n))
            self.created.append(self.ns(n))
            sh("ip", "-n", self.ns(n), "link", "set", "lo", "up")
        # underlay
        sh("ip", "-n", self.ns("h1"), "link", "add", "u0", "mtu", str(UNDERLAY_MTU), "type", "veth",
           "peer", "name", "u0", "netns", self.ns("h2"))
        for h in ("h1", "h2"):
            under, subnet, gw, cip = HOSTS[h]
            c = "c" + h[1]
            sh("ip", "-n", self.ns(h), "link", "set", "u0", "mtu", str(UNDERLAY_MTU), "up")
            sh("ip", "-n", self.ns(h), "addr", "add", f"{under}/24", "dev", "u0")
            for key in ("net.ipv4.ip_forward=1", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0"):
                k, v = key.split("=")
                self._sysctl(h, k, v)
            # container link (MTU as flannel tells docker: underlay - 28)
            sh("ip", "-n", self.ns(h), "link", "add", "cv0", "mtu", str(OVERLAY_MTU), "type", "veth",
               "peer", "name", "eth0", "netns", self.ns(c))
            sh("ip", "-n", self.ns(h), "addr", "add", f"{gw}/24", "dev", "cv0")
            sh("ip", "-n", self.ns(h), "link", "set", "cv0", "up")
            sh("ip", "-n", self.ns(c), "link", "set", "eth0", "mtu", str(OVERLAY_MTU), "up")
            sh("ip", "-n", self.ns(c), "addr", "add", f"{cip}/24", "dev", "eth0")
            sh("ip", "-n", self.ns(c), "route", "add", "default", "via", gw)
        return self

    # -- host-gw: plain kernel routing between the hosts --------------------------

    def host_gw(self, on: bool = True) -> None:
        verb = "add" if on else "del"
        sh("ip", "-n", self.ns("h1"), "route", verb, HOSTS["h2"][1], "via", HOSTS["h2"][0], check=on)
        sh("ip", "-n", self.ns("h2"), "route", verb, HOSTS["h1"][1], "via", HOSTS["h1"][0], check=on)

    # -- processes -------------------------------------------------------------------

    def spawn(self, name: str, *cmd: str, cpu: int | None = None, **kw) -> subprocess.Popen:
        pre = ["ip", "netns", "exec", self.ns(name)]
        if cpu is not None:
            pre += ["taskset", "-c", str(cpu)]
        p = subprocess.Popen(pre + list(cmd), **kw)
        claims.record(pids=[p.pid])
        self.procs.append(p)
        return p

    def start_forwarder(self, host: str, *, offload: bool = True, cpu: int | None = None,
                        stats_file: str | None = None, extra_peers: list[str] = (),
                        python: str = sys.executable, extra_args: list[str] = ()) -> "Forwarder":
        under, subnet, _gateway, _container = HOSTS[host]
        other = "h2" if host == "h1" else "h1"
        cmd = [python, "-m", debug_module(FORWARDER_DIR), "--tun-name", "flannel0", "--network", NETWORK,
               "--subnet", subnet, "--bind", f"{under}:{PORT}", "--mtu", str(OVERLAY_MTU),
               "--peer", f"{HOSTS[other][1]}={HOSTS[other][0]}:{PORT}"]
        for p in extra_peers:
            cmd += ["--peer", p]
        if not offload:
            cmd.append("--no-offload")
        if stats_file:
            cmd += ["--stats-file", stats_file]
        cmd += list(extra_args)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([FORWARDER_DIR, COLLECTIONS] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        proc = self.spawn(host, *cmd, cpu=cpu, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        line = proc.stdout.readline()
        if not line:
            err = proc.stderr.read()
            raise RuntimeError(f"forwarder on {host} did not start: {err}")
        return Forwarder(proc, json.loads(line), stats_file)

    def stop(self, proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 10) -> int | None:
        return stop_process(proc, sig, timeout)

    def destroy(self) -> None:
        for p in reversed(self.procs):
            try:
                self.stop(p, timeout=5)
            except Exception:
                pass
        for n in reversed(self.created):
            sh("ip", "netns", "del", n, check=False)
        claims.forget(netns=self.created, pids=[p.pid for p in self.procs])
        self.procs.clear()
        self.created.clear()


class Forwarder:
    def __init__(self, proc: subprocess.Popen, info: dict, stats_file: str | None):
        self.proc = proc
        self.info = info
        self.stats_file = stats_file

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stats(self, wait: float = 2.5) -> dict:
        """The counters, fresh: waits for the next periodic dump (written every second)."""
        assert self.stats_file, "started without --stats-file"
        before = os.stat(self.stats_file).st_mtime_ns if os.path.exists(self.stats_file) else 0
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if os.path.exists(self.stats_file) and os.stat(self.stats_file).st_mtime_ns != before:
                break
            time.sleep(0.05)
        with open(self.stats_file) as f:
            return json.load(f)
