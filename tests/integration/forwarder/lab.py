"""Namespace hosts on a bridged underlay that also reaches a real etcd in the root namespace.

    root ns: etcd on 10.214.0.1 ---veth--- [ul: bridge br0] ---veth--- hN (10.214.0.1N/24, default via .254)
                                                                        |
                                                                  cN "container" (10.5.N.2/24) via cv0 (10.5.N.1)

Every namespace and link is created here with a per-run prefix and removed
by destroy(); processes are stopped by their recorded PIDs only. Each is also
recorded in support.claims first, so that what a killed run left is removed
by the next one.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

from support import claims
from support.procs import stop_process

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
PROBE = os.path.join(REPO, "tests", "integration", "forwarder_datapath", "probe.py")
CONTROLLER = "10.214.0.1"
NETWORK = "10.5.0.0/16"
# The daemon's package and the collection's module_utils (under their import path), as the roles install them.
PYTHONPATH = os.pathsep.join([os.path.join(REPO, "forwarder"), os.path.join(REPO, ".cache", "collections")])


def wait_for(predicate, timeout=10.0, what="condition", interval=0.1):
    """The predicate's first true value, polled every `interval` s; AssertionError naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("timed out waiting for %s" % what)


def sh(*args, check=True, timeout=30):
    return subprocess.run(list(args), check=check, capture_output=True, text=True, timeout=timeout)


def host_ip(n):
    return "10.214.0.%d" % (10 + n)


def subnet(n):
    return "10.5.%d.0/24" % n


def container_ip(n):
    return "10.5.%d.2" % n


# The IPv6 side of a dual-stack lab (add_host(ipv6=True)): a ULA underlay /64 and the overlay's IPv6 network.
NETWORK6 = "fd00:5::/48"


def host_ip6(n):
    return "fd00:214::%d" % (10 + n)


def subnet6(n):
    return "fd00:5:0:%d::/64" % n


def container_ip6(n):
    return "fd00:5:0:%d::2" % n


class Lab:
    def __init__(self, prefix):
        self.prefix = prefix
        self.namespaces = []
        self.root_link = None
        self.procs = []
        self.tmp = tempfile.mkdtemp(prefix="fwd-lab-")

    def ns(self, name):
        return self.prefix + name

    def _netns(self, name):
        claims.record(netns=[self.ns(name)])
        sh("ip", "netns", "add", self.ns(name))
        self.namespaces.append(self.ns(name))
        sh("ip", "-n", self.ns(name), "link", "set", "lo", "up")

    def create(self):
        taken = sh("ip", "-o", "addr", "show", "to", CONTROLLER + "/32").stdout.split()
        if taken:
            raise RuntimeError("the lab's controller address %s is already on link %s of this machine: another "
                               "lab runs (a test run beside this one?)" % (CONTROLLER, taken[1]))
        self._netns("ul")
        sh("ip", "-n", self.ns("ul"), "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", self.ns("ul"), "link", "set", "br0", "up")
        self.root_link = self.prefix + "c"
        claims.record(links=[self.root_link])
        sh("ip", "link", "add", self.root_link, "type", "veth", "peer", "name", "ctl", "netns", self.ns("ul"))
        sh("ip", "addr", "add", CONTROLLER + "/24", "dev", self.root_link)
        sh("ip", "link", "set", self.root_link, "up")
        sh("ip", "-n", self.ns("ul"), "link", "set", "ctl", "master", "br0", "up")
        return self

    def add_host(self, n, mtu=1472, ipv6=False):
        """Host n and its container; `mtu`: the container link's (FLANNEL_MTU of the backend under test);
        `ipv6`: dual-stack, the underlay address host_ip6(n)/64 and the container's container_ip6(n) too."""
        h, c = "h%d" % n, "c%d" % n
        self._netns(h)
        self._netns(c)
        sh("ip", "-n", self.ns(h), "link", "add", "u0", "type", "veth", "peer", "name", "p%d" % n,
           "netns", self.ns("ul"))
        sh("ip", "-n", self.ns("ul"), "link", "set", "p%d" % n, "master", "br0", "up")
        sh("ip", "-n", self.ns(h), "addr", "add", host_ip(n) + "/24", "dev", "u0")
        sh("ip", "-n", self.ns(h), "link", "set", "u0", "up")
        # A default route to an address nothing answers: the forwarder finds its
        # public IP by it, and nothing can leave.
        sh("ip", "-n", self.ns(h), "route", "add", "default", "via", "10.214.0.254")
        for key in ("net.ipv4.ip_forward=1", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0"):
            sh("ip", "netns", "exec", self.ns(h), "sysctl", "-qw", key)
        sh("ip", "-n", self.ns(h), "link", "add", "cv0", "mtu", str(mtu), "type", "veth", "peer", "name", "eth0",
           "netns", self.ns(c))
        sh("ip", "-n", self.ns(h), "addr", "add", "10.5.%d.1/24" % n, "dev", "cv0")
        sh("ip", "-n", self.ns(h), "link", "set", "cv0", "up")
        sh("ip", "-n", self.ns(c), "link", "set", "eth0", "mtu", str(mtu), "up")
        sh("ip", "-n", self.ns(c), "addr", "add", container_ip(n) + "/24", "dev", "eth0")
        sh("ip", "-n", self.ns(c), "route", "add", "default", "via", "10.5.%d.1" % n)
        if ipv6:
            sh("ip", "netns", "exec", self.ns(h), "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
            sh("ip", "-n", self.ns(h), "addr", "add", host_ip6(n) + "/64", "dev", "u0", "nodad")
            sh("ip", "-n", self.ns(h), "addr", "add", "fd00:5:0:%d::1/64" % n, "dev", "cv0", "nodad")
            sh("ip", "-n", self.ns(c), "addr", "add", container_ip6(n) + "/64", "dev", "eth0", "nodad")
            sh("ip", "-n", self.ns(c), "-6", "route", "add", "default", "via", "fd00:5:0:%d::1" % n)

    def files(self, n):
        d = os.path.join(self.tmp, "h%d" % n)
        os.makedirs(d, exist_ok=True)
        return os.path.join(d, "subnet.env"), os.path.join(d, "docker")

    def state_file(self, n):
        """Where host n's forwarder keeps the subnet it last held (its /var/lib/flannel-forwarder/subnet)."""
        return os.path.join(self.tmp, "h%d" % n, "last-subnet")

    def start_forwarder(self, n, endpoint, *extra, ready=True, timeout=20, command=None):
        """flannel-forwarder in host n, with a NOTIFY_SOCKET of ours; waits for READY=1 when `ready`.
        `command`: what runs it (default: this Python, -m flannel_forwarder from the checkout)."""
        subnet_env, docker = self.files(n)
        notify_path = os.path.join(self.tmp, "notify-h%d-%d" % (n, len(self.procs)))
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(notify_path)
        env = dict(os.environ, NOTIFY_SOCKET=notify_path, PYTHONPATH=PYTHONPATH)
        log = open(os.path.join(self.tmp, "h%d.log" % n), "ab")
        daemon = command or [sys.executable, "-m", "flannel_forwarder"]
        cmd = ["ip", "netns", "exec", self.ns("h%d" % n)] + daemon + [
            "--etcd-endpoints", endpoint, "--subnet-file", subnet_env, "--docker-opts-file", docker,
            "--lease-state-file", self.state_file(n),
            "--healthz-ip", "127.0.0.1", "--healthz-port", "9090", "--log-level", "debug"] + list(extra)
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        claims.record(pids=[proc.pid])
        self.procs.append(proc)
        proc.notify = sock
        proc.log_path = log.name
        if ready:
            self.wait_notify(proc, "READY=1", timeout)
        return proc

    def wait_notify(self, proc, word, timeout=20):
        proc.notify.settimeout(0.5)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError("forwarder exited %s before %s:\n%s" % (proc.returncode, word, self.log(proc)))
            try:
                msg = proc.notify.recv(4096).decode()
            except socket.timeout:
                continue
            if word in msg.split("\n"):
                return msg
        raise AssertionError("no %s within %ss:\n%s" % (word, timeout, self.log(proc)))

    @staticmethod
    def log(proc):
        with open(proc.log_path, encoding="utf-8", errors="replace") as fh:
            return fh.read()[-3000:]

    def stop(self, proc, sig=signal.SIGTERM, timeout=15):
        return stop_process(proc, sig, timeout)

    def run(self, name, *cmd, check=True, timeout=60):
        return sh("ip", "netns", "exec", self.ns(name), *cmd, check=check, timeout=timeout)

    def forwarder_command(self, n, *args):
        """flannel-forwarder ARGS run to completion in host n (for its one-shot actions)."""
        return self.run("h%d" % n, "env", "PYTHONPATH=" + PYTHONPATH, sys.executable, "-m", "flannel_forwarder",
                        *args)

    def probe(self, name, *args, timeout=90):
        import json
        out = self.run(name, sys.executable, PROBE, *args, timeout=timeout)
        return json.loads(out.stdout.strip().splitlines()[-1])

    def first_echo(self, name, dst, timeout=10.0):
        """Wait until one echo from `name` to `dst` comes back. The first IPv6 echo between two containers of
        the lab is sometimes lost (kernel 6.18, the vxlan and the host-gw backends alike, the daemons before
        and after the event-driven kernel sync; not after flushing any neighbour table): a test that counts
        echoes sends this one first."""
        wait_for(lambda: self.probe(name, "ping", dst, "1", "0")["received"] == 1, timeout=timeout,
                 what="a first echo from %s to %s" % (name, dst))

    def http(self, n, path):
        """(status, body) of the health server of host n."""
        code = ("import urllib.request, urllib.error, sys\n"
                "try:\n r = urllib.request.urlopen('http://127.0.0.1:9090%s', timeout=5); print(r.status); print(r.read().decode())\n"
                "except urllib.error.HTTPError as e:\n print(e.code); print(e.read().decode())\n" % path)
        out = self.run("h%d" % n, sys.executable, "-c", code).stdout
        status, _nl, body = out.partition("\n")
        return int(status), body

    def metric(self, n, name):
        """Sum of the samples of flannel_forwarder_<name> (with a label filter in `name` if given)."""
        _status, body = self.http(n, "/metrics")
        wanted = "flannel_forwarder_" + name
        metric = wanted.split("{", 1)[0]
        total = None
        for line in body.splitlines():
            # the metric itself, not another whose name it begins (peers, peers_by_state)
            if line.startswith(wanted) and line.split("{", 1)[0].split(" ", 1)[0] == metric:
                total = (total or 0) + float(line.rsplit(" ", 1)[1])
        return total

    def destroy(self):
        for proc in reversed(self.procs):
            try:
                self.stop(proc, timeout=5)
            except Exception:  # best effort: the namespaces go next anyway
                pass
            proc.notify.close()
        for name in reversed(self.namespaces):
            sh("ip", "netns", "del", name, check=False)
        if self.root_link:
            sh("ip", "link", "del", self.root_link, check=False)
        claims.forget(netns=self.namespaces, links=[self.root_link] if self.root_link else [],
                      pids=[p.pid for p in self.procs])
