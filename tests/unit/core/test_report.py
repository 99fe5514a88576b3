"""The health report's pure logic (plugins/plugin_utils/report.py) and its filter (plugins/filter/report.py)."""

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.overlay.flannel.plugins.filter.report import FilterModule
from ansible_collections.overlay.flannel.plugins.plugin_utils import report as R

DAY = 86400


def lease(subnet, ip, ttl=DAY, reservation=False, expires="2026-11-27T10:00:00Z"):
    return dict(subnet=subnet, public_ip=ip, backend_type="udp", key="/coreos.com/network/subnets/" +
                subnet.replace("/", "-"), reservation=reservation, expires_at=None if reservation else expires,
                ttl_remaining=None if reservation else ttl)


def info(*leases, invalid=(), config=None, config_error=None):
    return dict(leases=list(leases), invalid=list(invalid), config=config or {"Network": "10.5.0.0/16"},
                config_error=config_error, revision=7)


def host(name, ip, subnet_gw, docker0=None, active="active", readyz=None):
    return dict(name=name, public_ip=ip, reachable=True,
                subnet_env=None if subnet_gw is None else
                "FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_SUBNET=%s\nFLANNEL_MTU=1472\nFLANNEL_IPMASQ=false\n" % subnet_gw,
                docker0=[subnet_gw if docker0 is None else docker0] if (docker0 or subnet_gw) else [],
                forwarder_active=active, readyz_status=readyz)


def healthy():
    leases = [lease("10.5.1.0/24", "192.0.2.11"), lease("10.5.2.0/24", "192.0.2.12")]
    hosts = [host("h1", "192.0.2.11", "10.5.1.1/24"), host("h2", "192.0.2.12", "10.5.2.1/24")]
    return info(*leases), hosts


def kinds(result):
    return [f["kind"] for f in result["findings"]]


def test_healthy_overlay_has_rows_and_no_findings():
    result = R.build_report(*healthy(), inventory=["h1", "h2"])
    assert result["findings"] == []
    assert [(r["host"], r["subnet"], r["public_ip"], r["backend"], r["forwarder"]) for r in result["rows"]] == [
        ("h1", "10.5.1.0/24", "192.0.2.11", "udp", "ready"), ("h2", "10.5.2.0/24", "192.0.2.12", "udp", "ready")]
    assert result["rows"][0]["expiry"] == "2026-11-27T10:00:00Z (1d00h)"
    assert result["rows"][0]["subnet_env"] == "10.5.1.1/24"
    assert result["rows"][0]["docker0"] == ["10.5.1.1/24"]
    lines = result["lines"]
    assert lines[0].split() == ["host", "subnet", "public", "IP", "backend", "expiry", "forwarder"]
    assert set(lines[1]) == {"-", " "}
    assert lines[2].split()[:4] == ["h1", "10.5.1.0/24", "192.0.2.11", "udp"]
    # columns line up
    assert lines[2].index("10.5.1.0/24") == lines[0].index("subnet")


def test_orphan_lease_and_host_without_lease():
    data, hosts = healthy()
    data["leases"].append(lease("10.5.9.0/24", "192.0.2.99"))
    hosts.append(host("h3", "192.0.2.13", None))
    result = R.build_report(data, hosts)
    assert kinds(result) == ["no_lease", "orphan"]
    assert "192.0.2.99" in result["findings"][1]["message"] and "orphan" in result["findings"][1]["message"]
    assert result["findings"][1]["subnet"] == "10.5.9.0/24"
    assert result["findings"][0]["host"] == "h3"
    orphan_row = result["rows"][-1]
    assert orphan_row["host"] is None and orphan_row["subnet"] == "10.5.9.0/24"
    assert result["lines"][-1].startswith("-  ")


def test_reservation_unused_and_used():
    data, hosts = healthy()
    data["leases"].append(lease("10.5.7.0/24", "192.0.2.77", reservation=True))
    result = R.build_report(data, hosts)
    assert kinds(result) == ["unused_reservation"]
    assert "reservation 10.5.7.0/24" in result["findings"][0]["message"]
    assert result["rows"][-1]["expiry"] == "reservation"
    # a host that holds a reservation is fine, and a reservation never expires
    data, hosts = healthy()
    data["leases"][0] = lease("10.5.1.0/24", "192.0.2.11", reservation=True)
    result = R.build_report(data, hosts, warn_hours=10 ** 9)
    assert [f for f in result["findings"] if f["host"] == "h1"] == []
    assert result["rows"][0]["expiry"] == "reservation"


def test_expiring_within_warn_hours_when_nothing_renews_it():
    data, hosts = healthy()
    data["leases"][1]["ttl_remaining"] = 3600 * 5
    # a ready forwarder renews its lease: with the default 24 h TTL every lease has less than 72 h left
    assert kinds(R.build_report(data, hosts)) == []
    assert kinds(R.build_report(data, hosts, warn_hours=100000)) == []
    hosts[1]["forwarder_active"] = "failed"
    assert kinds(R.build_report(data, hosts)) == ["forwarder_not_ready", "expiring"]
    assert kinds(R.build_report(data, hosts, warn_hours=5)) == ["forwarder_not_ready"]
    assert kinds(R.build_report(data, hosts, warn_hours=0)) == ["forwarder_not_ready"]
    message = R.build_report(data, hosts, warn_hours=100000)["findings"][1]["message"]
    assert message == ("lease 10.5.2.0/24 of h2 (192.0.2.12) expires in 5h00m at 2026-11-27T10:00:00Z, "
                       "within 100000 h, and no ready forwarder is seen renewing it")
    # an unreachable host's forwarder is not seen either
    hosts[1] = dict(name="h2", public_ip="192.0.2.12", reachable=False, error="x")
    assert kinds(R.build_report(data, hosts)) == ["not_reachable", "expiring"]
    # from expires_at and now when the TTL is not given
    data["leases"][1]["ttl_remaining"] = None
    now = 1700000000
    data["leases"][1]["expires_at"] = "2023-11-14T23:13:20Z"  # now + 1 h
    assert kinds(R.build_report(data, hosts, now=now)) == ["not_reachable", "expiring"]
    assert kinds(R.build_report(data, hosts, warn_hours=0.5, now=now)) == ["not_reachable"]
    # an orphan is an orphan, whatever it has left
    data, hosts = healthy()
    data["leases"].append(lease("10.5.9.0/24", "192.0.2.99", ttl=60))
    assert kinds(R.build_report(data, hosts)) == ["orphan"]


def test_subnet_env_and_docker0_disagree():
    data, hosts = healthy()
    hosts[0] = host("h1", "192.0.2.11", "10.5.3.1/24")
    hosts[1] = host("h2", "192.0.2.12", "10.5.2.1/24", docker0="172.17.0.1/16")
    result = R.build_report(data, hosts)
    assert kinds(result) == ["subnet_env_mismatch", "docker0_mismatch", "docker0_mismatch"]
    assert "FLANNEL_SUBNET=10.5.3.1/24" in result["findings"][0]["message"]
    assert [f["host"] for f in result["findings"]] == ["h1", "h1", "h2"]
    assert "docker0 has 172.17.0.1/16" in result["findings"][2]["message"]
    # no subnet.env, no docker0
    hosts = [dict(host("h1", "192.0.2.11", None), docker0=[]), healthy()[1][1]]
    result = R.build_report(data, hosts)
    assert kinds(result) == ["subnet_env_mismatch", "docker0_mismatch"]
    assert "no IPv4 address" in result["findings"][1]["message"]


def test_forwarder_not_ready_and_unreachable():
    data, hosts = healthy()
    hosts[0]["forwarder_active"] = "inactive"
    hosts[1]["readyz_status"] = 503
    result = R.build_report(data, hosts, warn_hours=1)
    assert kinds(result) == ["forwarder_not_ready", "forwarder_not_ready"]
    assert result["rows"][0]["forwarder"] == "not ready (inactive)"
    assert result["rows"][1]["forwarder"] == "not ready (/readyz 503)"
    hosts[1]["readyz_status"] = -1
    assert R.build_report(data, hosts)["rows"][1]["forwarder"] == "not ready (/readyz unreachable)"
    hosts[1]["readyz_status"] = 200
    hosts[0] = dict(name="h1", public_ip="192.0.2.11", reachable=False, error="ssh: connection refused")
    result = R.build_report(data, hosts, warn_hours=1)
    assert kinds(result) == ["not_reachable"]
    assert result["findings"][0]["message"] == "h1 is not reachable: ssh: connection refused"
    hosts[0]["error"] = "Task failed: Failed to connect to the host via ssh: banner\r\nConnection to h1 port 22 timed out"
    assert R.build_report(data, hosts, warn_hours=1)["findings"][0]["message"] == (
        "h1 is not reachable: Failed to connect to the host via ssh: banner; Connection to h1 port 22 timed out")
    assert result["rows"][0]["forwarder"] == "not reachable"
    assert result["rows"][0]["subnet"] == "10.5.1.0/24"


def test_unreachable_host_without_public_ip_and_a_host_the_play_lost():
    data, hosts = healthy()
    hosts[1] = dict(name="h2", public_ip="", reachable=False, error="timed out")
    result = R.build_report(data, hosts, inventory=["h1", "h2", "h3"])
    assert kinds(result) == ["not_reachable", "not_reachable", "orphan"]
    assert "whose public IP is unknown" in result["findings"][2]["message"]
    assert "h2, h3" in result["findings"][2]["message"]
    assert [r["host"] for r in result["rows"]] == ["h1", "h2", "h3", None]


def test_several_leases_of_one_host_and_invalid_keys_and_config():
    data, hosts = healthy()
    data["leases"].append(lease("10.5.8.0/24", "192.0.2.11"))
    data["invalid"] = [dict(key="/coreos.com/network/subnets/garbage", error="bad key")]
    result = R.build_report(data, hosts)
    assert kinds(result) == ["several_leases", "invalid_key"]
    assert "holds 2 leases: 10.5.1.0/24, 10.5.8.0/24" in result["findings"][0]["message"]
    assert [r["host"] for r in result["rows"]] == ["h1", "h1", "h2"]
    data, hosts = healthy()
    data["config"], data["config_error"] = None, "config is not valid JSON"
    assert kinds(R.build_report(data, hosts)) == ["config"]
    data["config_error"] = None
    assert R.build_report(data, hosts)["findings"][0]["message"] == "no network config in etcd"


def test_rows_sorted_by_subnet_numerically():
    data = info(lease("10.5.10.0/24", "192.0.2.1"), lease("10.5.9.0/24", "192.0.2.2"))
    assert [r["subnet"] for r in R.build_report(data, [])["rows"]] == ["10.5.9.0/24", "10.5.10.0/24"]


@pytest.mark.parametrize("value", [-1, "x", "", None, True, float("nan"), float("inf"), "-3"])
def test_bad_warn_hours(value):
    with pytest.raises(R.ReportError, match="non-negative number"):
        R.build_report(*healthy(), warn_hours=value)


@pytest.mark.parametrize("value, hours", [(0, 0.0), ("72", 72.0), (1.5, 1.5), ("0.25", 0.25)])
def test_good_warn_hours(value, hours):
    assert R.warn_hours_value(value) == hours


def test_filter_plugin():
    report = FilterModule().filters()["report"]
    data, hosts = healthy()
    assert report(data, hosts, inventory=["h1", "h2"])["findings"] == []
    with pytest.raises(AnsibleFilterError, match="flannel_report_warn_hours"):
        report(data, hosts, warn_hours="soon")


def test_durations():
    assert [R._duration(s) for s in (0, 59, 60, 3599, 3600, 86399, 86400, 10 ** 7)] == [
        "0m", "0m", "1m", "59m", "1h00m", "23h59m", "1d00h", "115d17h"]


def test_summary():
    data, hosts = healthy()
    assert R.build_report(data, hosts)["summary"] == "no findings"
    data["leases"].append(lease("10.5.9.0/24", "192.0.2.99"))
    assert R.build_report(data, hosts)["summary"] == (
        "1 finding: (1) orphan lease 10.5.9.0/24: its public IP 192.0.2.99 is no inventory host")
    data["leases"].append(lease("10.5.8.0/24", "192.0.2.98", reservation=True))
    assert R.build_report(data, hosts)["summary"].startswith("2 findings: (1) orphan lease 10.5.9.0/24")


def dual(name, ip, n, env6=None, docker6=None):
    """A dual-stack host h<n> on 10.5.<n>.0/24 & fd00:5:0:<n>::/64: subnet.env with FLANNEL_IPV6_SUBNET (`env6`
    to write another), docker0 with the IPv6 gateway (`docker6` for other addresses)."""
    h = host(name, ip, "10.5.%d.1/24" % n)
    six = "fd00:5:0:%d::1/64" % n if env6 is None else env6
    h["subnet_env"] += ("FLANNEL_IPV6_NETWORK=fd00:5::/48\nFLANNEL_IPV6_SUBNET=%s\n" % six) if six else ""
    h["docker0_ipv6"] = ["fd00:5:0:%d::1/64" % n] if docker6 is None else docker6
    return h


def test_a_dual_stack_lease_shows_its_pair_and_both_halves_are_checked():
    pair = [dict(lease("10.5.%d.0/24" % n, "192.0.2.1%d" % n), ipv6_subnet="fd00:5:0:%d::/64" % n,
                 public_ipv6="2001:db8::1%d" % n) for n in (1, 2, 3)]
    hosts = [dual("h1", "192.0.2.11", 1), dual("h2", "192.0.2.12", 2, env6="fd00:5:0:0:9::1/64"),
             dual("h3", "192.0.2.13", 3, env6="fd00:5:0:3:0::1/64", docker6=["fd00:5:0:9::1/64"])]
    result = R.build_report(info(*pair), hosts, inventory=["h1", "h2", "h3"])
    assert [(r["host"], r["subnet"], r["ipv6_subnet"]) for r in result["rows"]] == [
        ("h1", "10.5.1.0/24", "fd00:5:0:1::/64"), ("h2", "10.5.2.0/24", "fd00:5:0:2::/64"),
        ("h3", "10.5.3.0/24", "fd00:5:0:3::/64")]
    lines = result["lines"]
    assert lines[0].split()[:4] == ["host", "subnet", "IPv6", "subnet"]
    assert lines[2].split()[:3] == ["h1", "10.5.1.0/24", "fd00:5:0:1::/64"]
    # h2's subnet.env is on another IPv6 half; h3's docker0 (subnet.env's uncompressed form is the same address)
    assert [(f["kind"], f["host"], f["message"]) for f in result["findings"]] == [
        ("subnet_env_mismatch", "h2", "h2: subnet.env has FLANNEL_IPV6_SUBNET=fd00:5:0:0:9::1/64, the lease's IPv6 "
                                      "half is fd00:5:0:2::/64 (fd00:5:0:2::1/64)"),
        ("docker0_mismatch", "h3", "h3: docker0 has fd00:5:0:9::1/64, the lease's IPv6 half is fd00:5:0:3::/64 "
                                   "(fd00:5:0:3::1/64)")]


def test_an_ipv4_lease_beside_an_ipv6_half_left_in_subnet_env():
    data, hosts = healthy()
    hosts[0] = dual("h1", "192.0.2.11", 1)
    hosts[1] = dual("h2", "192.0.2.12", 2, env6="")
    result = R.build_report(data, hosts, inventory=["h1", "h2"])
    assert [(f["kind"], f["message"]) for f in result["findings"]] == [
        ("subnet_env_mismatch", "h1: subnet.env has FLANNEL_IPV6_SUBNET=fd00:5:0:1::1/64, the lease 10.5.1.0/24 has "
                                "no IPv6 half")]
    # no lease with an IPv6 half: the table is the IPv4 one
    assert result["lines"][0].split() == ["host", "subnet", "public", "IP", "backend", "expiry", "forwarder"]
    assert result["rows"][0]["ipv6_subnet"] is None
