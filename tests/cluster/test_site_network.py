"""Growing and changing the network with site.yml on the test cluster (day 2).

/16 -> /15 with traffic flowing: every forwarder follows through etcd (its
route, FLANNEL_NETWORK), no host changes subnet, neither the forwarders nor
docker restart, the iptables rules follow; a host moved into the new half is
reachable from the others; shrinking back is refused naming the host left
outside, and with flannel_network_relet that host is re-leased.
"""

import pytest

from cluster.flannel_helpers import (
    containers,
    etcd_dump,
    gateway_of,
    pings_all,
    pings_during,
    run_playbook,
    service_state,
    leases_in_etcd,
    subnet_env,
)

pytestmark = pytest.mark.cluster

OLD, NEW = "10.5.0.0/16", "10.4.0.0/15"
CONFIG_KEY = "/coreos.com/network/config"


def leases(c, _tmp_path=None):
    return {lease["public_ip"]: lease["subnet"] for lease in leases_in_etcd(c)["leases"]}


def pids(c):
    return {h: (service_state(c, h, "flannel-forwarder.service")["MainPID"],
                service_state(c, h, "docker.service")["MainPID"]) for h in c.host_names}


def overlay_rules(c, host):
    out = c.run(host, "iptables -S FORWARD; iptables -t nat -S POSTROUTING", check=True).stdout
    return [line for line in out.splitlines() if "overlay.flannel" in line]


def test_grow_the_network_with_traffic_flowing(converged, tmp_path):
    c = converged
    ips = containers(c)
    before, before_pids = leases(c, tmp_path), pids(c)
    config_before = etcd_dump(c)[CONFIG_KEY]

    check = run_playbook(c, "site.yml", "--check", "--diff", network=NEW)
    assert check.rc == 0, check.tail()
    assert NEW in check.stdout and etcd_dump(c)[CONFIG_KEY] == config_before
    assert all(subnet_env(c, h)["FLANNEL_NETWORK"] == OLD for h in c.host_names)

    run, results = pings_during(c, ips, lambda: run_playbook(c, "site.yml", network=NEW))
    assert run.rc == 0, run.tail()
    print("pings while the network grew: %s" % results)
    for pair, (sent, received) in results.items():
        assert sent - received <= 1, (pair, sent, received)
    assert leases(c, tmp_path / "after") == before
    assert pids(c) == before_pids  # neither a forwarder nor docker restarted
    for h in c.host_names:
        assert subnet_env(c, h)["FLANNEL_NETWORK"] == NEW
        routes = c.run(h, "ip route show dev flannel0", check=True).stdout
        assert NEW in routes and OLD not in routes, routes
        rules = overlay_rules(c, h)
        assert rules and all(NEW in r for r in rules), rules
    again = run_playbook(c, "site.yml", network=NEW)
    assert again.rc == 0, again.tail()
    assert all(r["changed"] == 0 for r in again.recap.values()), again.changed_tasks()

    # A host moved into the new half is reachable from the old ones.
    host = c.hosts[2]
    moved = run_playbook(c, "relet.yml", "-l", host.name, "-e", "flannel_relet_subnet=10.4.77.0/24", network=NEW)
    assert moved.rc == 0, moved.tail()
    assert gateway_of(c, host.name) == "10.4.77.1/24"
    assert pings_all(c) == []


def test_shrinking_is_refused_then_relet_moves_the_host_left_outside(converged, tmp_path):
    c = converged
    host = c.hosts[2]
    held = leases(c, tmp_path)
    assert held[host.ip] == "10.4.77.0/24", held  # (left there by the test before)

    refused = run_playbook(c, "site.yml", network=OLD)
    assert refused.rc != 0
    assert "10.4.77.0/24 (%s)" % host.ip in refused.output and "flannel_network_relet: true" in refused.output
    assert leases(c, tmp_path / "refused") == held
    assert NEW in etcd_dump(c)[CONFIG_KEY]

    run = run_playbook(c, "site.yml", "-e", "flannel_network_relet=true", network=OLD)
    assert run.rc == 0, run.tail()
    after = leases(c, tmp_path / "after")
    assert after[host.ip] != "10.4.77.0/24" and after[host.ip].startswith("10.5.")
    assert {ip: s for ip, s in after.items() if ip != host.ip} == {ip: s for ip, s in held.items() if ip != host.ip}
    assert "Reach every other host's docker0 gateway from this host" in run.stdout
    for h in c.host_names:
        assert subnet_env(c, h)["FLANNEL_NETWORK"] == OLD
        assert all(OLD in r for r in overlay_rules(c, h))
    assert pings_all(c) == []
    again = run_playbook(c, "site.yml", network=OLD)
    assert again.rc == 0, again.tail()
    assert all(r["changed"] == 0 for r in again.recap.values()), again.changed_tasks()
