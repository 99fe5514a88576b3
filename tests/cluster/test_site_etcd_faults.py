"""etcd faults on the test cluster: the 3-member TLS + auth etcd loses members, its leader, everything, its
history and a member's data, under site.yml and under running forwarders.

Each test is one fault of issue 8 and checks what the hosts see: the play's
result, the forwarders' metrics (/metrics on 127.0.0.1:9090 of each host,
read with the host's python3), their journals, containers pinging each other
across hosts during the fault, and the leases in etcd (read in the test process; the subnet_info
module where the modules are what a fault must not break). Timings
are printed (pytest -s), not asserted tightly: the machine is a loaded 2-core
one. The first test's site.yml run (a member killed in the middle of it) turns
the health server and a short TTL on; the module's last run restores the
default TTL and leaves the health server on, as test_site_renew.py (next in
make test's cluster lane) wants it.
"""

import os
import re
import subprocess
import threading
import time

import pytest

from ansible_collections.overlay.flannel.plugins.module_utils.etcd_client import EtcdClient
from ansible_collections.overlay.flannel.plugins.module_utils.store import FlannelStore

from cluster.flannel_helpers import (
    HEALTHZ,
    HEALTHZ_PORT,
    NETWORK,
    PREFIX,
    REPO,
    Pings,
    ansible_tool,
    containers,
    leases_in_etcd,
    parallel,
    ping,
    readyz,
    run_playbook,
    ssh_popen,
    subnet_env,
    subnet_info,
    wait_for,
)
from support import ledger

pytestmark = pytest.mark.cluster

# Renewal really happens during the module: the forwarder gets the margin in whole minutes (1), so with a
# TTL of 90 s it renews whenever less than 60 s remain, every 30 s or so.
SHORT_TTL = 90
SHORT = ["-e", "flannel_subnet_ttl=%d" % SHORT_TTL, "-e", "flannel_subnet_renew_margin=60"]
FAKE_TTL = 600

METRICS_PY = ("import urllib.request as u; "
              "print(u.urlopen('http://127.0.0.1:%d/metrics', timeout=5).read().decode())" % HEALTHZ_PORT)
# Polls the forwarder's peer count every 20 ms and prints the wall clock time at which it reaches argv[1]
# (the hosts share the controller's clock: they are containers on this machine).
ARRIVAL_PY = r"""
import sys, time, urllib.request as u
target, deadline = int(sys.argv[1]), time.time() + float(sys.argv[2])
print("ready", flush=True)
while time.time() < deadline:
    try:
        text = u.urlopen("http://127.0.0.1:%d/metrics", timeout=2).read().decode()
        for line in text.splitlines():
            if line.startswith("flannel_forwarder_peers ") and int(float(line.split()[1])) == target:
                print("arrived %%.3f" %% time.time(), flush=True)
                sys.exit(0)
    except Exception:
        pass
    time.sleep(0.02)
print("timeout", flush=True)
sys.exit(1)
""" % HEALTHZ_PORT


# --- helpers ---------------------------------------------------------------------------

def metrics(c, host):
    """{'name{labels}': value} of the forwarder's /metrics on `host`."""
    res = c.run(host, ["python3", "-c", METRICS_PY], check=False, timeout=30)
    assert res.returncode == 0, "%s: /metrics: %s" % (host, res.stderr[-500:])
    out = {}
    for line in res.stdout.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def all_metrics(c):
    return parallel(lambda h: metrics(c, h), c.host_names)


def endpoint_of(m, use):
    """The etcd endpoint the forwarder's `use` ("watch" or "lease") is on now, from etcd_endpoint_info
    (None while it has none, e.g. a watch reconnecting)."""
    pattern = re.compile(r'^flannel_forwarder_etcd_endpoint_info\{(.*)\}$')
    for name, value in m.items():
        match = pattern.match(name)
        if match and value == 1:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
            if labels.get("use") == use:
                return labels.get("endpoint")
    return None


def member_of(ec, url):
    """The member name of a client URL (None for None)."""
    if url is None:
        return None
    names = {ec.client_url(n): n for n in ec.names}
    assert url in names, "%s is no member's endpoint (%s)" % (url, names)
    return names[url]


def watch_members(c, timeout=30):
    """{host: the member its forwarder's watch is on}; fails when a forwarder reports none within `timeout`
    seconds (a forwarder opens its watch just after it is ready, so one just started may not have yet)."""
    seen = {}

    def members():
        seen.update({h: member_of(c.etcd, endpoint_of(m, "watch")) for h, m in all_metrics(c).items()})
        return None not in seen.values()

    try:
        wait_for(members, timeout=timeout, interval=0.2, what="every forwarder's watch endpoint")
    except AssertionError:
        raise AssertionError("a forwarder reports no watch endpoint after %ds: %s" % (timeout, seen)) from None
    return dict(seen)


def make_leader(ec, name, timeout=30):
    """Move the raft leadership to `name` (etcdctl move-leader, sent to the current leader)."""
    leader = wait_for(ec.leader, timeout=timeout, what="an etcd leader")
    if leader != name:
        ids = {m["name"]: m["id"] for m in ec.member_list()}
        ec.etcdctl("move-leader", ids[name], endpoints=[ec.local_url(leader)])
        wait_for(lambda: ec.leader() == name, timeout=timeout, what="%s to lead" % name)
    return name


def all_members_up(ec):
    dead = [n for n in ec.names if not ec.alive(n)]
    if len(dead) == len(ec.names):
        ec.start_all()
    else:
        for n in dead:
            ec.start(n)
    ec.wait_healthy(timeout=60)


def store_for(c):
    """The collection's own store over the adapter, in this process, as the flannel user (what the subnet
    module runs): lease changes made here have a precise time."""
    a = c.etcd_module_args()
    client = EtcdClient(a["etcd_endpoints"], ca_cert=a["etcd_ca_cert"], client_cert=a["etcd_client_cert"],
                        client_key=a["etcd_client_key"], user=a["etcd_user"], password=a["etcd_password"])
    return FlannelStore(client, PREFIX)


class OneEndpoint:
    """The cluster as subnet_info sees it, with the modules' endpoint list cut to one member."""

    def __init__(self, c, url):
        self.c, self.url = c, url

    def etcd_module_args(self):
        return dict(self.c.etcd_module_args(), etcd_endpoints=[self.url])


def fake_ip(c, n):
    """A public IP on the underlay that no host has: its lease is one more peer for every forwarder."""
    return "%s.%d" % (c.controller_ip.rsplit(".", 1)[0], 200 + n)


def playbook_cmd(c, *args):
    return [ansible_tool("ansible-playbook"), "-i", c.inventory_path, os.path.join(REPO, "playbooks", "site.yml"),
            "-e", "flannel_network=%s" % NETWORK] + list(args)


def playbook_env():
    return dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", ANSIBLE_HOST_KEY_CHECKING="0",
                ANSIBLE_RETRY_FILES_ENABLED="0")


def a_new_lease_reaches_every_forwarder(c, counts, n):
    """A lease for fake host `n` reaches every forwarder (their peer counts were `counts`), and its
    release leaves them as they were: the watches work."""
    store = store_for(c)
    ip = fake_ip(c, n)
    released = False
    try:
        arrival = lease_change_arrival(c, lambda: store.acquire(ip, ttl=FAKE_TTL),
                                       {h: k + 1 for h, k in counts.items()})
        assert all(t is not None and t < 10 for t in arrival.values()), arrival
        store.release(ip)
        released = True
        wait_for(lambda: peer_counts(c) == counts, timeout=30, what="the fake lease gone everywhere")
    finally:
        try:
            if not released:  # a failure above must not leave the fake peer to the tests after this one
                store.release(ip)
        finally:
            store.client.close()


def lease_change_arrival(c, change, target_peers, timeout=30):
    """Run `change()` (an etcd write) while every host polls its forwarder's peer count; returns
    {host: seconds from the start of the write until the forwarder had `target_peers` peers} (None: never).
    The write itself (one acquire: a read, a grant, a transaction) takes part of that."""
    script = ARRIVAL_PY.replace("'", "'\\''")
    pollers = {h: ssh_popen(c, h, "python3 -c '%s' %d %d" % (script, target_peers[h], timeout)) for h in c.host_names}
    try:
        for h, proc in pollers.items():
            line = proc.stdout.readline()
            assert line.strip() == "ready", "%s: poller did not start: %r %s" % (h, line, proc.stderr.read())
        start = time.time()
        change()
        written = time.time()
        out = {}
        for h, proc in pollers.items():
            stdout, _stderr = proc.communicate(timeout=timeout + 30)
            m = re.search(r"arrived ([\d.]+)", stdout)
            out[h] = round(float(m.group(1)) - start, 3) if m else None
        print("lease change: the write took %.3fs; on every forwarder after its start: %s" % (written - start, out))
        return out
    finally:
        for proc in pollers.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def peer_counts(c):
    return {h: int(m["flannel_forwarder_peers"]) for h, m in all_metrics(c).items()}


def journal_since(c, host, since):
    return c.run(host, "journalctl -u flannel-forwarder --no-pager -o cat --since @%d" % int(since),
                 check=True).stdout


def assert_converged(c, tmp_path, ttl=None):
    """Every host: forwarder active, subnet.env, docker0 on its gateway, distinct subnets; etcd: exactly one
    lease per host, nothing invalid."""
    gateways = {}
    for host in c.hosts:
        assert c.run(host.name, "systemctl is-active flannel-forwarder docker", check=False).stdout.split() == \
            ["active", "active"], host.name
        env = subnet_env(c, host.name)
        assert env.get("FLANNEL_NETWORK") == NETWORK, (host.name, env)
        gateways[host.name] = env["FLANNEL_SUBNET"]
        addr = c.run(host.name, "ip -4 -o addr show dev docker0", check=True).stdout
        assert "inet %s " % env["FLANNEL_SUBNET"] in addr, (host.name, addr)
    assert len(set(gateways.values())) == len(c.hosts), gateways
    info = leases_in_etcd(c)
    assert sorted(lease["public_ip"] for lease in info["leases"]) == sorted(h.ip for h in c.hosts), info["leases"]
    assert not info.get("invalid"), info["invalid"]
    for lease in info["leases"]:
        assert lease["ttl_remaining"] > 0, lease
        if ttl:
            assert lease["ttl_remaining"] <= ttl, lease
    return info


def pings_between_hosts(c, ips):
    names = c.host_names
    failures = []
    for i, a in enumerate(names):
        b = names[(i + 1) % len(names)]
        res = ping(c, a, ips[b])
        if res.returncode != 0:
            failures.append("%s -> %s: %s" % (a, b, res.stdout[-300:]))
    return failures


def short_ttl_applied(c):
    out = parallel(lambda h: c.run(h, "cat /etc/flannel/forwarder.env", check=False).stdout, c.host_names)
    return all('FLANNELD_SUBNET_LEASE_TTL="%d"' % SHORT_TTL in text and
               'FLANNELD_HEALTHZ_PORT="%d"' % HEALTHZ_PORT in text for text in out.values())


def ensure_short_ttl(c):
    if not short_ttl_applied(c):
        run = run_playbook(c, "site.yml", *(HEALTHZ + SHORT))
        assert run.rc == 0, run.tail()


def wait_renewed(c, since, timeout):
    """Every forwarder has logged a renewal after `since` (epoch); returns the seconds it took."""
    start = time.monotonic()
    pending = set(c.host_names)
    deadline = start + timeout
    while pending and time.monotonic() < deadline:
        for h in sorted(pending):
            if "lease renewed" in journal_since(c, h, since):
                pending.discard(h)
        if pending:
            time.sleep(2)
    assert not pending, "no lease renewal logged within %ds on %s:\n%s" % (
        timeout, sorted(pending), "\n".join(journal_since(c, h, since)[-1500:] for h in sorted(pending)))
    return time.monotonic() - start


# --- the module's cluster ---------------------------------------------------------------

@pytest.fixture(scope="module")
def faults(cluster):
    if not ansible_tool("ansible-playbook"):
        pytest.fail("ansible-playbook not installed (make venv)", pytrace=False)
    if cluster.etcd is None:
        pytest.fail("the etcd fault tests need the 3-member etcd cluster (not --etcd-plain)", pytrace=False)
    started = time.monotonic()
    all_members_up(cluster.etcd)
    # No site.yml of its own: the first test's run turns the health server and the short TTL on (while a member
    # dies), and each later test asks for them (ensure_short_ttl), a no-op after it.
    yield cluster
    # Later test files reuse the cluster: every member back, the default TTL applied. The health server
    # stays on: test_site_renew.py, next in make test's cluster lane, runs with it; a file that needs the
    # defaults asks for `converged`, which converges the cluster again.
    all_members_up(cluster.etcd)
    run = run_playbook(cluster, "site.yml", *HEALTHZ)
    assert run.rc == 0, run.tail()
    print("\netcd fault tests: %.0fs in all" % (time.monotonic() - started))


# --- 1. a member killed in the middle of site.yml ------------------------------------------

def test_member_killed_in_the_middle_of_site(faults, tmp_path):
    """The first endpoint's member, made the leader, is killed when the play reaches the forwarder role. The
    run changes the TTL, so the subnet module re-grants every lease and every forwarder restarts while that
    member is dead: the play completes and every host converges."""
    c, ec = faults, faults.etcd
    first = ec.names[0]
    assert ec.client_url(first) == c.etcd_endpoints[0]
    make_leader(ec, first)
    before = {h: c.run(h, "systemctl show -p MainPID --value flannel-forwarder", check=True).stdout.strip()
              for h in c.host_names}
    proc = subprocess.Popen(playbook_cmd(c, *(HEALTHZ + SHORT)), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=playbook_env(), cwd=REPO)
    watchdog = threading.Timer(900, proc.kill)
    watchdog.start()
    lines, killed_at, start = [], None, time.monotonic()
    try:
        for line in proc.stdout:
            lines.append(line)
            if killed_at is None and line.startswith("TASK [overlay.flannel.forwarder : Lease this host's subnet]"):
                ec.kill(first)
                killed_at = time.monotonic() - start
        rc = proc.wait()
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
    output = "".join(lines)
    seconds = time.monotonic() - start
    ledger.record("playbook", "site.yml (etcd member killed) " + " ".join(a for a in HEALTHZ + SHORT if a != "-e"),
                  seconds, rc=rc)
    print("site.yml with %s (the leader) killed %.1fs into the run: rc=%d in %.1fs"
          % (first, killed_at or -1, rc, seconds))
    try:
        assert killed_at is not None, "the play never reached the forwarder role:\n" + output[-6000:]
        assert rc == 0, output[-6000:]
        assert not ec.alive(first)
        recap = re.findall(r"^(\S+)\s+:\s+ok=\d+\s+changed=\d+\s+unreachable=(\d+)\s+failed=(\d+)", output, re.M)
        assert sorted(h for h, u, f in recap if u == "0" and f == "0") == sorted(c.host_names), recap
        assert short_ttl_applied(c)
        after = {h: c.run(h, "systemctl show -p MainPID --value flannel-forwarder", check=True).stdout.strip()
                 for h in c.host_names}
        assert all(after[h] != before[h] for h in c.host_names), "the forwarders were not restarted: %s %s" % (
            before, after)
        assert_converged(c, tmp_path, ttl=SHORT_TTL)
        assert all(readyz(c, h) == "200" for h in c.host_names)
        # the forwarders started with the first endpoint dead: they watch another member
        watching = watch_members(c)
        assert first not in watching.values(), watching
        assert pings_between_hosts(c, containers(c)) == []
    finally:
        if not ec.alive(first):
            ec.start(first)
    ec.wait_healthy(timeout=60)
    assert all(ec.health().values())
    status = ec.endpoint_status()
    assert len({st["raft_term"] for st in status.values()}) == 1, status
    assert ec.leader() is not None


# --- 2. the leader killed under running forwarders ---------------------------------------------

def test_leader_killed_while_forwarding(faults):
    """The member every forwarder watches is made the leader and killed while containers ping each other
    across hosts: the pings go on, every watch resumes on another member, and a lease made afterwards
    reaches every forwarder."""
    c, ec = faults, faults.etcd
    all_members_up(ec)
    ensure_short_ttl(c)
    watching = watch_members(c)
    if len(set(watching.values())) != 1:
        # Put them on one member: a forwarder starts on the first endpoint.
        for h in c.host_names:
            c.run(h, "systemctl restart flannel-forwarder", check=True, timeout=120)

        def all_on_one_member():
            w = {h: member_of(ec, endpoint_of(m, "watch")) for h, m in all_metrics(c).items()}
            return None not in w.values() and len(set(w.values())) == 1 and w

        watching = wait_for(all_on_one_member, timeout=60, what="every watch on one member")
    target = next(iter(watching.values()))
    make_leader(ec, target)
    print("every forwarder watches %s, the leader" % target)
    ips = containers(c)
    counts = peer_counts(c)
    pings = Pings(c, ips, seconds=20)
    try:
        ledger.sleep(4, "pings flow before the leader is killed")
        killed = time.monotonic()
        ec.kill(target)

        def moved():
            ms = all_metrics(c)
            return all(member_of(ec, endpoint_of(m, "watch")) not in (None, target) for m in ms.values()) and ms
        ms = wait_for(moved, timeout=30, interval=0.5, what="every watch on another member")
        print("watches moved off %s in %.1fs: %s" % (target, time.monotonic() - killed,
                                                     {h: endpoint_of(m, "watch") for h, m in ms.items()}))
        results = pings.results(timeout=90)
    finally:
        pings.kill()
    print("pings during the leader kill: %s" % results)
    for pair, (sent, received) in results.items():
        assert sent - received <= 1, (pair, sent, received)
    assert ec.leader() not in (None, target)

    store = store_for(c)
    ip = fake_ip(c, 1)
    released = False
    try:
        arrival = lease_change_arrival(c, lambda: store.acquire(ip, ttl=FAKE_TTL),
                                       {h: n + 1 for h, n in counts.items()})
        assert all(t is not None and t < 10 for t in arrival.values()), arrival
        # the renew loop's requests failed over as well (it checks every 10 s at most)
        wait_for(lambda: all(member_of(ec, endpoint_of(m, "lease")) not in (None, target)
                             for m in all_metrics(c).values()),
                 timeout=30, what="every lease check on another member")
        store.release(ip)
        released = True
        wait_for(lambda: peer_counts(c) == counts, timeout=30, what="the fake lease gone everywhere")
    finally:
        try:
            if not released:  # a failure above must not leave the fake peer to the tests after this one
                store.release(ip)
        finally:
            store.client.close()
            ec.start(target)
    ec.wait_healthy(timeout=60)


# --- 3. the whole etcd cluster stopped for 60 s -------------------------------------------------

def test_whole_etcd_stopped_for_a_minute(faults, tmp_path):
    """Every member stopped for 60 s (TTL 90 s, renewal when < 60 s remain): traffic keeps flowing; after etcd
    returns every lease is renewed, /readyz answers 200, exactly one lease per host, and the watches work."""
    c, ec = faults, faults.etcd
    all_members_up(ec)
    ensure_short_ttl(c)
    ips = containers(c)
    counts = peer_counts(c)
    outage = 60
    pings = Pings(c, ips, seconds=outage + 15)
    try:
        ledger.sleep(3, "pings flow before etcd stops")
        stopped = time.time()
        ec.stop_all()
        ledger.sleep(outage / 2, "etcd down: half the outage")
        during = all_metrics(c)
        print("during the outage: %s" % {h: (m["flannel_forwarder_etcd_connected"],
                                             m["flannel_forwarder_lease_seconds_remaining"])
                                         for h, m in during.items()})
        assert all(readyz(c, h) in ("200", "503") for h in c.host_names)
        ledger.sleep(max(0.0, stopped + outage - time.time()), "etcd down: the rest of the outage")
        restart = time.time()
        ec.start_all(timeout=60)
        back = time.time()
        print("etcd stopped for %.1fs, all members healthy %.1fs after their start"
              % (restart - stopped, back - restart))
        results = pings.results(timeout=120)
    finally:
        pings.kill()
        all_members_up(ec)
    print("pings during the outage: %s" % results)
    for pair, (sent, received) in results.items():
        assert sent - received <= 1, (pair, sent, received)
    # renewed: a renewal logged on every host after etcd came back, and the lease well above the margin
    took = wait_renewed(c, back, timeout=75)
    print("every forwarder renewed its lease %.1fs after etcd came back" % took)
    after = all_metrics(c)
    for h, m in after.items():
        assert m["flannel_forwarder_etcd_connected"] == 1, h
        assert 55 < m["flannel_forwarder_lease_seconds_remaining"] <= SHORT_TTL, (h, m)
    assert all(readyz(c, h) == "200" for h in c.host_names)
    info = assert_converged(c, tmp_path, ttl=SHORT_TTL)
    print("leases after the outage: %s" % [(lease["subnet"], lease["ttl_remaining"]) for lease in info["leases"]])
    # the watches work again: a lease made now reaches every forwarder
    a_new_lease_reaches_every_forwarder(c, counts, 2)
    assert pings_between_hosts(c, ips) == []


# --- 4. compaction past a forwarder's watch revision --------------------------------------------

def test_compaction_past_a_watch_revision(faults):
    """One forwarder is frozen (SIGSTOP) and the member its watch is on killed; meanwhile a lease is removed
    and two are added, and etcd is compacted past the frozen watch's revision. Resumed, the forwarder lists
    again and has exactly the current peers."""
    c, ec = faults, faults.etcd
    all_members_up(ec)
    ensure_short_ttl(c)
    host = c.host_names[-1]
    store = store_for(c)
    fakes = [fake_ip(c, n) for n in (3, 4, 5)]
    try:
        counts = peer_counts(c)
        base = counts[host]
        store.acquire(fakes[0], ttl=FAKE_TTL)
        wait_for(lambda: peer_counts(c)[host] == base + 1, timeout=30, what="the first fake lease on %s" % host)
        member = member_of(ec, endpoint_of(metrics(c, host), "watch"))
        assert member is not None
        frozen = time.time()
        c.run(host, "systemctl kill -s STOP flannel-forwarder", check=True)
        try:
            ec.kill(member)
            store.release(fakes[0])
            store.acquire(fakes[1], ttl=FAKE_TTL)
            store.acquire(fakes[2], ttl=FAKE_TTL)
            revision = ec.compact()
            ec.start(member)
        finally:
            c.run(host, "systemctl kill -s CONT flannel-forwarder", check=True)
            resumed = time.monotonic()
        print("%s frozen, its watch member %s killed, leases changed, etcd compacted to %d"
              % (host, member, revision))
        wait_for(lambda: peer_counts(c)[host] == base + 2, timeout=60, interval=0.5,
                 what="%s to list the peers again" % host)
        print("%s has the current peers %.1fs after it resumed" % (host, time.monotonic() - resumed))
        # The other hosts' watches, if on the killed member, came back by their own re-listing.
        wait_for(lambda: peer_counts(c) == {h: n + 2 for h, n in counts.items()}, timeout=30, interval=0.5,
                 what="every host to have the current peers")
        # The line comes after the table change, and journald takes it in on its own time.
        listed = "peers listed count=%d" % (base + 2)
        wait_for(lambda: listed in journal_since(c, host, frozen), timeout=15, interval=0.5,
                 what="%r in the journal of %s" % (listed, host))
        print("journal of %s since the freeze:\n%s" % (host, journal_since(c, host, frozen)[-2000:]))
        assert readyz(c, host) == "200"
        assert pings_between_hosts(c, containers(c)) == []
    finally:
        for ip in fakes:
            store.release(ip)
        store.client.close()
        all_members_up(ec)
    wait_for(lambda: peer_counts(c) == counts, timeout=30, what="the fake leases gone everywhere")


# --- 5. a member replaced ---------------------------------------------------------------------

def test_member_replaced(faults, tmp_path):
    """The first endpoint's member is removed, wiped and added again (same URLs, new member ID): with the
    endpoint list unchanged, the modules work (site.yml, subnet_info on that member alone), a forwarder
    started on it watches it, lease changes reach every forwarder, and renewals go on."""
    c, ec = faults, faults.etcd
    all_members_up(ec)
    ensure_short_ttl(c)
    name = ec.names[0]
    old_id = {m["name"]: m["id"] for m in ec.member_list()}[name]
    started = time.monotonic()
    replaced = time.time()
    ec.replace(name)
    print("%s replaced in %.1fs" % (name, time.monotonic() - started))
    members = {m["name"]: m for m in ec.member_list()}
    assert sorted(members) == sorted(ec.names)
    assert members[name]["id"] != old_id
    assert members[name]["clientURLs"] == [ec.client_url(name)]
    # the modules, against the new member alone: its data and its auth came from the others
    info = subnet_info(OneEndpoint(c, ec.local_url(name)), tmp_path / "replaced")
    assert sorted(lease["public_ip"] for lease in info["leases"]) == sorted(h.ip for h in c.hosts)
    run = run_playbook(c, "site.yml", *(HEALTHZ + SHORT))
    assert run.rc == 0, run.tail()
    assert_converged(c, tmp_path / "after", ttl=SHORT_TTL)
    # a forwarder started now connects to the first endpoint: the new member
    first_host = c.host_names[0]
    c.run(first_host, "systemctl restart flannel-forwarder", check=True, timeout=120)
    wait_for(lambda: readyz(c, first_host) == "200", timeout=60, what="%s ready" % first_host)
    # READY=1 comes once the peers are listed; the watch thread opens its stream right after, on its own
    watch = wait_for(lambda: endpoint_of(metrics(c, first_host), "watch"), timeout=30, interval=0.2,
                     what="the peer watch of %s open" % first_host)
    assert member_of(ec, watch) == name
    counts = peer_counts(c)
    a_new_lease_reaches_every_forwarder(c, counts, 6)
    took = wait_renewed(c, replaced, timeout=75)
    print("every forwarder renewed its lease after the replacement (%.1fs more)" % took)
    assert all(readyz(c, h) == "200" for h in c.host_names)
