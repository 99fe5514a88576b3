"""playbooks/renew.yml on the test cluster: renewals, reservations and back, with the real forwarders.

- renew.yml extends every lease to a full TTL now and prints each host's subnet and old -> new expiry.
- -e flannel_subnet_ttl=12: the leases move to 12 s etcd leases on the same subnets and the running
  forwarders renew them (the keys outlive the TTL), without a restart.
- -e flannel_subnet_ttl=0: reservations on the same subnets; --check --diff changes nothing; a second run is
  changed=0; the forwarders stay up and ready (/readyz), keep forwarding, log no errors and never write a
  TTL lease over the reservation; a forwarder restarted keeps it; a host powered off longer than the TTL
  keeps its reserved subnet.
- a TTL again turns them back into leases, same subnets, renewed by the forwarders.
The cluster is left so (the health server on, 12 s leases that the forwarders renew): the next file in make
test's cluster lane, test_site_backends.py, starts with a site.yml run of its own settings (`overlay_up`).
"""

import base64
import json
import re
import time

import pytest

from cluster.flannel_helpers import (
    HEALTHZ,
    ping,
    readyz,
    run_playbook,
    service_state,
    leases_in_etcd,
    start_container,
    subnet_env,
    wait_for,
)
from support import ledger

pytestmark = pytest.mark.cluster

# The forwarders renew at the margin (LeaseKeeper waits for that moment), so a short TTL costs no accuracy:
# 12 s with a 4 s margin, as test_site_hosts.py's expiring hosts. The fixed waits below are sized from it.
SHORT_TTL = 12
SHORT = ["-e", "flannel_subnet_ttl=%d" % SHORT_TTL, "-e", "flannel_subnet_renew_margin=4"]
RESERVE = ["-e", "flannel_subnet_ttl=0"]
# A forwarder checks its own lease every 10 s (LeaseKeeper.check_interval): nothing rewritten within one
# check and a bit is nothing rewritten at all.
CHECK_WINDOW = 12
LINE = re.compile(r'"msg": "(\S+): (\S+) (\S+) -> (\S+?)( \(check mode: nothing changed\))?"')


def renew(c, *args):
    run = run_playbook(c, "renew.yml", *(HEALTHZ + list(args)))
    assert run.rc == 0, run.tail()
    return run


def printed(run):
    """{host: (subnet, old, new, check)} from the 'Show the new expiry' lines."""
    return {m.group(1): (m.group(2), m.group(3), m.group(4), bool(m.group(5))) for m in LINE.finditer(run.stdout)}


def leases(c, _tmp_path=None):
    """{public_ip: lease} read from etcd (subnet_info's shape)."""
    return {lease["public_ip"]: lease for lease in leases_in_etcd(c)["leases"]}


def etcd_leases(c):
    """{key: (etcd lease id, mod_revision)} read with etcdctl."""
    out = c.etcdctl("get", "--prefix", "/coreos.com/network/subnets/", "-w", "json")
    return {base64.b64decode(kv["key"]).decode(): (int(kv.get("lease", 0)), int(kv["mod_revision"]))
            for kv in json.loads(out).get("kvs", [])}


def pids(c, hosts=None):
    return {h: service_state(c, h, "flannel-forwarder.service")["MainPID"] for h in hosts or c.host_names}


def changed(run):
    return {h: r["changed"] for h, r in run.recap.items()}


def journal_problems(c, host, since):
    """Forwarder journal lines since `since` (epoch) of level warning or worse, and any re-creation."""
    out = c.run(host, "journalctl --no-pager -o cat -u flannel-forwarder --since @%d" % int(since),
                check=False).stdout
    return [line for line in out.splitlines()
            if re.search(r"\b(ERROR|WARNING|CRITICAL)\b|Traceback|re-creating|fatal", line)]


def all_ping(c, ips, hosts=None):
    bad = []
    for src in hosts or c.host_names:
        for dst, ip in ips.items():
            if dst != src and ping(c, src, ip).returncode != 0:
                bad.append((src, dst))
    return bad


def wait_renewed(c, start):
    """Until every lease of `start` ({public_ip: lease}) has been renewed by its forwarder: its
    ttl_remaining went down, then up again (at most two short TTLs)."""
    low = {ip: lease["ttl_remaining"] for ip, lease in start.items()}
    rose = set()
    deadline = time.monotonic() + 2 * SHORT_TTL
    while time.monotonic() < deadline and len(rose) < len(low):
        time.sleep(1)
        for ip, lease in leases(c).items():
            if lease["ttl_remaining"] is not None and lease["ttl_remaining"] > low[ip]:
                rose.add(ip)
            low[ip] = min(low[ip], lease["ttl_remaining"] or 0)
    assert rose == set(low), "no renewal seen for %s" % (set(low) - rose)


@pytest.fixture(scope="module")
def renewing(cluster):
    """The cluster converged with /readyz on: one site.yml (a no-op after test_site_etcd_faults.py, which
    leaves the cluster so; on a cluster as the default run left it, it restarts the forwarders once)."""
    run = run_playbook(cluster, "site.yml", *HEALTHZ)
    assert run.rc == 0, run.tail()
    return cluster


def test_renew_extends_every_lease_to_a_full_ttl_and_prints_it(renewing, tmp_path):
    c = renewing
    ips = {h.name: h.ip for h in c.hosts}
    ledger.sleep(3, "the leases age, so that a renewal shows as more time left")
    before = leases(c, tmp_path)
    run = renew(c)
    after = leases(c, tmp_path)
    lines = printed(run)
    assert sorted(lines) == sorted(ips), run.stdout[-3000:]
    for name, ip in ips.items():
        subnet, old, new, check = lines[name]
        assert subnet == before[ip]["subnet"] == after[ip]["subnet"] and not check
        assert old != "reservation" and new > old, (name, old, new)
        assert after[ip]["ttl_remaining"] >= 86400 - 10, after[ip]
        assert after[ip]["ttl_remaining"] > before[ip]["ttl_remaining"], (before[ip], after[ip])
        # By nature a change every run: the expiry moved.
        assert run.recap[name]["changed"] >= 1
    assert all(readyz(c, h) == "200" for h in c.host_names)


def test_leases_reservations_and_back_with_the_running_forwarders(renewing, tmp_path):
    c = renewing
    ips = {h.name: h.ip for h in c.hosts}
    subnets = {ip: lease["subnet"] for ip, lease in leases(c, tmp_path).items()}
    assert sorted(subnets) == sorted(ips.values())
    containers = {h: start_container(c, h) for h in c.host_names}
    assert all_ping(c, containers) == []
    started = pids(c)
    since = time.time()

    # -- a short TTL: new 12 s etcd leases on the same subnets, renewed by the running forwarders ----------
    run = renew(c, *SHORT)
    short = leases(c, tmp_path)
    assert {ip: lease["subnet"] for ip, lease in short.items()} == subnets
    assert all(0 < lease["ttl_remaining"] <= SHORT_TTL for lease in short.values()), short
    ids = {key: lid for key, (lid, _rev) in etcd_leases(c).items()}
    assert all(ids.values())
    # Each forwarder renews its own new lease (same etcd lease, more time left); the keys' outliving a
    # whole TTL is checked once, at the end, after the way back from the reservations.
    wait_renewed(c, short)
    now = leases(c, tmp_path)
    assert {ip: lease["subnet"] for ip, lease in now.items()} == subnets, "a lease expired: the forwarder did not renew"
    assert {key: lid for key, (lid, _rev) in etcd_leases(c).items()} == ids
    assert pids(c) == started

    # -- --check --diff of a reservation: shown, nothing written -------------------------------------------
    state = etcd_leases(c)
    check = renew(c, "--check", "--diff", *RESERVE)
    lines = printed(check)
    assert all(lines[h][2] == "reservation" and lines[h][3] for h in c.host_names), check.stdout[-3000:]
    assert '"reservation": true' in check.stdout, check.stdout[-4000:]
    assert {k: lid for k, (lid, _r) in etcd_leases(c).items()} == {k: lid for k, (lid, _r) in state.items()}
    assert all(changed(check)[h] >= 1 for h in c.host_names)

    # -- reservations ----------------------------------------------------------------------------------------
    run = renew(c, *RESERVE)
    lines = printed(run)
    assert all(lines[h][1] != "reservation" and lines[h][2] == "reservation" for h in c.host_names), lines
    reserved = leases(c, tmp_path)
    assert {ip: lease["subnet"] for ip, lease in reserved.items()} == subnets
    assert all(lease["reservation"] is True and lease["expires_at"] is None for lease in reserved.values()), reserved
    state = etcd_leases(c)
    assert all(lid == 0 for lid, _rev in state.values()), state
    for lid in ids.values():
        res = c.etcdctl("lease", "timetolive", "%x" % lid, check=False)
        text = res if isinstance(res, str) else res.stdout + res.stderr
        assert "already expired" in text, text
    # The same command again, and its --check --diff, change nothing.
    again = renew(c, *RESERVE)
    assert all(v == 0 for v in changed(again).values()), (again.recap, again.changed_tasks())
    assert all(printed(again)[h][1:3] == ("reservation", "reservation") for h in c.host_names)
    check = renew(c, "--check", "--diff", *RESERVE)
    assert all(v == 0 for v in changed(check).values()), (check.recap, check.changed_tasks())

    # The forwarders follow, all within one wait past the short TTL: the running ones renew nothing and
    # write nothing over their reservations, log no errors and keep forwarding; one restarted keeps its
    # reservation (its environment still has the inventory's TTL; it checks its lease within CHECK_WINDOW);
    # a host powered off longer than the TTL keeps its reserved subnet.
    first, last = c.host_names[0], c.hosts[-1]
    c.run(first, "systemctl restart flannel-forwarder", check=True, timeout=60)
    c.stop(last.name)
    try:
        wait_for(lambda: readyz(c, first) == "200", timeout=60, what="%s ready after the restart" % first)
        ledger.sleep(max(SHORT_TTL + 5, CHECK_WINDOW),
                     "past the short TTL: nothing written over the reservations, by the running, the restarted "
                     "or the stopped host's forwarder")
        assert etcd_leases(c) == state, "a forwarder rewrote its reserved key"
        away = leases(c, tmp_path)
        assert away[last.ip]["subnet"] == subnets[last.ip] and away[last.ip]["reservation"] is True
        kept = [h for h in c.host_names if h not in (first, last.name)]
        assert pids(c, kept) == {h: started[h] for h in kept}, "a forwarder was restarted"
        for h in c.host_names[:-1]:
            assert journal_problems(c, h, since) == [], (h, journal_problems(c, h, since))
            assert readyz(c, h) == "200"
        assert all_ping(c, {h: ip for h, ip in containers.items() if h != last.name}, c.host_names[:-1]) == []
    finally:
        c.start(last.name)
    wait_for(lambda: c.run(last.name, "systemctl is-active flannel-forwarder docker").stdout.split()
             == ["active", "active"], timeout=120, what="forwarder and docker after the start")
    assert subnet_env(c, last.name)["FLANNEL_SUBNET"].rsplit(".", 1)[0] == subnets[last.ip].rsplit(".", 1)[0]
    wait_for(lambda: readyz(c, last.name) == "200", timeout=60, what="%s ready" % last.name)
    containers[last.name] = start_container(c, last.name)
    assert wait_for(lambda: all_ping(c, containers) == [], timeout=60, interval=3, what="pings after the start")
    assert etcd_leases(c) == state

    # -- a TTL again: leases on the same subnets, renewed by the forwarders ---------------------------------
    since = time.time()
    run = renew(c, *SHORT)
    lines = printed(run)
    assert all(lines[h][1] == "reservation" and lines[h][2] != "reservation" for h in c.host_names), lines
    back = leases(c, tmp_path)
    assert {ip: lease["subnet"] for ip, lease in back.items()} == subnets
    assert all(lease["reservation"] is False and 0 < lease["ttl_remaining"] <= SHORT_TTL for lease in back.values())
    ids = {key: lid for key, (lid, _rev) in etcd_leases(c).items()}
    assert all(ids.values())
    # ttl_remaining goes down, then up again (the forwarder's renewal), and the keys outlive the TTL.
    wait_renewed(c, back)
    ledger.sleep(SHORT_TTL, "the renewed keys outlive the short TTL")
    assert {key: lid for key, (lid, _rev) in etcd_leases(c).items()} == ids
    for h in c.host_names:
        assert journal_problems(c, h, since) == [], (h, journal_problems(c, h, since))
        assert readyz(c, h) == "200"
    assert all_ping(c, containers) == []
    assert {h: p for h, p in pids(c).items() if h != first and h != last.name} == \
        {h: p for h, p in started.items() if h != first and h != last.name}
