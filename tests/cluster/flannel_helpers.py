"""Helpers of the end-to-end tests: ansible-playbook runs, host state, containers."""

import base64
import concurrent.futures
import json
import os
import re
import subprocess
import time

from support import ansible_under_test, ledger

from ansible_collections.overlay.flannel.plugins.module_utils.etcd_client import EtcdClient
from ansible_collections.overlay.flannel.plugins.module_utils.leases import lease_entries
from ansible_collections.overlay.flannel.plugins.module_utils.store import FlannelStore

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NETWORK = "10.5.0.0/16"
PREFIX = "/coreos.com/network"
IMAGE = "busybox"
CONTAINER = "ofl-e2e"
PING_INTERVAL = 0.2
# busybox's sleep as a container's PID 1 ignores SIGTERM: without this, every docker restart and host
# shutdown waits docker's default 10 s per test container before it kills it
STOP_FAST = "--stop-timeout 1"
# The forwarder's health server, on in the tests that read /readyz or /metrics (-e flannel_forwarder_healthz_port).
HEALTHZ_PORT = 9090
HEALTHZ = ["-e", "flannel_forwarder_healthz_port=%d" % HEALTHZ_PORT]
READYZ_PY = ("import urllib.request as u, urllib.error as e\n"
             "try:\n print(u.urlopen('http://127.0.0.1:%d/readyz', timeout=5).status)\n"
             "except Exception as x:\n print(getattr(x, 'code', x))\n" % HEALTHZ_PORT)

RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)\s+skipped=(\d+)"
                   r"\s+rescued=(\d+)\s+ignored=(\d+)", re.M)


def ansible_tool(name):
    """ansible-playbook, ansible, ... of the ansible-core under test (support/ansible_under_test.py:
    OVERLAY_FLANNEL_ANSIBLE_VENV, else the tests' own)."""
    return ansible_under_test.tool(name)


class PlaybookRun:
    def __init__(self, proc, seconds):
        self.rc = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.seconds = seconds
        self.recap = {m.group(1): dict(zip(("ok", "changed", "unreachable", "failed", "skipped", "rescued",
                                            "ignored"), map(int, m.groups()[1:])))
                      for m in RECAP.finditer(proc.stdout)}

    @property
    def output(self):
        return self.stdout + self.stderr

    def tail(self, n=6000):
        return self.output[-n:]

    def changed_tasks(self):
        """'TASK [...]' headers followed by a 'changed:' line, for messages."""
        found, task = [], None
        for line in self.stdout.splitlines():
            if line.startswith(("TASK [", "RUNNING HANDLER [")):
                task = line
            elif line.startswith("changed:") and task and task not in found:
                found.append(task)
        return found


def describe(playbook, args, network=NETWORK):
    """A playbook run in the ledger's words: 'site.yml -e flannel_mtu=1400 --limit flh1'."""
    words = [os.path.basename(playbook)] + (["network=%s" % network] if network != NETWORK else [])
    words += [a for a in args if a != "-e"]
    return " ".join(words)


def record_run(what, run):
    ledger.record("playbook", what, run.seconds, rc=run.rc,
                  changed=sum(r["changed"] for r in run.recap.values()) if run.recap else None)


def run_playbook(cluster, playbook, *args, network=NETWORK, timeout=900, env=None, converges=None):
    """ansible-playbook playbooks/<playbook> against the cluster's inventory; `env` adds to (a value of None:
    removes from) the environment it runs in.

    A run that leaves the cluster converged on the defaults (site.yml with no other argument, or
    `converges=True`) notes the state it leaves (converged_state), so that the `converged` fixture
    of the next test module runs site.yml only when something changed since."""
    tool = ansible_tool("ansible-playbook")
    extra = env or {}
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", ANSIBLE_HOST_KEY_CHECKING="0",
               ANSIBLE_RETRY_FILES_ENABLED="0")
    for name, value in extra.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    cmd = [tool, "-i", cluster.inventory_path, os.path.join(REPO, "playbooks", playbook),
           "-e", "flannel_network=%s" % network] + list(args)
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=REPO, check=False)
    run = PlaybookRun(proc, time.monotonic() - start)
    record_run(describe(playbook, args, network), run)
    if converges is None:
        converges = playbook == "site.yml" and not args and network == NETWORK
    if converges and run.rc == 0:
        note_converged(cluster)
    return run


# -- "is the cluster still converged?": the state a default site.yml run left, compared by content -------------

_CONVERGED = {}  # state dir -> the fingerprint a default site.yml run left


def fingerprint(cluster):
    """What a default site.yml run decides, on every host and in etcd: flannel's files, the services' PIDs, the
    overlay's rules, docker0, docker's own settings and drop-ins, and the config and leases in etcd."""
    extra = ("; sha256sum /etc/docker/daemon.json 2>&1; ls /etc/systemd/system/docker.service.d 2>&1; "
             "systemctl is-active flannel-forwarder docker 2>&1")

    def host(name):
        return host_snapshot(cluster, name) + cluster.run(name, extra, check=False).stdout
    return dict(etcd=etcd_dump(cluster), hosts=parallel(host, cluster.host_names))


def note_converged(cluster):
    _CONVERGED[cluster.state_dir] = fingerprint(cluster)


def still_converged(cluster):
    """True when the cluster is exactly as the last default site.yml run left it (whatever ran since)."""
    noted = _CONVERGED.get(cluster.state_dir)
    return noted is not None and fingerprint(cluster) == noted


def subnet_env(cluster, host):
    res = cluster.run(host, "cat /run/flannel/subnet.env", check=False)
    return dict(line.split("=", 1) for line in res.stdout.split() if "=" in line)


def service_state(cluster, host, unit):
    res = cluster.run(host, ["systemctl", "show", "-p", "MainPID,ActiveEnterTimestamp,ActiveState,NRestarts", unit],
                      check=True)
    return dict(line.split("=", 1) for line in res.stdout.splitlines() if "=" in line)


def etcd_dump(cluster, prefix=PREFIX):
    """Keys and values under the prefix, read as etcd's root user from the controller (TLS + auth with
    the default etcd cluster; plain with --etcd-plain)."""
    out = cluster.etcdctl("get", "--prefix", prefix, "-w", "json")
    kvs = json.loads(out).get("kvs", [])
    return {base64.b64decode(kv["key"]).decode(): base64.b64decode(kv.get("value", "")).decode() for kv in kvs}


HOST_FILES = ["/run/flannel/subnet.env", "/run/flannel/docker", "/etc/flannel/forwarder.env",
              "/etc/systemd/system/flannel-forwarder.service", "/etc/systemd/system/flannel-iptables.service",
              "/etc/systemd/system/docker.service.d/flannel.conf", "/opt/flannel-forwarder/current/release.json",
              "/var/lib/flannel-forwarder/subnet"]


def host_snapshot(cluster, host):
    """What a run could change on a host: flannel's files, the services' PIDs, the rules."""
    script = ("for f in %s; do if [ -e $f ]; then sha256sum $f; else echo missing $f; fi; done; "
              "systemctl show -p MainPID flannel-forwarder.service docker.service; "
              "iptables -S FORWARD | grep -c overlay.flannel; iptables -t nat -S POSTROUTING | grep -c overlay.flannel; "
              "ip -4 -o addr show dev docker0 | awk '{print $4}'") % " ".join(HOST_FILES)
    return cluster.run(host, script, check=False).stdout


def start_container(cluster, host, name=CONTAINER):
    """A long-running busybox container; returns its overlay address."""
    cluster.run(host, "docker rm -f %s >/dev/null 2>&1; docker run -d %s --name %s %s sleep 3600"
                % (name, STOP_FAST, name, IMAGE), check=True, timeout=60)
    res = cluster.run(host, ["docker", "inspect", "-f", "{{.NetworkSettings.IPAddress}}", name], check=True)
    return res.stdout.strip()


def ping(cluster, host, address, name=CONTAINER, count=2):
    return cluster.run(host, "docker exec %s ping -c %d -W 2 %s" % (name, count, address), check=False, timeout=60)


def tcp_transfer(cluster, sender, receiver, receiver_ip, port, size=3000000, name=CONTAINER):
    """Send `size` random bytes with nc from one container to another; (sent md5, received md5, received size).

    busybox nc quits when its stdin ends: the listener's stdin is a pipe that
    stays open, and the sender sleeps after nc so its network namespace lives
    until the kernel has sent everything.
    """
    cluster.run(receiver, "docker exec %s rm -f /tmp/recv; docker exec -d %s sh -c 'sleep 60 | nc -l -p %d > /tmp/recv'"
                % (name, name, port), check=True)
    time.sleep(0.5)
    res = cluster.run(sender, "docker exec %s sh -c 'head -c %d /dev/urandom > /tmp/send; md5sum /tmp/send; "
                              "nc %s %d < /tmp/send; sleep 1'" % (name, size, receiver_ip, port), check=True, timeout=120)
    sent = res.stdout.split()[0]
    for _attempt in range(30):
        res = cluster.run(receiver, "docker exec %s sh -c 'md5sum /tmp/recv; wc -c < /tmp/recv; "
                                    "pidof nc >/dev/null && echo running || echo done'" % name, check=True)
        out = res.stdout.split()
        if out[-1] == "done":
            break
        time.sleep(0.5)
    return sent, out[0], int(out[2])


def leases_in_etcd(cluster, prefix=PREFIX):
    """The config and leases, read from etcd in the test process, in the shape of subnet_info's result
    (config, leases, invalid): for the tests that need the leases, not the module's own output."""
    a = cluster.etcd_module_args()
    client = EtcdClient(a["etcd_endpoints"], ca_cert=a.get("etcd_ca_cert"), client_cert=a.get("etcd_client_cert"),
                        client_key=a.get("etcd_client_key"), user=a.get("etcd_user"),
                        password=a.get("etcd_password"))
    store = FlannelStore(client, prefix)
    try:
        snap = store.snapshot()
        entries = lease_entries(snap.leases, store.ttls(snap.leases), time.time())
    finally:
        client.close()
    return dict(config=snap.config.to_dict() if snap.config is not None else None, leases=entries,
                invalid=[dict(key=bad.key, error=bad.error) for bad in snap.bad])


def subnet_info(cluster, tmpdir, prefix=PREFIX):
    """The overlay.flannel.subnet_info module's result, run on the controller (where the module's output is
    what a test checks; leases_in_etcd reads the same without a module run)."""
    tree = os.path.join(str(tmpdir), "subnet_info")
    # as the flannel user, with the cluster's CA and client certificate (what the roles use)
    args = json.dumps(dict(cluster.etcd_module_args(), etcd_prefix=prefix))
    res = subprocess.run([ansible_tool("ansible"), "localhost", "-c", "local", "-m", "overlay.flannel.subnet_info",
                          "-a", args, "-t", tree, "-e", "ansible_python_interpreter=%s" % ansible_under_test.python()],
                         capture_output=True, text=True, timeout=120, cwd=REPO, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    with open(os.path.join(tree, "localhost")) as fh:
        return json.load(fh)


def wait_for(predicate, timeout=60, interval=1.0, what="condition"):
    """Poll predicate() until it returns something true (returned), at most `timeout` seconds."""
    with ledger.timed("wait", what):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = predicate()
            if last:
                return last
            time.sleep(interval)
    raise AssertionError("timed out after %ds waiting for %s (last: %r)" % (timeout, what, last))


def parallel(fn, items):
    items = list(items)
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(items))) as pool:
        return dict(zip(items, pool.map(fn, items)))


def ssh_popen(c, host, command):
    return subprocess.Popen(["ssh", "-F", c.ssh_config_path, host, command], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def containers(c):
    return parallel(lambda h: start_container(c, h), c.host_names)


# A ping that runs until its stdin ends (the controller closes it), then stops with SIGINT and prints its
# replies and statistics. MAX_PING_S bounds it if the controller never does.
MAX_PING_S = 600
STOPPABLE_PING = "sh -c 'ping -i %s -c %d -W 1 %s & p=$!; read x; kill -INT $p 2>/dev/null; wait $p'"
REPLY_SEQ = re.compile(r"\b(?:icmp_)?seq=(\d+)\b.*time=")


def ping_losses(stdout):
    """(sent, received) of a stopped ping's output (busybox's or iputils'), leaving out the last request:
    it may have been in flight when the ping was stopped, which is no loss of the overlay's."""
    m = re.search(r"(\d+) packets transmitted, (\d+) (?:packets )?received", stdout)
    if not m:
        return None
    sent = int(m.group(1))
    seqs = {int(s) for s in REPLY_SEQ.findall(stdout)}
    base = 1 if "icmp_seq=" in stdout else 0  # iputils counts from 1, busybox from 0
    counted = range(base, base + max(sent - 1, 0))
    return len(counted), len([s for s in counted if s in seqs])


class Pings:
    """A continuous ping from each host's container (or, with `on_host`, the host itself) to the next host's
    (or along `pairs` of host names), running for at least `seconds` and until results() stops it."""

    def __init__(self, c, ips, seconds, pairs=None, on_host=False):
        names = c.host_names
        self.pairs = pairs or [(names[i], names[(i + 1) % len(names)]) for i in range(len(names))]
        self.min_seconds = seconds
        self.started = time.monotonic()
        ping = STOPPABLE_PING % (PING_INTERVAL, int(MAX_PING_S / PING_INTERVAL), "%s")
        wrap = "%s" if on_host else "docker exec -i ofl-e2e %s"
        self.procs = {(a, b): subprocess.Popen(["ssh", "-F", c.ssh_config_path, a, wrap % (ping % ips[b])],
                                               stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                               stderr=subprocess.PIPE, text=True)
                      for a, b in self.pairs}

    def stop(self):
        """Stop the pings once they have run their `seconds` (a wait recorded in the ledger)."""
        rest = self.started + self.min_seconds - time.monotonic()
        if rest > 0:
            ledger.sleep(rest, "pings run their %.0f s" % self.min_seconds)
        for proc in self.procs.values():
            if proc.stdin:
                proc.stdin.close()
                proc.stdin = None  # closed: communicate() must not flush it

    def results(self, timeout):
        """{(a, b): (sent, received)}, the last request of each left out (ping_losses)."""
        self.stop()
        out = {}
        for pair, proc in self.procs.items():
            stdout, stderr = proc.communicate(timeout=timeout)
            counts = ping_losses(stdout)
            assert counts, "ping %s -> %s: %s %s" % (pair[0], pair[1], stdout[-500:], stderr[-500:])
            out[pair] = counts
        return out

    def kill(self):
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def pings_during(cluster, ips, action, pairs=None, seconds=0):
    """Run action() while the containers ping each other (Pings, stopped when the action returns).
    -> (what action returned, {(a, b): (sent, received)})."""
    pings = Pings(cluster, ips, seconds, pairs=pairs)
    try:
        result = action()
        return result, pings.results(timeout=60)
    finally:
        pings.kill()


def pings_all(cluster):
    """Start a container on every host; the pairs of hosts whose containers do not reach each other."""
    ips = {h.name: start_container(cluster, h.name) for h in cluster.hosts}
    failures = []
    for a in cluster.hosts:
        for b in cluster.hosts:
            if a.name != b.name and ping(cluster, a.name, ips[b.name]).returncode != 0:
                failures.append("%s -> %s" % (a.name, b.name))
    return failures


def gateway_of(cluster, host):
    """FLANNEL_SUBNET of the host's subnet.env (its docker0 gateway, 10.5.3.1/24)."""
    return subnet_env(cluster, host)["FLANNEL_SUBNET"]


def readyz(cluster, host):
    """What the host's forwarder answers on /readyz (the status code, or the error), read with its python3."""
    return cluster.run(host, ["python3", "-c", READYZ_PY], check=False, timeout=30).stdout.strip()


# -- the collection as a user gets it: the built tarball, installed (tests/cluster/conftest.py `built`) --------


def clean_env(collections_path):
    """The environment of a user's shell: no ANSIBLE_* of the test run (which point at the checkout)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_") and k != "PYTHONPATH"}
    env.update(ANSIBLE_COLLECTIONS_PATH=collections_path, ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="False",
               ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", ANSIBLE_HOST_KEY_CHECKING="0",
               ANSIBLE_RETRY_FILES_ENABLED="0")
    return env


def run_checked(cmd, cwd, env, timeout=300):
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout, check=False)
    assert res.returncode == 0, "%s: rc=%d\n%s%s" % (" ".join(cmd), res.returncode, res.stdout[-4000:],
                                                     res.stderr[-4000:])
    return res


def build_and_install(base):
    """`ansible-galaxy collection build` of this checkout, installed into an empty collections path:
    (tarball, collections path, an empty working directory, the environment to run ansible in)."""
    galaxy = ansible_tool("ansible-galaxy")
    dist, collections, work = (os.path.join(str(base), d) for d in ("dist", "collections", "work"))
    for d in (dist, collections, work):
        os.makedirs(d)
    env = clean_env(collections)
    run_checked([galaxy, "collection", "build", "--output-path", dist, REPO], cwd=work, env=env)
    tarballs = [os.path.join(dist, f) for f in os.listdir(dist) if f.endswith(".tar.gz")]
    assert len(tarballs) == 1, tarballs
    run_checked([galaxy, "collection", "install", "--offline", "-p", collections, tarballs[0]], cwd=work, env=env)
    return tarballs[0], collections, work, env


def install_tarball(galaxy, tarball, base):
    """`tarball` installed by `galaxy` (an ansible-galaxy) into an empty collections path under `base`:
    (tarball, collections path, an empty working directory, the environment to run ansible in), as
    build_and_install returns them."""
    collections, work = (os.path.join(str(base), d) for d in ("collections", "work"))
    for d in (collections, work):
        os.makedirs(d)
    env = clean_env(collections)
    run_checked([galaxy, "collection", "install", "--offline", "-p", collections, tarball], cwd=work, env=env)
    return tarball, collections, work, env


def site_from_tarball(cluster, built, *args, timeout=900, playbook_tool=None, playbook="site", label="tarball"):
    """ansible-playbook overlay.flannel.<playbook> from the installed tarball, cwd outside the checkout
    (`playbook_tool`: another ansible-playbook than the one under test, e.g. the Debian 13 controller's)."""
    _tarball, _collections, work, env = built
    cmd = [playbook_tool or ansible_tool("ansible-playbook"), "-i", cluster.inventory_path,
           "overlay.flannel.%s" % playbook, "-e", "flannel_network=%s" % NETWORK] + list(args)
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=work, env=env, timeout=timeout, check=False)
    run = PlaybookRun(proc, time.monotonic() - start)
    record_run("overlay.flannel.%s (%s) %s" % (playbook, label, describe("", args).strip()), run)
    return run


# -- the forwarders' peer probes (their status files) ---------------------------------------------------------------

def peer_states(c):
    """{(host, peer's public IP): state} from every host's status file (/run/flannel/peers.json)."""
    def read(name):
        out = c.run(name, "cat /run/flannel/peers.json", check=False).stdout
        try:
            return json.loads(out)["peers"]
        except (ValueError, KeyError):
            return []
    found = parallel(read, [h.name for h in c.hosts])
    return dict(((name, p["public_ip"]), p["state"]) for name, peers in found.items() for p in peers)


def wait_states(c, want, what):
    """Until every host's status file says `want(host, peer host)` for each other host."""
    expected = dict(((a.name, b.ip), want(a.name, b.name)) for a in c.hosts for b in c.hosts if a.name != b.name)
    seen = []

    def done():
        seen[:] = [peer_states(c)]
        return seen[0] == expected
    try:
        return wait_for(done, timeout=90, interval=0.5, what=what)
    except AssertionError as exc:
        raise AssertionError("%s: want %s, the status files say %s" % (exc, expected, seen)) from None


def all_up(_a, _b):
    return "up"


# --- the forwarder's sandbox, read on a host ---------------------------------------------------------------------

# The capability numbers of <linux/capability.h>, written out here so that the tests do not take them from the code
# they test; what each setting grants is the list in roles/forwarder/README.md ("Capabilities").
CAP_BITS = {"CAP_NET_BIND_SERVICE": 10, "CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13}
MAX_EXPOSURE = 2.5  # systemd-analyze security, the bound of the forwarder's unit
# The owner, group and mode of what the sandboxed daemon writes (its own) and of its secrets: the client key readable
# by its group, the password file (systemd reads it) by root alone.
SANDBOXED_FILES = {
    "/var/lib/flannel-forwarder": "flannel-forwarder:flannel-forwarder 755",
    "/run/flannel": "flannel-forwarder:flannel-forwarder 755",
    "/run/flannel/subnet.env": "flannel-forwarder:flannel-forwarder 644",
    "/etc/flannel/pki": "root:flannel-forwarder 750",
    "/etc/flannel/pki/client-key.pem": "root:flannel-forwarder 640",
    "/etc/flannel/forwarder.env": "root:root 600",
}

# One ssh call: the daemon's identity and capabilities from /proc, systemd's rating of its unit, the socket its
# peer probes opened (its log line), the ownership of what it writes and of the etcd TLS files.
_SANDBOX_SCRIPT = r"""
pid=$(systemctl show -p MainPID --value flannel-forwarder.service)
echo "pid=$pid"
grep -E '^(Uid|Gid|CapInh|CapPrm|CapEff|CapBnd|CapAmb):' /proc/$pid/status | tr -s '\t ' ' ' | sed 's/: /=/'
echo "user=$(stat -c %U /proc/$pid)"
echo "exposure=$(systemd-analyze security flannel-forwarder.service 2>&1 | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')"
echo "probe_socket=$(journalctl -b -u flannel-forwarder.service -o cat --no-pager \
  | sed -n 's/^.*peer probes: every.*, \([a-z_]*\) socket, from.*$/\1/p' | tail -1)"
echo "ping_group_range=$(tr -s '\t' ' ' < /proc/sys/net/ipv4/ping_group_range)"
echo "account=$(getent passwd flannel-forwarder | cut -d: -f3,4,6,7)"
for path in /var/lib/flannel-forwarder /run/flannel /run/flannel/subnet.env /etc/flannel/pki /etc/flannel/pki/client-key.pem /etc/flannel/forwarder.env; do
    echo "stat:$path=$(stat -c '%U:%G %a' $path 2>/dev/null)"
done
"""


def forwarder_sandbox(cluster, host):
    """What the running forwarder holds on `host`: {pid, Uid, CapEff, ..., user, exposure (float), probe_socket,
    ping_group_range, account, stat: {path: 'owner:group mode'}}."""
    out = cluster.run(host, "sh -s", input=_SANDBOX_SCRIPT, check=True).stdout
    facts = {"stat": {}}
    for line in out.splitlines():
        key, _sep, value = line.partition("=")
        if key.startswith("stat:"):
            facts["stat"][key[5:]] = value
        else:
            facts[key] = value
    facts["exposure"] = float(facts["exposure"]) if facts.get("exposure") else None
    return facts


def capability_mask(names):
    """CapEff as /proc/<pid>/status prints it, of these capabilities."""
    return "%016x" % sum(1 << CAP_BITS[name] for name in names)


# From a host, a UDP datagram to an address of the overlay network that no host leases: the udp forwarder answers
# with ICMP net unreachable from its TUN's own address (not to ICMP: RFC 792), which the kernel takes only with
# accept_local on the TUN (a sysctl the sandboxed daemon writes). Prints "type code source" of the first ICMP error
# that quotes the datagram, or "none".
_UNREACHABLE_SCRIPT = r"""
import socket, sys, time
dst, port = sys.argv[1], 33434
icmp = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
icmp.settimeout(0.5)
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind(("0.0.0.0", 0))
mine = udp.getsockname()[1].to_bytes(2, "big") + port.to_bytes(2, "big")
deadline = time.monotonic() + 5
while time.monotonic() < deadline:
    udp.sendto(b"unreachable?", (dst, port))
    try:
        data, addr = icmp.recvfrom(2048)
    except socket.timeout:
        continue
    if len(data) < 56:
        continue
    ihl = (data[0] & 15) * 4
    inner = ihl + 8 + (data[ihl + 8] & 15) * 4
    if data[ihl] in (3, 11, 12) and data[ihl + 8 + 9] == 17 and data[inner:inner + 4] == mine:
        print(data[ihl], data[ihl + 1], addr[0])
        sys.exit(0)
print("none")
"""


def icmp_error_from(cluster, host, address):
    """(type, code, source) of the ICMP error `host` gets for a UDP datagram to `address`, or None."""
    out = cluster.run(host, "python3 - %s" % address, input=_UNREACHABLE_SCRIPT, check=True, timeout=30).stdout.split()
    return None if out == ["none"] else (int(out[0]), int(out[1]), out[2])
