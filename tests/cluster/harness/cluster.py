#!/usr/bin/env python3
"""Test cluster harness: real Debian 12 (or, per host, 13) systemd hosts (systemd-nspawn --boot),
each in its own network namespace on a private test underlay, with sshd and
dockerd, plus etcd on the controller: by default a 3-member cluster with TLS
and authentication (tests/support/etcd_cluster.py), with --etcd-plain one
plain-HTTP member.  Stdlib only.

CLI (as root):
    cluster.py image [--rebuild] [--suite bookworm|trixie]
    cluster.py up [--hosts N] [--state-dir DIR] [--no-etcd | --etcd-plain] [--prefix P] [--underlay A.B.C]
                  [--suites S1,S2,... | --mixed]
    cluster.py down [--state-dir DIR] [--keep-data]
    cluster.py reboot HOST [--state-dir DIR]
    cluster.py stop HOST [--state-dir DIR]      (poweroff; disk, netns, cgroups stay)
    cluster.py start HOST [--state-dir DIR]
    cluster.py exec [--state-dir DIR] [--nsenter] HOST -- CMD...
    cluster.py status [--state-dir DIR]

Python API (see Cluster):
    c = Cluster(state_dir, hosts=3); c.up(); c.run("flh1", "docker ps"); c.reboot("flh1"); c.down()

Layout of the network (default underlay 10.213.0.0/24):

    root netns (controller) -- veth <prefix>flc0 10.213.0.1/24 (and .2, .3: the etcd members)
         |                                and fd00:10:213::1/64 (peer "ctl" in the underlay netns)
    netns <prefix>flunder: bridge br0 (nothing else; no address)
         |-- veth <host>  <->  eth0 in netns <prefix><host>: 10.213.0.(10+i)/24,
                                default via 10.213.0.254 (no one answers),
                                and fd00:10:213::(10+i)/64 (no IPv6 route beyond it)

The IPv6 underlay (for dual-stack overlays) is a ULA /64 spelt from the IPv4
one (ipv6_underlay: 10.213.0 -> fd00:10:213::/64), added without duplicate
address detection, so that it is usable at once, as a static address would be.

Everything the harness creates is recorded in <state-dir>/state.json; `down`
only signals PIDs recorded there (checked against their recorded start time).
"""

import argparse
import contextlib
import ipaddress
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS_DIR = os.path.dirname(os.path.dirname(HERE))
if __package__:
    from . import image as image_mod  # type: ignore
else:  # run as a script: tests/cluster/harness/cluster.py
    sys.path.insert(0, HERE)
    import image as image_mod  # type: ignore  # noqa: E402
if TESTS_DIR not in sys.path:  # tests/support: the etcd cluster launcher (stdlib too)
    sys.path.insert(0, TESTS_DIR)
from support import claims, ledger  # noqa: E402
from support.etcd_cluster import EtcdCluster  # noqa: E402
from support.procs import pid_alive, proc_start_time, signal_recorded  # noqa: E402,F401 (the API uses them)

SELF = os.path.abspath(__file__)
DEFAULT_STATE_DIR = os.environ.get("OVERLAY_FLANNEL_CLUSTER_STATE", "/tmp/overlay-flannel-cluster")
CGROUP_ROOT = "/sys/fs/cgroup"
NSPAWN_PROPAGATE = "/run/systemd/nspawn/propagate"
NSPAWN_LOCKS = "/run/systemd/nspawn/locks"
REBOOT_EXIT_CODE = 133
CLAIMS_DIR = "/run/overlay-flannel-clusters"  # <underlay netns name> -> the state dir using it
ETCD_MEMBERS = 3  # on the controller's underlay addresses .1, .2, .3
ETCD_USER = "flannel"


# --------------------------------------------------------------------------- helpers

def log(msg):
    print("[cluster %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


def sh(argv, check=True, **kw):
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    res = subprocess.run(argv, check=False, **kw)
    if check and res.returncode != 0:
        raise RuntimeError("command failed (rc=%d): %s\n%s%s" % (
            res.returncode, " ".join(argv), res.stdout or "", res.stderr or ""))
    return res


def reap(pid):
    try:
        os.waitpid(pid, os.WNOHANG)
    except (ChildProcessError, OSError, TypeError):
        pass


def wait_gone(items, timeout):
    """items: list of (pid, start_time). True when all are gone within timeout."""
    deadline = time.monotonic() + timeout
    while True:
        for pid, _start_time in items:
            reap(pid)
        if not any(pid_alive(pid, st) for pid, st in items):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


def write_json_atomic(path, data):
    tmp = "%s.tmp-%d-%d" % (path, os.getpid(), threading.get_ident())
    with open(tmp, "w") as fh:
        json.dump(data, fh, indent=1, sort_keys=True)
    os.rename(tmp, path)


def read_json(path, default=None):
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return default


def netns_exists(name):
    return os.path.exists("/run/netns/" + name)


def link_exists(name, netns=None):
    argv = ["ip"] + (["-n", netns] if netns else []) + ["link", "show", "dev", name]
    return sh(argv, check=False).returncode == 0


def port_free(host, port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


def free_port(host="127.0.0.1"):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def cgroup_procs(path):
    pids = []
    for dirpath, _dirs, files in os.walk(path):
        if "cgroup.procs" in files:
            try:
                with open(os.path.join(dirpath, "cgroup.procs")) as fh:
                    pids += [int(x) for x in fh.read().split()]
            except OSError:
                pass
    return pids


def remove_cgroup_tree(path):
    """rmdir a cgroup and its children, bottom-up.  Returns what could not be removed."""
    if not os.path.isdir(path):
        return []
    left = []
    for dirpath, _dirs, _files in sorted(os.walk(path), key=lambda t: len(t[0]), reverse=True):
        try:
            os.rmdir(dirpath)
        except OSError:
            left.append(dirpath)
    return left


def v1_cgroup_dirs(pid="self"):
    """The directories of the cgroup v1 controller hierarchies (not name=systemd) that
    process `pid` is in.  nspawn gives the host a cgroup namespace rooted there, so a
    dockerd cgroup-parent "X" inside the host is <that dir>/X on the machine."""
    mounts = {}
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            pre, post = line.split(" - ", 1)
            fields = post.split()
            if fields[0] == "cgroup":
                opts = set(fields[2].split(","))
                mounts[pre.split()[4]] = opts
    out = []
    with open("/proc/%s/cgroup" % pid) as fh:
        for line in fh:
            _hid, ctrls, path = line.rstrip("\n").split(":", 2)
            if not ctrls or ctrls.startswith("name="):
                continue
            wanted = set(ctrls.split(","))
            for mp, opts in mounts.items():
                if wanted <= opts:
                    out.append(os.path.normpath(mp + "/" + path))
                    break
    return sorted(set(out))


def host_suites(hosts, suites=None, mixed=False):
    """The Debian suite of each of `hosts` hosts, in order.  `suites`: a list or a comma-separated
    string, one suite per host, or a single one for all; `mixed`: the default suite and trixie
    alternately (flh1 bookworm, flh2 trixie, flh3 bookworm, ...).  Neither: the default suite."""
    if suites and mixed:
        raise ValueError("give suites or mixed, not both")
    if mixed:
        cycle = [image_mod.DEFAULT_SUITE] + [x for x in sorted(image_mod.SUITES) if x != image_mod.DEFAULT_SUITE]
        return [cycle[i % len(cycle)] for i in range(hosts)]
    if not suites:
        return [image_mod.DEFAULT_SUITE] * hosts
    if isinstance(suites, str):
        suites = [x.strip() for x in suites.split(",")]
    suites = list(suites)
    if len(suites) == 1:
        suites = suites * hosts
    if len(suites) != hosts:
        raise ValueError("%d suites for %d hosts: give one per host, or one for all" % (len(suites), hosts))
    for suite in suites:
        image_mod.check_suite(suite)
    return suites


def systemd_major(installed):
    """systemd's major version from an image manifest's "installed" list ("systemd 257.9-1~deb13u1"), or None."""
    for line in installed or []:
        name, _sep, version = line.partition(" ")
        if name == "systemd":
            digits = version.split(".", 1)[0].split(":")[-1]
            return int(digits) if digits.isdigit() else None
    return None


def ipv6_underlay(underlay, last=None):
    """The IPv6 /64 of the test underlay `underlay` ("10.213.0"), its octets as the ULA's groups,
    "fd00:10:213::/64"; with `last`, the address whose last group is that IPv4 last octet's digits
    (10.213.0.11 -> "fd00:10:213::11"), compressed as `ip` prints it."""
    prefix = "fd00:%s:" % ":".join(str(int(octet)) for octet in underlay.split("."))
    if last is None:
        return str(ipaddress.IPv6Network(prefix + ":/64"))
    return str(ipaddress.IPv6Address(prefix + ":%d" % last))


class Host:
    """One test host: `name` (= hostname), `ip` (underlay address), `netns`, `ip6` (underlay IPv6 address, None
    for a cluster brought up before the underlay had one)."""

    def __init__(self, name, ip, netns, ip6=None):
        self.name = name
        self.ip = ip
        self.netns = netns
        self.ip6 = ip6

    def __repr__(self):
        return "Host(%r, %r)" % (self.name, self.ip)

    def __iter__(self):  # name, ip = host
        return iter((self.name, self.ip))


# --------------------------------------------------------------------------- the cluster

class Cluster:
    """A set of nspawn hosts on a private underlay, plus etcd.

    Cluster(state_dir, hosts=3)           # describe a new cluster (nothing happens yet)
    Cluster.load(state_dir)               # attach to one brought up earlier (e.g. by the CLI)
    .up(timeout=240) / .down(keep_data=False)
    .run(host, cmd, check=False, timeout=120, input=None, via="ssh") -> CompletedProcess
    .reboot(host, timeout=180)
    .hosts -> [Host(name, ip)], .host(name), .etcd_endpoint, .etcd_local_endpoint, .etcd (EtcdCluster),
    .etcd_module_args(), .etcdctl(...), .etcd_endpoints, .etcd_local_endpoints,
    .inventory_path, .ssh_config_path, .key_path, .controller_ip, .state_path
    """

    def __init__(self, state_dir=DEFAULT_STATE_DIR, hosts=3, prefix="", underlay="10.213.0",
                 etcd=True, name_base="flh", attach=False, etcd_plain=False,
                 etcd_prefix="/coreos.com/network", suites=None, mixed=False):
        self.state_dir = os.path.abspath(state_dir)
        self.state_path = os.path.join(self.state_dir, "state.json")
        self.inventory_path = os.path.join(self.state_dir, "inventory.ini")
        self.ssh_config_path = os.path.join(self.state_dir, "ssh_config")
        self.key_path = os.path.join(self.state_dir, "id_ed25519")
        self.mux_dir = os.path.join(self.state_dir, "ssh-mux")
        self._mux_locks = {}
        self._mux_guard = threading.Lock()
        self.secrets_path = os.path.join(self.state_dir, "group_vars", "flannel.yml")
        self._etcd = None
        self.state = read_json(self.state_path)
        if self.state is None or (not attach and self.state.get("phase") in ("new", "down")):
            # nothing running from an earlier cluster here: describe a fresh one
            self.state = self._new_state(hosts, prefix, underlay, etcd, name_base, host_suites(hosts, suites, mixed))
            e = self.state["etcd"]
            e["mode"] = "plain" if etcd_plain else "cluster"
            e["prefix"] = etcd_prefix
            if not etcd_plain:
                e.update(members=ETCD_MEMBERS, user=ETCD_USER, dir=os.path.join(self.state_dir, "etcd"),
                         addresses=["%s.%d" % (underlay, i) for i in range(1, ETCD_MEMBERS + 1)])

    @classmethod
    def load(cls, state_dir=DEFAULT_STATE_DIR):
        path = os.path.join(os.path.abspath(state_dir), "state.json")
        if not os.path.exists(path):
            raise FileNotFoundError("no cluster state in %s" % path)
        return cls(state_dir, attach=True)

    # ---- description
    def _new_state(self, n, prefix, underlay, etcd, name_base, suites):
        if not 1 <= n <= 200:
            raise ValueError("hosts must be 1..200")
        hosts = {}
        for i in range(1, n + 1):
            name = "%s%d" % (name_base, i)
            hdir = os.path.join(self.state_dir, "hosts", name)
            hosts[name] = {
                "index": i,
                "suite": suites[i - 1],
                "ip": "%s.%d" % (underlay, 10 + i),
                "ip6": ipv6_underlay(underlay, 10 + i),
                "netns": prefix + name,
                "machine": prefix + name,
                "veth_underlay": (prefix + name)[:15],
                "cgroup": prefix + name,
                "docker_cgroup_parent": prefix + name + "-docker",
                "dir": hdir,
                "upper": os.path.join(hdir, "upper"),
                "work": os.path.join(hdir, "work"),
                "merged": os.path.join(hdir, "rootfs"),
                "docker_dir": os.path.join(hdir, "docker"),
                "log": os.path.join(hdir, "console.log"),
                "supervisor_file": os.path.join(hdir, "supervisor.json"),
                "mounted": False,
                "supervisor": None,
            }
        return {
            "version": 1,
            "phase": "new",
            "prefix": prefix,
            "underlay": {
                "netns": prefix + "flunder",
                "bridge": "br0",
                "controller_veth": (prefix + "flc0")[:15],
                "controller_veth_peer": "ctl",
                "controller_ip": underlay + ".1",
                "gateway": underlay + ".254",
                "prefixlen": 24,
                "subnet": underlay + ".0/24",
                "controller_ip6": ipv6_underlay(underlay, 1),
                "subnet6": ipv6_underlay(underlay),
                "created": {"netns": False, "controller_veth": False},
            },
            "hosts": hosts,
            "etcd": {"enabled": bool(etcd), "pid": None, "start_time": None},
            "image": None,  # the first host's image (the underlay guard's nft comes from it)
            "images": {},  # suite -> image, of every suite the hosts run
        }

    def save(self):
        os.makedirs(self.state_dir, exist_ok=True)
        ec = self.etcd
        if ec is not None:  # its members' PIDs change when a test kills/restarts/replaces one
            self.state["etcd"]["cluster"] = ec.to_dict()
        self.state["resources"] = self._resources()
        write_json_atomic(self.state_path, self.state)

    def _resources(self):
        """One summary of what this cluster made on the machine (recomputed at each save;
        the live nspawn/leader PIDs are also in hosts/<host>/supervisor.json)."""
        u = self.state["underlay"]
        res = {"pids": {}, "mounts": [], "cgroups": [], "netns": [], "veths": []}
        if u["created"].get("netns"):
            res["netns"].append(u["netns"])
        if u["created"].get("controller_veth"):
            res["veths"].append("%s (root netns) <-> %s (netns %s)" % (
                u["controller_veth"], u["controller_veth_peer"], u["netns"]))
        for n, h in sorted(self.state["hosts"].items()):
            if h.get("netns_created"):
                res["netns"].append(h["netns"])
                res["veths"].append("%s (netns %s) <-> eth0 (netns %s)" % (h["veth_underlay"], u["netns"], h["netns"]))
            if h.get("mounted"):
                res["mounts"].append(h["merged"])
            res["cgroups"] += (h.get("cgroups") or []) + (h.get("docker_cgroups") or [])
            sup = h.get("supervisor") or {}
            if sup.get("pid"):
                res["pids"]["supervisor " + n] = sup["pid"]
                info = read_json(h["supervisor_file"], {}) or {}
                for key in ("nspawn", "leader"):
                    if info.get(key + "_pid"):
                        res["pids"]["%s %s" % (key, n)] = info[key + "_pid"]
        if self.state["etcd"].get("pid"):
            res["pids"]["etcd"] = self.state["etcd"]["pid"]
        for name, pid in self._etcd_member_pids().items():
            res["pids"]["etcd " + name] = pid
        return res

    def _etcd_member_pids(self):
        """{member: pid} as recorded (running or not)."""
        ec = self.etcd
        if ec is None:
            return {}
        return {n: ec.member(n)["pid"] for n in ec.names if ec.member(n)["pid"]}

    @property
    def hosts(self):
        return [Host(n, h["ip"], h["netns"], h.get("ip6")) for n, h in
                sorted(self.state["hosts"].items(), key=lambda kv: kv[1]["index"])]

    @property
    def host_names(self):
        return [h.name for h in self.hosts]

    def suite(self, name):
        """The Debian suite host `name` runs (bookworm, trixie)."""
        return self.state["hosts"][name].get("suite", image_mod.DEFAULT_SUITE)

    @property
    def suites(self):
        """{host: suite}."""
        return {n: self.suite(n) for n in self.host_names}

    def host(self, name):
        h = self.state["hosts"][name]
        return Host(name, h["ip"], h["netns"], h.get("ip6"))

    @property
    def controller_ip(self):
        return self.state["underlay"]["controller_ip"]

    @property
    def etcd(self):
        """The EtcdCluster (3 members, TLS, auth) once started; None with --etcd-plain or --no-etcd.
        Its state (member PIDs, ports, passwords) lives in DIR/etcd/cluster.json."""
        e = self.state["etcd"]
        if e.get("mode") != "cluster" or not e.get("dir"):
            return None
        if self._etcd is None:
            try:
                self._etcd = EtcdCluster.load(e["dir"])
            except (OSError, ValueError):
                return None
        return self._etcd

    @property
    def etcd_endpoints(self):
        """Every client URL the hosts are given (https, one per member; or the one plain URL)."""
        ec = self.etcd
        if ec is not None:
            return ec.endpoints
        return [self.etcd_endpoint] if self.etcd_endpoint else []

    @property
    def etcd_local_endpoints(self):
        """The same members as reached from the controller (loopback)."""
        ec = self.etcd
        if ec is not None:
            return ec.local_endpoints
        return [self.etcd_local_endpoint] if self.etcd_local_endpoint else []

    @property
    def etcd_endpoint(self):
        """The first member's client URL (what the hosts reach)."""
        ec = self.etcd
        return ec.endpoints[0] if ec is not None else self.state["etcd"].get("endpoint")

    @property
    def etcd_local_endpoint(self):
        """The first member's loopback URL (from the controller)."""
        ec = self.etcd
        return ec.local_endpoints[0] if ec is not None else self.state["etcd"].get("local_endpoint")

    def etcd_module_args(self, user=None, local=True):
        """The overlay.flannel modules' etcd options to reach this cluster's etcd from the controller
        (TLS files, user and password with the etcd cluster; the endpoint alone with --etcd-plain)."""
        ec = self.etcd
        if ec is not None:
            return ec.module_args(local=local, user=user)
        return dict(etcd_endpoints=[self.etcd_local_endpoint if local else self.etcd_endpoint],
                    etcd_prefix=self.state["etcd"].get("prefix") or "/coreos.com/network")

    def etcdctl(self, *args, user="root", check=True, timeout=30):
        """etcdctl (v3) against this cluster's etcd from the controller, as root by default (stdout;
        with check=False the CompletedProcess).  With --etcd-plain there are no users."""
        ec = self.etcd
        if ec is not None:
            return ec.etcdctl(*args, user=user, check=check, timeout=timeout)
        res = subprocess.run(["etcdctl", "--endpoints", self.etcd_local_endpoint] + list(args), capture_output=True,
                             text=True, env=dict(os.environ, ETCDCTL_API="3"), timeout=timeout, check=False)
        if check and res.returncode != 0:
            raise RuntimeError("etcdctl %s failed: %s" % (" ".join(args), res.stderr.strip()))
        return res.stdout if check else res

    # ---- up
    def up(self, timeout=240, image=None):
        """Build/reuse the image, create the network, boot every host, start etcd, wait."""
        with ledger.timed("bringup", "%d hosts (%s)" % (len(self.host_names), self.state_dir)):
            return self._up(timeout, image)

    def _up(self, timeout, image):
        if os.geteuid() != 0:
            raise PermissionError("the cluster harness needs root")
        if self.state.get("phase") not in ("new", "down"):
            raise RuntimeError("cluster in %s is %s: run down first" % (self.state_dir, self.state["phase"]))
        self._check_free()
        t0 = time.monotonic()
        images = {}
        for suite in [self.suite(n) for n in self.host_names]:
            if suite not in images:
                images[suite] = image if image is not None and image.suite == suite else image_mod.ensure_image(suite=suite)
        for suite, one in images.items():
            self.state.setdefault("images", {})[suite] = dict(one.to_dict(), systemd=systemd_major(one.manifest().get("installed")))
        for name in self.host_names:
            self.state["hosts"][name]["image"] = images[self.suite(name)].key
        img = images[self.suite(self.host_names[0])]
        self.state["image"] = img.to_dict()
        self.state["phase"] = "starting"
        self.state["timings"] = {"image_ready_s": round(time.monotonic() - t0, 2)}
        self.state["mem_available_before_kb"] = _mem_available_kb()
        self.save()
        self._ensure_key()
        self._claim()
        t1 = time.monotonic()
        self._setup_underlay()
        for name in self.host_names:
            self._setup_host_netns(name)
        for name in self.host_names:
            self._prepare_rootfs(name)
        for name in self.host_names:
            self._start_supervisor(name)
        if self.state["etcd"]["enabled"]:
            if self.state["etcd"].get("mode", "plain") == "cluster":
                self._start_etcd_cluster()
            else:
                self._start_etcd()
        self._write_access_files()
        errors = self._parallel(lambda n: self.wait_ready(n, timeout=timeout), self.host_names)
        if errors:
            self.state["phase"] = "failed"
            self.save()
            raise RuntimeError("hosts not ready: %s (state left for `down`; consoles in %s/hosts/*/console.log)"
                               % (errors, self.state_dir))
        self.state["phase"] = "up"
        self.state["timings"]["boot_s"] = round(time.monotonic() - t1, 2)
        self.state["mem_used_kb"] = self.state["mem_available_before_kb"] - _mem_available_kb()
        self.save()
        log("%d hosts up in %.1fs (%s)" % (len(self.hosts), time.monotonic() - t1, ", ".join(
            "%s image %s" % (suite, one.key) for suite, one in sorted(images.items()))))
        return self

    def _check_free(self):
        u = self.state["underlay"]
        taken = [n for n in [u["netns"]] + [h["netns"] for h in self.state["hosts"].values()]
                 if netns_exists(n)]
        if link_exists(u["controller_veth"]):
            taken.append("link " + u["controller_veth"])
        net = u["subnet"].rsplit(".", 1)[0] + "."
        addrs = sh(["ip", "-4", "-o", "addr", "show"], check=False).stdout
        routes = sh(["ip", "-4", "route", "show"], check=False).stdout
        if (" %s" % net) in addrs or any(r.startswith(net) for r in routes.splitlines()):
            taken.append("underlay %s (an address or route of the machine is in it)" % u["subnet"])
        if taken:
            owner = ""
            try:
                with open(os.path.join(CLAIMS_DIR, u["netns"])) as fh:
                    owner = fh.read().strip()
            except OSError:
                pass
            raise RuntimeError("already exist: %s; %s" % (taken, (
                "they belong to the cluster in %s: `down --state-dir %s`" % (owner, owner)) if owner else
                "another cluster is up: run its down, or use another --prefix/--underlay"))

    def _claim(self, release=False):
        path = os.path.join(CLAIMS_DIR, self.state["underlay"]["netns"])
        if release:
            try:
                with open(path) as fh:
                    if fh.read().strip() == self.state_dir:
                        os.unlink(path)
            except OSError:
                pass
            return
        os.makedirs(CLAIMS_DIR, exist_ok=True)
        with open(path, "w") as fh:
            fh.write(self.state_dir + "\n")

    def _ensure_key(self):
        if not os.path.exists(self.key_path):
            sh(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "overlay-flannel-test-cluster",
                "-f", self.key_path])

    def _setup_underlay(self):
        u = self.state["underlay"]
        sh(["ip", "netns", "add", u["netns"]])
        u["created"]["netns"] = True
        self.save()
        ns = ["ip", "-n", u["netns"]]
        sh(ns + ["link", "set", "lo", "up"])
        sh(ns + ["link", "add", u["bridge"], "type", "bridge"])
        # no STP, forward at once; no multicast snooping surprises
        sh(ns + ["link", "set", u["bridge"], "type", "bridge", "forward_delay", "0", "stp_state", "0"])
        sh(ns + ["link", "set", u["bridge"], "up"])
        sh(["ip", "link", "add", u["controller_veth"], "type", "veth",
            "peer", "name", u["controller_veth_peer"], "netns", u["netns"]])
        u["created"]["controller_veth"] = True
        self.save()
        sh(ns + ["link", "set", u["controller_veth_peer"], "master", u["bridge"], "up"])
        sh(["ip", "addr", "add", "%s/%d" % (u["controller_ip"], u["prefixlen"]), "dev", u["controller_veth"]])
        if u.get("controller_ip6"):
            sh(["ip", "addr", "add", u["controller_ip6"] + "/64", "dev", u["controller_veth"], "nodad"])
        sh(["ip", "link", "set", u["controller_veth"], "up"])
        # the underlay namespace itself never routes anything anywhere
        sh(["ip", "netns", "exec", u["netns"], "sysctl", "-q", "-w", "net.ipv4.ip_forward=0"], check=False)
        self._guard_underlay()

    def _guard_underlay(self):
        """Bridge filter in the underlay netns: towards the controller only frames for
        underlay addresses pass, so no host can use the controller as a router even if
        the controller forwards (nft from the image, run inside the underlay netns)."""
        u = self.state["underlay"]
        rules = (
            "table bridge test_cluster_guard {\n"
            "  chain forward {\n"
            "    type filter hook forward priority 0; policy accept;\n"
            "    oifname \"%(peer)s\" ip daddr != %(subnet)s counter drop\n"
            "    oifname \"%(peer)s\" ip6 daddr != { fe80::/10, ff00::/8%(subnet6)s } counter drop\n"
            "  }\n"
            "}\n" % {"peer": u["controller_veth_peer"], "subnet": u["subnet"],
                     "subnet6": (", " + u["subnet6"]) if u.get("subnet6") else ""})
        rootfs = self.state["image"]["rootfs"]
        sh(["nsenter", "--net=/run/netns/" + u["netns"], "chroot", rootfs, "nft", "-f", "-"], input=rules)
        u["guard"] = "table bridge test_cluster_guard"
        self.save()

    def underlay_guard_ruleset(self):
        u = self.state["underlay"]
        return sh(["nsenter", "--net=/run/netns/" + u["netns"], "chroot", self.state["image"]["rootfs"],
                   "nft", "list", "ruleset"], check=False).stdout

    def _setup_host_netns(self, name):
        h = self.state["hosts"][name]
        u = self.state["underlay"]
        sh(["ip", "netns", "add", h["netns"]])
        h["netns_created"] = True
        self.save()
        sh(["ip", "-n", u["netns"], "link", "add", h["veth_underlay"], "type", "veth",
            "peer", "name", "eth0", "netns", h["netns"]])
        sh(["ip", "-n", u["netns"], "link", "set", h["veth_underlay"], "master", u["bridge"], "up"])
        ns = ["ip", "-n", h["netns"]]
        sh(ns + ["link", "set", "lo", "up"])
        sh(ns + ["link", "set", "eth0", "mtu", "1500", "up"])
        sh(ns + ["addr", "add", "%s/%d" % (h["ip"], u["prefixlen"]), "broadcast", "+", "dev", "eth0"])
        if h.get("ip6"):
            sh(ns + ["addr", "add", h["ip6"] + "/64", "dev", "eth0", "nodad"])
        # default route to an address nothing answers: ansible_default_ipv4 = underlay, nothing leaves
        sh(ns + ["route", "add", "default", "via", u["gateway"], "dev", "eth0", "onlink"])

    def _prepare_rootfs(self, name):
        h = self.state["hosts"][name]
        img = self._image_of(name)
        for d in (h["upper"], h["work"], h["merged"], h["docker_dir"]):
            os.makedirs(d, exist_ok=True)
        for old_log in (h["log"], os.path.join(h["dir"], "supervisor.log")):
            if os.path.exists(old_log):  # keep one earlier cluster's logs, not all of them
                os.replace(old_log, old_log + ".old")
        sh(["mount", "-t", "overlay", "overlay", "-o",
            "lowerdir=%s,upperdir=%s,workdir=%s" % (img["rootfs"], h["upper"], h["work"]), h["merged"]])
        h["mounted"] = True
        self.save()
        root = h["merged"]

        def put(path, text, mode=0o644):
            full = os.path.join(root, path.lstrip("/"))
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "w") as fh:
                fh.write(text)
            os.chmod(full, mode)

        put("/etc/hostname", name + "\n")
        put("/etc/machine-id", uuid.uuid4().hex + "\n", 0o444)
        hosts_lines = ["127.0.0.1 localhost", "::1 localhost ip6-localhost ip6-loopback",
                       "127.0.1.1 %s" % name, "%s controller" % self.controller_ip]
        hosts_lines += ["%s %s" % (o.ip, o.name) for o in self.hosts]
        put("/etc/hosts", "\n".join(hosts_lines) + "\n")
        with open(self.key_path + ".pub") as fh:
            put("/root/.ssh/authorized_keys", fh.read(), 0o600)
        os.chmod(os.path.join(root, "root/.ssh"), 0o700)
        put("/etc/docker/daemon.json", json.dumps({"cgroup-parent": h["docker_cgroup_parent"]}, indent=1) + "\n")
        # per-host ssh host keys
        sh(["ssh-keygen", "-A", "-f", root])

    def _image_of(self, name):
        """The image (dict) host `name` boots."""
        images = self.state.get("images") or {}
        return images.get(self.suite(name)) or self.state["image"]

    def _nspawn_argv(self, name):
        h = self.state["hosts"][name]
        return [
            "systemd-nspawn", "--boot", "--register=no", "--keep-unit",
            "--machine=" + h["machine"], "--hostname=" + name, "--directory=" + h["merged"],
            "--network-namespace-path=/run/netns/" + h["netns"],
            "--capability=all", "--private-users=no",
            "--bind=/dev/net/tun",
            "--bind=%s:/var/lib/docker" % h["docker_dir"],
            "--system-call-filter=add_key keyctl bpf",
            "--console=read-only", "--link-journal=no", "--resolv-conf=off", "--timezone=off",
            "--kill-signal=SIGRTMIN+4",
        ]

    def _start_supervisor(self, name):
        h = self.state["hosts"][name]
        for hier in ("systemd", "unified"):
            path = os.path.join(CGROUP_ROOT, hier, h["cgroup"])
            os.makedirs(path, exist_ok=True)
        h["cgroups"] = [os.path.join(CGROUP_ROOT, hier, h["cgroup"]) for hier in ("systemd", "unified")]
        h["nspawn_argv"] = self._nspawn_argv(name)
        # the supervisor (and nspawn) stay in this process's v1 controller cgroups
        h["docker_cgroups"] = [os.path.join(d, h["docker_cgroup_parent"]) for d in v1_cgroup_dirs()]
        try:
            os.unlink(h["supervisor_file"])
        except FileNotFoundError:
            pass
        self.save()
        logf = open(os.path.join(h["dir"], "supervisor.log"), "ab")
        proc = subprocess.Popen([sys.executable, SELF, "_supervise", "--state-dir", self.state_dir, name],
                                stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                                start_new_session=True, close_fds=True)
        logf.close()
        h["supervisor"] = {"pid": proc.pid, "start_time": proc_start_time(proc.pid)}
        self.save()

    def _start_etcd_cluster(self):
        """Three members on the controller's underlay addresses .1, .2, .3 (the extra two are added to the
        controller veth), client port 2379 and peer port 2380 on each, a loopback listener each for the
        controller; TLS and auth (see tests/support/etcd_cluster.py)."""
        e = self.state["etcd"]
        u = self.state["underlay"]
        for addr in e["addresses"]:
            if addr != u["controller_ip"]:
                sh(["ip", "addr", "add", "%s/%d" % (addr, u["prefixlen"]), "dev", u["controller_veth"]])
        if os.path.exists(e["dir"]):  # an earlier cluster's etcd (down --keep-data): never reuse it
            image_mod.safe_rmtree(e["dir"])
        ec = EtcdCluster(e["addresses"], e["dir"], prefix=e["prefix"], user=e["user"])
        self._etcd = ec
        e["state_file"] = ec.state_path
        self.save()
        try:
            ec.start(timeout=60)
        finally:
            self.save()

    def _start_etcd(self):
        e = self.state["etcd"]
        cip = self.controller_ip
        lport = 2379 if port_free("127.0.0.1", 2379) else free_port()
        e.update({
            "name": "overlay-flannel-test",
            "data_dir": os.path.join(self.state_dir, "etcd"),
            "endpoint": "http://%s:2379" % cip,
            "local_endpoint": "http://127.0.0.1:%d" % lport,
            "peer_url": "http://%s:2380" % cip,
            "log": os.path.join(self.state_dir, "etcd.log"),
        })
        os.makedirs(e["data_dir"], exist_ok=True)
        argv = ["etcd", "--name", e["name"], "--data-dir", os.path.join(e["data_dir"], "data"),
                "--listen-client-urls", "%s,%s" % (e["endpoint"], e["local_endpoint"]),
                "--advertise-client-urls", e["endpoint"],
                "--listen-peer-urls", e["peer_url"], "--initial-advertise-peer-urls", e["peer_url"],
                "--initial-cluster", "%s=%s" % (e["name"], e["peer_url"]),
                "--initial-cluster-state", "new", "--log-level", "warn"]
        with open(e["log"], "ab") as logf:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                                    start_new_session=True, close_fds=True)
        e["pid"] = proc.pid
        e["start_time"] = proc_start_time(proc.pid)
        e["argv"] = argv
        self.save()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError("etcd exited with %s, see %s" % (proc.returncode, e["log"]))
            try:
                with urllib.request.urlopen(e["local_endpoint"] + "/health", timeout=1) as r:
                    if json.loads(r.read().decode()).get("health") in ("true", True):
                        return
            except (OSError, ValueError):
                pass
            time.sleep(0.2)
        raise RuntimeError("etcd did not become healthy, see %s" % e["log"])

    def _write_access_files(self):
        lines = []
        for h in self.hosts:
            lines += ["Host %s %s" % (h.name, h.ip), "  HostName %s" % h.ip, "  User root",
                      "  IdentityFile %s" % self.key_path, "  IdentitiesOnly yes",
                      "  StrictHostKeyChecking no", "  UserKnownHostsFile /dev/null",
                      "  GlobalKnownHostsFile /dev/null", "  LogLevel ERROR", "  BatchMode yes",
                      "  ConnectTimeout 5", "  ServerAliveInterval 5", "  ServerAliveCountMax 3",
                      # one shared connection per host (run() starts it): a call that finds no live
                      # master socket connects on its own instead of waiting for one
                      "  ControlMaster no", "  ControlPath %s/%%h" % self.mux_dir, ""]
        with open(self.ssh_config_path, "w") as fh:
            fh.write("\n".join(lines))
        inv = ["[flannel]"]
        # test_cluster_suite: the Debian release the host runs (bookworm, trixie), for tests
        inv += ["%s ansible_host=%s test_cluster_suite=%s" % (h.name, h.ip, self.suite(h.name)) for h in self.hosts]
        inv += ["", "[flannel:vars]", "ansible_user=root",
                "ansible_ssh_private_key_file=%s" % self.key_path,
                "ansible_python_interpreter=/usr/bin/python3",
                "ansible_ssh_common_args='-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
                " -o GlobalKnownHostsFile=/dev/null -o IdentitiesOnly=yes -o LogLevel=ERROR'",
                "ansible_ssh_pipelining=true"]
        ec = self.etcd
        if ec is not None:
            # a list, like the modules' etcd_endpoints (INI :vars values are literal_eval'ed)
            inv.append("flannel_etcd_endpoints=%s" % json.dumps(ec.endpoints))
            inv += ["flannel_etcd_prefix=%s" % ec.prefix] if ec.prefix != "/coreos.com/network" else []
            inv += ["flannel_etcd_ca_cert=%s" % ec.ca_cert, "flannel_etcd_client_cert=%s" % ec.client_cert,
                    "flannel_etcd_client_key=%s" % ec.client_key, "flannel_etcd_user=%s" % ec.user,
                    "# flannel_etcd_password: in group_vars/flannel.yml (mode 0600)"]
            os.makedirs(os.path.dirname(self.secrets_path), mode=0o700, exist_ok=True)
            fd = os.open(self.secrets_path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write("# written by the test cluster harness: the etcd password of the user %s\n"
                         "flannel_etcd_password: %s\n" % (ec.user, json.dumps(ec.password)))
            os.rename(self.secrets_path + ".tmp", self.secrets_path)
        elif self.etcd_endpoint:
            inv.append('flannel_etcd_endpoints=["%s"]' % self.etcd_endpoint)
        with open(self.inventory_path, "w") as fh:
            fh.write("\n".join(inv) + "\n")

    # ---- runtime info
    def supervisor_info(self, name):
        return read_json(self.state["hosts"][name]["supervisor_file"], {}) or {}

    def leader_pid(self, name):
        """PID (in the root pid namespace) of the host's PID 1, or None."""
        info = self.supervisor_info(name)
        pid, st = info.get("leader_pid"), info.get("leader_start_time")
        return pid if pid_alive(pid, st) else None

    def ssh_argv(self, name, cmd=None, tty=False):
        argv = ["ssh", "-F", self.ssh_config_path] + (["-t"] if tty else []) + [name]
        if cmd is not None:
            argv.append(cmd if isinstance(cmd, str) else shlex.join(cmd))
        return argv

    # ---- ssh connection sharing: one master per host, started here, dropped when the host goes down
    def _mux_socket(self, name):
        return os.path.join(self.mux_dir, self.host(name).ip)

    def _mux_lock(self, name):
        with self._mux_guard:
            return self._mux_locks.setdefault(name, threading.Lock())

    def ensure_master(self, name):
        """Start the host's shared ssh connection unless one is up (its socket answers). A master
        that died (the host rebooted or stopped) is replaced; one that cannot start leaves the calls
        to connect on their own."""
        sock = self._mux_socket(name)
        with self._mux_lock(name):
            if os.path.exists(sock):
                alive = subprocess.run(["ssh", "-F", self.ssh_config_path, "-O", "check", name],
                                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL, timeout=10, check=False).returncode == 0
                if alive:
                    return True
                with contextlib.suppress(OSError):
                    os.unlink(sock)
            os.makedirs(self.mux_dir, mode=0o700, exist_ok=True)
            try:
                # -f: into the background once authenticated; no pipe of ours stays open in it
                res = subprocess.run(["ssh", "-F", self.ssh_config_path, "-o", "ControlMaster=yes",
                                      "-o", "ControlPersist=600", "-f", "-N", name],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, timeout=20, check=False)
                return res.returncode == 0
            except subprocess.TimeoutExpired:
                return False

    def drop_master(self, name):
        """End the host's shared connection (before it reboots or stops, so no call waits on a dead one)."""
        sock = self._mux_socket(name)
        with self._mux_lock(name):
            if os.path.exists(sock):
                with contextlib.suppress(subprocess.TimeoutExpired):
                    subprocess.run(["ssh", "-F", self.ssh_config_path, "-O", "exit", name],
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, timeout=10, check=False)
                with contextlib.suppress(OSError):
                    os.unlink(sock)

    def run(self, host, cmd, check=False, timeout=120, input=None, via="ssh"):
        """Run `cmd` (a shell string, or an argv list) on `host`.  Returns CompletedProcess(text)."""
        if host not in self.state["hosts"]:
            raise KeyError("no host %r (hosts: %s)" % (host, self.host_names))
        if via == "ssh":
            if not os.path.exists(self._mux_socket(host)):
                self.ensure_master(host)
            argv = self.ssh_argv(host, cmd)
        elif via == "nsenter":
            leader = self.leader_pid(host)
            if leader is None:
                raise RuntimeError("host %s is not running" % host)
            shell_cmd = cmd if isinstance(cmd, str) else shlex.join(cmd)
            argv = ["nsenter", "-t", str(leader), "-m", "-u", "-i", "-n", "-p", "-C", "-r", "-w",
                    "/usr/bin/env", "-i", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "HOME=/root", "LANG=C.UTF-8", "/bin/sh", "-c", shell_cmd]
        else:
            raise ValueError("via must be ssh or nsenter")
        res = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout,
                             stdin=None if input is not None else subprocess.DEVNULL, check=False)
        if via == "ssh" and res.returncode == 255:
            self.drop_master(host)  # ssh's own failure: the next call starts a new shared connection
        if check and res.returncode != 0:
            raise subprocess.CalledProcessError(res.returncode, argv, res.stdout, res.stderr)
        return res

    def wait_ready(self, name, timeout=180, min_launches=1):
        """Wait for sshd, a finished boot (running/degraded), docker and the busybox image."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            info = self.supervisor_info(name)
            if info.get("status") == "stopped":
                raise RuntimeError("host %s stopped (nspawn exit %s); see %s"
                                   % (name, info.get("last_exit"), self.state["hosts"][name]["log"]))
            if info.get("launches", 0) >= min_launches and self.leader_pid(name):
                try:
                    res = self.run(name, "systemctl is-system-running --wait; "
                                         "systemctl is-active docker.service load-test-images.service",
                                   timeout=max(5, min(60, deadline - time.monotonic())))
                    out = res.stdout.split()
                    last = (res.stdout + res.stderr).strip()
                    # is-active exits 0 when any one of the units is active: read each unit's state
                    if out and out[0] in ("running", "degraded") and out[1:] == ["active", "active"]:
                        if out[0] == "degraded":
                            failed = self.run(name, "systemctl --failed --no-legend --plain").stdout
                            log("%s is degraded: %s" % (name, failed.strip()))
                        return True
                    if out and out[0] in ("running", "degraded") and "failed" in out[1:]:
                        journal = self.run(name, "systemctl --failed --no-legend --plain; journalctl -b "
                                                 "-u test-cluster-mounts -u containerd -u docker "
                                                 "-u load-test-images --no-pager | tail -n 30").stdout
                        raise RuntimeError("host %s: docker or the test image failed:\n%s" % (name, journal))
                    if out and out[0] in ("maintenance", "stopping"):
                        break
                except subprocess.TimeoutExpired:
                    last = "timeout"
            time.sleep(0.5)
        raise RuntimeError("host %s not ready in %ss (last: %s)" % (name, timeout, last))

    def reboot(self, name, timeout=180):
        """`systemctl reboot` inside the host; its supervisor relaunches nspawn (exit 133)."""
        with ledger.timed("reboot", name):
            self._reboot(name, timeout)

    def _reboot(self, name, timeout):
        before = self.supervisor_info(name).get("launches", 0)
        try:
            self.run(name, "systemctl reboot", timeout=15)
        except subprocess.TimeoutExpired:
            pass
        self.drop_master(name)
        deadline = time.monotonic() + timeout
        while self.supervisor_info(name).get("launches", 0) <= before:
            if time.monotonic() > deadline:
                raise RuntimeError("host %s did not come back from reboot (supervisor: %s)"
                                   % (name, self.supervisor_info(name)))
            time.sleep(0.2)
        self.wait_ready(name, timeout=max(10, deadline - time.monotonic()), min_launches=before + 1)

    def stop(self, name, timeout=40):
        """Power one host off (containers first); its overlay, netns and cgroups stay."""
        with ledger.timed("stop", name):
            self._stop(name, timeout)

    def _stop(self, name, timeout):
        if self.leader_pid(name):
            self.run(name, "ids=$(docker ps -aq); [ -z \"$ids\" ] || docker rm -f $ids", timeout=30)
        self.drop_master(name)
        sup = self.state["hosts"][name].get("supervisor") or {}
        info = self.supervisor_info(name)
        waits = [(sup.get("pid"), sup.get("start_time"))]
        waits += [(info.get(k + "_pid"), info.get(k + "_start_time")) for k in ("nspawn", "leader")]
        signal_recorded(sup.get("pid"), sup.get("start_time"), signal.SIGTERM)
        if not wait_gone([w for w in waits if w[0]], timeout):
            raise RuntimeError("host %s did not stop in %ss" % (name, timeout))
        self.state["hosts"][name]["supervisor"] = None
        self.save()

    def start(self, name, timeout=180):
        """Boot a host that was stopped (same overlay, netns and /var/lib/docker)."""
        with ledger.timed("start", name):
            self._start(name, timeout)

    def _start(self, name, timeout):
        sup = self.state["hosts"][name].get("supervisor") or {}
        if pid_alive(sup.get("pid"), sup.get("start_time")):
            raise RuntimeError("host %s is already running" % name)
        self._start_supervisor(name)
        self.wait_ready(name, timeout=timeout)

    def memory_kb(self):
        """Proportional set size (kB) of every process of the cluster: per host (all
        processes in its cgroup: nspawn, systemd, sshd, containerd, dockerd, containers),
        etcd, and the total."""
        def pss(pid):
            try:
                with open("/proc/%d/smaps_rollup" % pid) as fh:
                    for line in fh:
                        if line.startswith("Pss:"):
                            return int(line.split()[1])
            except OSError:
                pass
            return 0
        out = {}
        for n in self.host_names:
            cg = os.path.join(CGROUP_ROOT, "systemd", self.state["hosts"][n]["cgroup"])
            out[n] = sum(pss(p) for p in set(cgroup_procs(cg))) if os.path.isdir(cg) else 0
        e = self.state["etcd"]
        out["etcd"] = pss(e["pid"]) if pid_alive(e.get("pid"), e.get("start_time")) else 0
        ec = self.etcd
        if ec is not None:
            out["etcd"] = sum(pss(pid) for pid in ec.pids().values())
        out["total"] = sum(out.values())
        return out

    def status(self):
        out = {"state_dir": self.state_dir, "phase": self.state.get("phase"),
               "etcd": self._etcd_status(),
               "inventory": self.inventory_path, "ssh_config": self.ssh_config_path,
               "image": (self.state.get("image") or {}).get("key"),
               "timings": self.state.get("timings"), "memory_pss_kb": self.memory_kb(), "hosts": {}}
        for h in self.hosts:
            hs = self.state["hosts"][h.name]
            sup = hs.get("supervisor") or {}
            info = self.supervisor_info(h.name)
            entry = {"ip": h.ip, "ip6": h.ip6, "netns": h.netns, "suite": self.suite(h.name),
                     "supervisor_alive": pid_alive(sup.get("pid"), sup.get("start_time")),
                     "nspawn_pid": info.get("nspawn_pid"), "leader_pid": self.leader_pid(h.name),
                     "launches": info.get("launches"), "last_exit": info.get("last_exit")}
            if entry["leader_pid"]:
                try:
                    r = self.run(h.name, "systemctl is-system-running", timeout=10)
                    entry["system"] = r.stdout.strip() or r.stderr.strip()
                except subprocess.TimeoutExpired:
                    entry["system"] = "ssh timeout"
            out["hosts"][h.name] = entry
        return out

    def _etcd_status(self):
        e, ec = self.state["etcd"], self.etcd
        if ec is None:
            return {"mode": e.get("mode", "plain") if e.get("enabled") else "none",
                    "endpoint": self.etcd_endpoint, "local_endpoint": self.etcd_local_endpoint,
                    "pid": e.get("pid"), "alive": pid_alive(e.get("pid"), e.get("start_time"))}
        members = {n: {"address": ec.member(n)["address"], "endpoint": ec.client_url(n),
                       "local_endpoint": ec.local_url(n), "pid": ec.member(n)["pid"], "alive": ec.alive(n)}
                   for n in ec.names}
        if any(m["alive"] for m in members.values()):
            for n, st in ec.endpoint_status([n for n in ec.names if members[n]["alive"]]).items():
                members[n].update(st)
        return {"mode": "cluster", "endpoints": ec.endpoints, "local_endpoints": ec.local_endpoints,
                "user": ec.user, "prefix": ec.prefix, "ca_cert": ec.ca_cert, "client_cert": ec.client_cert,
                "client_key": ec.client_key, "secrets": self.secrets_path, "members": members}

    # ---- down
    def down(self, keep_data=False, stop_timeout=40, force=False):
        """Tear down everything recorded in the state file.  Idempotent."""
        with ledger.timed("teardown", self.state_dir):
            return self._down(keep_data, stop_timeout, force)

    def _down(self, keep_data, stop_timeout, force):
        t0 = time.monotonic()
        problems = []
        if self.state.get("phase") in ("new", "down") and not force:
            # never started from this state dir, or already torn down: the names in the
            # state may belong to another cluster by now, so touch nothing
            log("down: nothing to do (cluster is %s)" % self.state.get("phase"))
            return problems
        self.state["phase"] = "stopping"
        self.save()
        running = [n for n in self.host_names if self.leader_pid(n)]
        # 1. test containers first (else dockerd waits 10 s per container at shutdown)
        self._parallel(lambda n: self.run(n, "ids=$(docker ps -aq); [ -z \"$ids\" ] || docker rm -f $ids",
                                          timeout=30), running)
        for n in self.host_names:
            self.drop_master(n)
        # 2. hosts: ask each supervisor to stop (it forwards SIGTERM to nspawn -> poweroff)
        waits = []
        for n in self.host_names:
            sup = self.state["hosts"][n].get("supervisor") or {}
            info = self.supervisor_info(n)
            if signal_recorded(sup.get("pid"), sup.get("start_time"), signal.SIGTERM):
                waits.append((sup["pid"], sup["start_time"]))
            elif signal_recorded(info.get("nspawn_pid"), info.get("nspawn_start_time"), signal.SIGTERM):
                waits.append((info["nspawn_pid"], info["nspawn_start_time"]))
            for key in ("nspawn", "leader"):
                if info.get(key + "_pid"):
                    waits.append((info[key + "_pid"], info.get(key + "_start_time")))
        if not wait_gone(waits, stop_timeout):
            problems.append("hosts did not stop in %ss: killing recorded PIDs" % stop_timeout)
            for n in self.host_names:
                info = self.supervisor_info(n)
                sup = self.state["hosts"][n].get("supervisor") or {}
                signal_recorded(info.get("leader_pid"), info.get("leader_start_time"), signal.SIGKILL)
                signal_recorded(info.get("nspawn_pid"), info.get("nspawn_start_time"), signal.SIGKILL)
                signal_recorded(sup.get("pid"), sup.get("start_time"), signal.SIGKILL)
            wait_gone(waits, 10)
        # 3. etcd (the plain member, or every member of the cluster), by recorded PIDs
        e = self.state["etcd"]
        if signal_recorded(e.get("pid"), e.get("start_time"), signal.SIGTERM):
            if not wait_gone([(e["pid"], e["start_time"])], 10):
                signal_recorded(e["pid"], e["start_time"], signal.SIGKILL)
                wait_gone([(e["pid"], e["start_time"])], 5)
        ec = self.etcd
        if ec is not None:
            ec = self._etcd = EtcdCluster.load(ec.base_dir)  # another process may have restarted members
            ec.stop_all()
            problems += ["still running: %s" % x for x in ec.leftovers()]
        # 4. mounts, cgroups, propagate dirs, lock files
        for n in self.host_names:
            h = self.state["hosts"][n]
            if image_mod.mounts_under(h["merged"]):
                image_mod.umount_all_under(h["merged"])
                left = image_mod.mounts_under(h["merged"])
                if left:
                    problems.append("still mounted: %s" % left)
            h["mounted"] = bool(image_mod.mounts_under(h["merged"]))
            cgs = [os.path.join(CGROUP_ROOT, hier, h["cgroup"]) for hier in ("systemd", "unified")]
            cgs += h.get("docker_cgroups") or []
            for cg in cgs:
                if os.path.isdir(cg):
                    procs = cgroup_procs(cg)
                    if procs:
                        problems.append("processes left in %s: %s" % (cg, procs))
                    problems += ["cgroup not removed: %s" % p for p in remove_cgroup_tree(cg)]
            prop = os.path.join(NSPAWN_PROPAGATE, h.get("machine", n))
            if os.path.isdir(prop):
                image_mod.safe_rmtree(prop)
        # 5. network
        u = self.state["underlay"]
        for n in self.host_names:
            ns = self.state["hosts"][n]["netns"]
            if netns_exists(ns):
                sh(["ip", "netns", "del", ns], check=False)
        if link_exists(u["controller_veth"]):
            sh(["ip", "link", "del", u["controller_veth"]], check=False)
        if netns_exists(u["netns"]):
            sh(["ip", "netns", "del", u["netns"]], check=False)
        # 6. data
        if not keep_data:
            for n in self.host_names:
                h = self.state["hosts"][n]
                for d in (h["upper"], h["work"], h["merged"], h["docker_dir"]):
                    try:
                        image_mod.safe_rmtree(d)
                    except (RuntimeError, OSError) as exc:
                        problems.append(str(exc))
            for d in (e.get("data_dir"), e.get("dir") if ec is not None and not ec.leftovers() else None):
                if d and os.path.exists(d):
                    try:
                        image_mod.safe_rmtree(d)
                    except (RuntimeError, OSError) as exc:
                        problems.append(str(exc))
            self._etcd = None
        for n in self.host_names:
            self.state["hosts"][n]["supervisor"] = None
        e["pid"] = e["start_time"] = None
        if not problems:
            self._claim(release=True)
        self.state["phase"] = "down"
        self.state["last_down_s"] = round(time.monotonic() - t0, 2)
        self.state["last_down_problems"] = problems
        self.save()
        for p in problems:
            log("down: " + p)
        log("down in %.1fs" % (time.monotonic() - t0))
        return problems

    def leftovers(self):
        """What of this cluster still exists on the machine (empty list = clean)."""
        left = []
        u = self.state["underlay"]
        for ns in [u["netns"]] + [h["netns"] for h in self.state["hosts"].values()]:
            if netns_exists(ns):
                left.append("netns " + ns)
        if link_exists(u["controller_veth"]):
            left.append("link " + u["controller_veth"])
        for n, h in self.state["hosts"].items():
            if image_mod.mounts_under(h["dir"]):
                left.append("mounts %s" % image_mod.mounts_under(h["dir"]))
            for hier in ("systemd", "unified"):
                if os.path.isdir(os.path.join(CGROUP_ROOT, hier, h["cgroup"])):
                    left.append("cgroup %s/%s" % (hier, h["cgroup"]))
            for d in h.get("docker_cgroups") or []:
                if os.path.isdir(d):
                    left.append("cgroup " + d)
            if os.path.exists(os.path.join(NSPAWN_PROPAGATE, h.get("machine", n))):
                left.append("propagate dir " + h.get("machine", n))
            info = read_json(h["supervisor_file"], {}) or {}
            for key in ("nspawn", "leader"):
                if pid_alive(info.get(key + "_pid"), info.get(key + "_start_time")):
                    left.append("%s pid %s of %s" % (key, info[key + "_pid"], n))
            sup = h.get("supervisor") or {}
            if pid_alive(sup.get("pid"), sup.get("start_time")):
                left.append("supervisor pid %s of %s" % (sup["pid"], n))
        e = self.state["etcd"]
        if pid_alive(e.get("pid"), e.get("start_time")):
            left.append("etcd pid %s" % e["pid"])
        if e.get("mode") == "cluster" and e.get("dir") and os.path.exists(os.path.join(e["dir"], "cluster.json")):
            left += EtcdCluster.load(e["dir"]).leftovers()
        return left

    # ---- misc
    def _parallel(self, fn, names):
        errors = {}

        def call(n):
            try:
                fn(n)
            except Exception as exc:  # noqa: BLE001 - reported to the caller
                errors[n] = "%s: %s" % (type(exc).__name__, exc)
        threads = [threading.Thread(target=call, args=(n,)) for n in names]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return errors

    def __enter__(self):
        return self.up()

    def __exit__(self, *exc):
        self.down()


def _mem_available_kb():
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1])
    return 0


# --------------------------------------------------------------------------- supervisor

def supervise(state_dir, name):
    """Runs detached, one per host: launches nspawn from the host's own cgroups and
    relaunches it when the host reboots (nspawn exit code 133).  SIGTERM: stop the
    host (forwarded to nspawn, whose --kill-signal powers the host off) and exit."""
    state = read_json(os.path.join(state_dir, "state.json"))
    h = state["hosts"][name]
    info_path = h["supervisor_file"]
    info = {"status": "starting", "launches": 0, "supervisor_pid": os.getpid()}
    stopping = {"flag": False}
    current = {"proc": None}

    def save():
        write_json_atomic(info_path, info)

    def on_term(signum, _frame):
        stopping["flag"] = True
        p = current["proc"]
        if p is not None and p.poll() is None:
            try:
                os.kill(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)

    def enter_cgroups():
        for cg in h["cgroups"]:
            with open(os.path.join(cg, "cgroup.procs"), "w") as fh:
                fh.write("0\n")

    while not stopping["flag"]:
        with open(h["log"], "ab") as logf:
            logf.write(("\n==== launch %d at %s ====\n" % (info["launches"] + 1, time.ctime())).encode())
            logf.flush()
            proc = subprocess.Popen(h["nspawn_argv"], stdin=subprocess.DEVNULL, stdout=logf,
                                    stderr=subprocess.STDOUT, preexec_fn=enter_cgroups, close_fds=True)
        current["proc"] = proc
        info.update({"status": "running", "launches": info["launches"] + 1, "nspawn_pid": proc.pid,
                     "nspawn_start_time": proc_start_time(proc.pid), "leader_pid": None,
                     "leader_start_time": None, "launched_at": time.time()})
        save()
        if stopping["flag"]:
            on_term(signal.SIGTERM, None)
        # find the container's PID 1: nspawn's child once nspawn has set it up
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:
            leader = _leader_of(proc.pid)
            if leader:
                info.update({"leader_pid": leader, "leader_start_time": proc_start_time(leader)})
                save()
                break
            time.sleep(0.05)
        while True:
            try:
                rc = proc.wait()
                break
            except InterruptedError:
                continue
        current["proc"] = None
        info.update({"last_exit": rc, "leader_pid": None, "leader_start_time": None,
                     "status": "rebooting" if rc == REBOOT_EXIT_CODE else "exited"})
        save()
        if rc != REBOOT_EXIT_CODE:
            break
        time.sleep(0.2)
    info["status"] = "stopped"
    save()


def _leader_of(nspawn_pid):
    """nspawn's child that runs /sbin/init (systemd) in a new pid namespace."""
    try:
        mine = os.readlink("/proc/%d/ns/pid" % nspawn_pid)
        for tid in os.listdir("/proc/%d/task" % nspawn_pid):
            with open("/proc/%d/task/%s/children" % (nspawn_pid, tid)) as fh:
                for child in fh.read().split():
                    child = int(child)
                    if os.readlink("/proc/%d/ns/pid" % child) != mine:
                        # wait until it has exec'ed systemd
                        with open("/proc/%d/comm" % child) as c:
                            if c.read().strip() == "systemd":
                                return child
    except OSError:
        pass
    return None


# --------------------------------------------------------------------------- CLI

def main(argv=None):
    claims.disable()  # what `up` starts outlives this command on purpose, until `down`
    ap = argparse.ArgumentParser(description="overlay.flannel test cluster harness")
    sub = ap.add_subparsers(dest="cmd", required=True)

    def add_state(p):
        p.add_argument("--state-dir", default=DEFAULT_STATE_DIR)

    p = sub.add_parser("image", help="build (or reuse) the cached host image")
    p.add_argument("--rebuild", action="store_true")
    p.add_argument("--suite", default=image_mod.DEFAULT_SUITE, choices=sorted(image_mod.SUITES),
                   help="the Debian release of the image (default: %(default)s)")
    p = sub.add_parser("up", help="bring up hosts + etcd")
    add_state(p)
    p.add_argument("--hosts", type=int, default=None, help="number of hosts (default: one per --suites entry, else 3)")
    p.add_argument("--suites", default=None,
                   help="the Debian release of each host, comma-separated (e.g. bookworm,trixie,bookworm), "
                        "or one for all (default: %s)" % image_mod.DEFAULT_SUITE)
    p.add_argument("--mixed", action="store_true",
                   help="%s and trixie hosts alternately (flh1 %s, flh2 trixie, ...)"
                        % (image_mod.DEFAULT_SUITE, image_mod.DEFAULT_SUITE))
    p.add_argument("--prefix", default="", help="prefix for netns/veth/cgroup names")
    p.add_argument("--underlay", default="10.213.0", help="first three octets of the /24 underlay")
    p.add_argument("--no-etcd", action="store_true")
    p.add_argument("--etcd-plain", action="store_true",
                   help="one plain-HTTP etcd member instead of the 3-member TLS + auth cluster")
    p.add_argument("--timeout", type=float, default=240)
    p = sub.add_parser("down", help="tear everything down (idempotent)")
    add_state(p)
    p.add_argument("--keep-data", action="store_true", help="keep overlays' upper dirs and docker dirs")
    p = sub.add_parser("reboot", help="reboot one host (systemctl reboot inside it)")
    add_state(p)
    p.add_argument("host")
    p = sub.add_parser("stop", help="power one host off (it keeps its disk and netns)")
    add_state(p)
    p.add_argument("host")
    p = sub.add_parser("start", help="boot a stopped host again")
    add_state(p)
    p.add_argument("host")
    p = sub.add_parser("exec", help="run a command in a host")
    add_state(p)
    p.add_argument("--nsenter", action="store_true", help="nsenter into the host's PID 1 instead of ssh")
    p.add_argument("host")
    p.add_argument("command", nargs=argparse.REMAINDER)
    p = sub.add_parser("status")
    add_state(p)
    p = sub.add_parser("_supervise")
    add_state(p)
    p.add_argument("host")
    args = ap.parse_args(argv)

    if args.cmd == "image":
        img = image_mod.ensure_image(rebuild=args.rebuild, suite=args.suite)
        print(json.dumps(dict(img.to_dict(), build_seconds=img.manifest().get("build_seconds")), indent=1))
        return 0
    if args.cmd == "_supervise":
        supervise(os.path.abspath(args.state_dir), args.host)
        return 0
    if args.cmd == "up":
        hosts = args.hosts
        if hosts is None:
            hosts = len(args.suites.split(",")) if args.suites and "," in args.suites else 3
        try:
            c = Cluster(args.state_dir, hosts=hosts, prefix=args.prefix, underlay=args.underlay,
                        etcd=not args.no_etcd, etcd_plain=args.etcd_plain, suites=args.suites, mixed=args.mixed)
        except ValueError as exc:
            print("up: %s" % exc, file=sys.stderr)
            return 2
        try:
            c.up(timeout=args.timeout)
        except Exception as exc:
            hint = ("\n(run `down --state-dir %s` to clean up)" % c.state_dir
                    if c.state.get("phase") not in ("new", "down") else "")
            print("up failed: %s%s" % (exc, hint), file=sys.stderr)
            return 1
        print(json.dumps({"inventory": c.inventory_path, "ssh_config": c.ssh_config_path,
                          "etcd": c.etcd_endpoints, "etcd_local": c.etcd_local_endpoints,
                          "hosts": {h.name: h.ip for h in c.hosts}, "suites": c.suites, "timings": c.state["timings"],
                          "mem_used_kb": c.state.get("mem_used_kb")}, indent=1))
        return 0
    try:
        c = Cluster.load(args.state_dir)
    except FileNotFoundError as exc:
        if args.cmd == "down":
            print("nothing to do: %s" % exc, file=sys.stderr)
            return 0
        print(exc, file=sys.stderr)
        return 1
    if args.cmd == "down":
        problems = c.down(keep_data=args.keep_data)
        left = c.leftovers()
        if left:
            print("left behind: %s" % left, file=sys.stderr)
        return 1 if left else 0
    if args.cmd == "reboot":
        t0 = time.monotonic()
        c.reboot(args.host)
        print("%s rebooted in %.1fs" % (args.host, time.monotonic() - t0))
        return 0
    if args.cmd in ("stop", "start"):
        getattr(c, args.cmd)(args.host)
        return 0
    if args.cmd == "exec":
        cmd = args.command
        if cmd and cmd[0] == "--":
            cmd = cmd[1:]
        if not cmd:
            if args.nsenter:
                cmd = ["/bin/bash", "-l"]
            else:
                return subprocess.call(c.ssh_argv(args.host, tty=True))
        if args.nsenter:
            leader = c.leader_pid(args.host)
            if not leader:
                print("host not running", file=sys.stderr)
                return 1
            return subprocess.call(["nsenter", "-t", str(leader), "-a", "-r", "-w"] + list(cmd))
        return subprocess.call(c.ssh_argv(args.host, cmd if len(cmd) > 1 else cmd[0]))
    if args.cmd == "status":
        print(json.dumps(c.status(), indent=1))
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
