"""playbooks/report.yml on the test cluster: the healthy overlay, planted problems, an unreachable host; the
forwarders' peer probes and site.yml's underlay preflight against an MTU black hole and a blocked port, the
reachability matrix and its HTML page in a real headless browser."""

import calendar
import contextlib
import html.parser
import json
import re
import shutil
import subprocess
import time

import pytest

from cluster.flannel_helpers import (
    HEALTHZ,
    HEALTHZ_PORT,
    PREFIX,
    all_up,
    leases_in_etcd,
    run_playbook,
    subnet_env,
    wait_for,
    wait_states,
)

pytestmark = pytest.mark.cluster

# The planted problems are about leases and hosts; the peer probes of a host just stopped change state some
# seconds later, so those reports leave the matrix out (test_peer_probes_and_the_preflight covers it).
NO_MATRIX = ("-e", "flannel_report_matrix=false")
ORPHAN = ("10.5.250.0/24", "192.0.2.250")
RESERVATION = ("10.5.251.0/24", "192.0.2.251")


def key(subnet):
    return "%s/subnets/%s" % (PREFIX, subnet.replace("/", "-"))


def value(ip):
    return json.dumps({"PublicIP": ip, "PublicIPv6": None, "BackendType": "udp", "BackendData": None},
                      separators=(",", ":"))


def report(c, tmp_path, *args, name="report.json"):
    path = tmp_path / name
    run = run_playbook(c, "report.yml", "-e", "flannel_report_json=%s" % path, *args)
    data = json.loads(path.read_text()) if path.exists() else None
    return run, data


def unchanged(run):
    return all(r["changed"] == 0 for r in run.recap.values()) and run.recap


def found(data):
    return sorted((f["kind"], f["host"] or f["subnet"]) for f in data["findings"])


def epoch(text):
    return calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ"))


def test_healthy_overlay_reports_every_host_and_no_findings(converged, tmp_path):
    c = converged
    wait_states(c, all_up, "every forwarder's probes of every peer up")
    run, data = report(c, tmp_path, "-e", "flannel_report_strict=true")
    assert run.rc == 0, run.tail()
    assert unchanged(run), (run.recap, run.changed_tasks())
    assert data["findings"] == [] and data["ok"] is True, data["findings"]
    assert '"no findings"' in run.stdout
    n = len(c.hosts)
    assert data["matrix"]["hosts"] == [h.name for h in c.hosts]
    assert data["matrix"]["counts"]["up"] == n * (n - 1) == len(data["matrix"]["cells"])
    assert all(cell["rtt_ms"] > 0 for cell in data["matrix"]["cells"])
    info = leases_in_etcd(c)
    assert data["network"] == info["config"]["Network"]
    rows = {row["host"]: row for row in data["rows"]}
    assert sorted(rows) == sorted(h.name for h in c.hosts)
    leases = {lease["public_ip"]: lease for lease in info["leases"]}
    assert len(leases) == len(c.hosts) == len(data["rows"])
    for h in c.hosts:
        row, lease = rows[h.name], leases[h.ip]
        assert row["public_ip"] == h.ip
        assert (row["subnet"], row["backend"], row["key"], row["reservation"]) == (
            lease["subnet"], lease["backend_type"], lease["key"], lease["reservation"])
        assert abs(epoch(row["expires_at"]) - epoch(lease["expires_at"])) < 120
        assert row["forwarder"] == "ready" and row["forwarder_ready"] is True
        assert row["subnet_env"] == subnet_env(c, h.name)["FLANNEL_SUBNET"]
        assert row["subnet_env"] in row["docker0"]
        # the table line of the host
        assert re.search(r"^\s*\"%s\s+%s\s+%s\s+udp\s+20\d\d-" % (h.name, re.escape(lease["subnet"]), re.escape(h.ip)),
                         run.stdout, re.M), run.stdout[-3000:]

    # --check and --diff: the same report, still nothing changed, the JSON file still written
    check, data2 = report(c, tmp_path, "--check", "--diff", name="check.json")
    assert check.rc == 0, check.tail()
    assert unchanged(check), (check.recap, check.changed_tasks())
    assert data2["findings"] == [] and [r["subnet"] for r in data2["rows"]] == [r["subnet"] for r in data["rows"]]

    # every lease has less than 100000 h left, but each is renewed by a ready forwarder
    far, data3 = report(c, tmp_path, "-e", "flannel_report_warn_hours=100000", name="far.json")
    assert far.rc == 0 and data3["findings"] == [], far.tail()
    assert data3["warn_hours"] == 100000


def test_bad_warn_hours_is_refused_before_anything(converged):
    run = run_playbook(converged, "report.yml", "-e", "flannel_report_warn_hours=-3")
    assert run.rc != 0
    assert "flannel_report_warn_hours must be a non-negative number of hours (got -3)" in run.output
    assert "Read the leases from etcd" not in run.stdout


def test_planted_problems_are_found(converged, tmp_path):
    c = converged
    taken = [lease["subnet"] for lease in leases_in_etcd(c)["leases"]]
    assert ORPHAN[0] not in taken and RESERVATION[0] not in taken
    stopped, moved, edited = c.hosts[1].name, c.hosts[2].name, c.hosts[0].name
    env_before = c.run(edited, "cat /run/flannel/subnet.env", check=True).stdout
    gateway_moved = subnet_env(c, moved)["FLANNEL_SUBNET"]
    grant = c.etcdctl("lease", "grant", "3600")
    lease_id = re.search(r"lease ([0-9a-f]+) granted", grant).group(1)
    try:
        c.etcdctl("put", "--lease=%s" % lease_id, key(ORPHAN[0]), value(ORPHAN[1]))
        c.etcdctl("put", key(RESERVATION[0]), value(RESERVATION[1]))
        c.run(stopped, "systemctl stop flannel-forwarder.service", check=True)
        c.run(moved, "ip addr flush dev docker0 && ip addr add 10.5.252.1/24 brd + dev docker0", check=True)
        c.run(edited, "sed -i 's|^FLANNEL_SUBNET=.*|FLANNEL_SUBNET=10.5.253.1/24|' /run/flannel/subnet.env",
              check=True)

        run, data = report(c, tmp_path, *NO_MATRIX)
        print(run.stdout)
        assert run.rc == 0, run.tail()
        assert unchanged(run), (run.recap, run.changed_tasks())
        assert found(data) == sorted([
            ("orphan", ORPHAN[0]), ("unused_reservation", RESERVATION[0]),
            ("forwarder_not_ready", stopped),
            # its lease (24 h TTL) has less than 72 h left and no ready forwarder renews it
            ("expiring", stopped),
            ("docker0_mismatch", moved), ("subnet_env_mismatch", edited)]), data["findings"]
        messages = "\n".join(f["message"] for f in data["findings"])
        assert "orphan lease %s: its public IP %s is no inventory host" % ORPHAN in messages
        assert "reservation %s (%s) is used by no inventory host" % RESERVATION in messages
        assert "%s: forwarder not ready (inactive)" % stopped in messages
        assert "%s: docker0 has 10.5.252.1/24" % moved in messages
        assert "%s: subnet.env has FLANNEL_SUBNET=10.5.253.1/24" % edited in messages
        rows = {(row["host"], row["subnet"]): row for row in data["rows"]}
        assert rows[(None, ORPHAN[0])]["public_ip"] == ORPHAN[1]
        assert rows[(None, RESERVATION[0])]["expiry"] == "reservation"
        assert rows[(None, RESERVATION[0])]["expires_at"] is None
        assert [row["forwarder"] for row in data["rows"] if row["host"] == stopped] == ["not ready (inactive)"]
        assert len([row for row in data["rows"] if row["host"]]) == len(c.hosts)
        for f in data["findings"]:
            assert f["message"] in run.stdout

        # strict, in --check --diff, with a warn window shorter than the leases' 24 h: the same findings but
        # "expiring"; the play fails at the end naming them, and nothing changed
        strict, data2 = report(c, tmp_path, "--check", "--diff", "-e", "flannel_report_strict=true",
                               "-e", "flannel_report_warn_hours=1", *NO_MATRIX, name="strict.json")
        assert strict.rc != 0, strict.tail()
        assert unchanged(strict), (strict.recap, strict.changed_tasks())
        assert "expiring" not in [f["kind"] for f in data2["findings"]]
        assert len(data2["findings"]) == 5
        fatal = [line for line in strict.stdout.splitlines() if line.startswith("fatal:") and "FAILED!" in line]
        assert len(fatal) == 1 and "5 findings: (1) " in fatal[0], strict.tail()
        for f in data2["findings"]:
            assert f["message"] in fatal[0]
    finally:
        c.run(stopped, "systemctl start flannel-forwarder.service", check=False)
        c.run(moved, "ip addr flush dev docker0 && ip addr add %s brd + dev docker0" % gateway_moved, check=False)
        c.run(edited, "cat > /run/flannel/subnet.env", input=env_before, check=False)
        c.etcdctl("del", key(RESERVATION[0]))
        c.etcdctl("lease", "revoke", lease_id)
    wait_for(lambda: c.run(stopped, "systemctl is-active flannel-forwarder.service", check=False).stdout.strip()
             == "active", timeout=90, what="the forwarder on %s" % stopped)
    wait_states(c, all_up, "every peer up again")
    run, data = report(c, tmp_path, "-e", "flannel_report_strict=true", name="after.json")
    assert run.rc == 0 and data["findings"] == [], run.tail()


def test_unreachable_host_is_a_finding_and_the_others_are_reported(converged, tmp_path):
    c = converged
    down = c.hosts[-1]
    c.stop(down.name)
    try:
        run, data = report(c, tmp_path, *NO_MATRIX)
        assert run.rc == 0, run.tail()
        assert unchanged(run), (run.recap, run.changed_tasks())
        kinds = {(f["kind"], f["host"]) for f in data["findings"]}
        assert ("not_reachable", down.name) in kinds
        # its public IP (ansible_default_ipv4) is unknown without facts: its lease belongs to no known host
        assert [f["kind"] for f in data["findings"]] == ["not_reachable", "orphan"], data["findings"]
        assert "whose public IP is unknown" in data["findings"][1]["message"]
        rows = {row["host"]: row for row in data["rows"] if row["host"]}
        assert rows[down.name]["forwarder"] == "not reachable"
        for h in c.hosts[:-1]:
            assert rows[h.name]["forwarder"] == "ready" and rows[h.name]["public_ip"] == h.ip
            assert rows[h.name]["subnet"]

        strict, _data = report(c, tmp_path, "-e", "flannel_report_strict=true", *NO_MATRIX, name="strict.json")
        assert strict.rc != 0
        fatal = [line for line in strict.stdout.splitlines() if line.startswith("fatal:") and "FAILED!" in line]
        assert len(fatal) == 1 and "%s is not reachable" % down.name in fatal[0], strict.tail()
        assert "TASK [Show the hosts and their leases]" in strict.stdout
    finally:
        c.start(down.name)
    c.wait_ready(down.name)


def test_site_converges_and_the_report_is_clean_again(converged, tmp_path):
    c = converged
    site = run_playbook(c, "site.yml")
    assert site.rc == 0, site.tail()
    wait_states(c, all_up, "every forwarder's probes of every peer up")
    run, data = report(c, tmp_path, "-e", "flannel_report_strict=true")
    assert run.rc == 0 and data["findings"] == [], run.tail()
    print(run.stdout)
    print(json.dumps(data, indent=2))


# -- the peer probes, the underlay preflight and the matrix against faults that spare ssh and etcd (TCP) ----------

def switch_nft(c, text):
    """nft in the test switch's namespace (the image's nft, as the harness's guard)."""
    subprocess.run(["nsenter", "--net=/run/netns/" + c.state["underlay"]["netns"], "chroot",
                    c.state["image"]["rootfs"], "nft", "-f", "-"], input=text, text=True, check=True)


@contextlib.contextmanager
def mtu_black_hole(c, host, limit=1400):
    """The switch port of `host` drops its non-TCP frames whose IP packet is longer than `limit` bytes, both ways:
    large UDP and ICMP vanish silently, small ones and ssh and etcd pass."""
    port = c.state["hosts"][host]["veth_underlay"]
    table = "test_mtu_black_hole"
    switch_nft(c, "table bridge %s {\n chain forward {\n  type filter hook forward priority -10; policy accept;\n"
                  "  iifname \"%s\" meta l4proto != tcp meta length > %d drop\n"
                  "  oifname \"%s\" meta l4proto != tcp meta length > %d drop\n }\n}\n"
               % (table, port, limit, port, limit))
    try:
        yield
    finally:
        switch_nft(c, "delete table bridge %s\n" % table)


def metrics(c, host):
    return c.run(host, "python3 -c \"import urllib.request as u; "
                       "print(u.urlopen('http://127.0.0.1:%d/metrics', timeout=5).read().decode())\"" % HEALTHZ_PORT,
                 check=True).stdout


class Grid(html.parser.HTMLParser):
    """The cells of the report page's matrix as the browser's DOM has them."""

    def __init__(self):
        super().__init__()
        self.cells = {}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "td" and "data-state" in a:
            self.cells[(a["data-source"], a["data-target"])] = (a["data-state"], a["class"])


def browser(page, tmp_path):
    """The page in headless Chromium (Debian's package): its DOM after loading, and a screenshot."""
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("chromium is not installed (make cluster-deps)")
    common = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--user-data-dir=%s" % (tmp_path / "chromium")]
    dom = subprocess.run(common + ["--dump-dom", "file://%s" % page], capture_output=True, text=True, timeout=120,
                         check=True).stdout
    shot = tmp_path / "report.png"
    subprocess.run(common + ["--hide-scrollbars", "--window-size=1000,900", "--screenshot=%s" % shot,
                             "file://%s" % page], capture_output=True, text=True, timeout=120, check=True)
    return dom, shot


def test_peer_probes_and_the_preflight_find_an_mtu_black_hole_and_a_blocked_port(converged, tmp_path):
    c = converged
    fast = ("-e", "flannel_forwarder_probe_interval=1") + tuple(HEALTHZ)
    site = run_playbook(c, "site.yml", *fast)
    assert site.rc == 0, site.tail()
    bad = c.hosts[-1]
    others = [h for h in c.hosts if h.name != bad.name]
    wait_states(c, all_up, "every peer up")

    def through_bad(kind):
        return lambda a, b: kind if bad.name in (a, b) else "up"

    with mtu_black_hole(c, bad.name):
        # The preflight names every pair through the host, with the size that passes, before anything changes;
        # in the same run, asked to move the backend to a port that the host's firewall drops (nothing holds it
        # yet, so every host listens on it in the run), the pairs towards the host with that port.
        blocked = "INPUT -p udp --dport 8286 -j DROP"
        c.run(bad.name, "iptables -w -I %s" % blocked, check=True)
        try:
            pre = run_playbook(c, "site.yml", *fast, "-e", "flannel_backend_port=8286")
        finally:
            c.run(bad.name, "iptables -w -D %s" % blocked, check=False)
        assert pre.rc != 0 and all(r["changed"] == 0 for r in pre.recap.values()), pre.tail()
        for a in c.hosts:
            for b in c.hosts:
                if a.name == b.name:
                    continue
                line = "%s -> %s (%s): DF packets of 1500 bytes (the udp backend's full size" % (a.name, b.name, b.ip)
                assert (line in pre.stdout) == (bad.name in (a.name, b.name)), (line, pre.tail())
                port = "%s -> %s (%s): UDP datagrams to the udp backend's port 8286 get no answer" % (a.name, b.name,
                                                                                                      b.ip)
                assert (port in pre.stdout) == (b.name == bad.name), (port, pre.tail())
        assert "do not get through the underlay; 1400 bytes do. Set flannel_mtu to 1372 or less" in pre.stdout
        assert "open UDP port 8286 between the hosts in the firewall" in pre.stdout
        assert "Store the network config" not in pre.stdout

        # The running forwarders see it too: an MTU black hole for exactly the pairs through the host.
        wait_states(c, through_bad("mtu"), "mtu for the pairs through %s" % bad.name)
        text = metrics(c, others[0].name)
        assert re.search(r'flannel_forwarder_peer_state\{peer="[^"]+",public_ip="%s",state="mtu"\} 1' % bad.ip, text)
        assert re.search(r'flannel_forwarder_peer_state\{peer="[^"]+",public_ip="%s",state="up"\} 1'
                         % others[1].ip, text)
        assert 'flannel_forwarder_peers_by_state{state="mtu"} 1' in text
        # small pings still pass, through the overlay
        gw = subnet_env(c, bad.name)["FLANNEL_SUBNET"].split("/")[0]
        assert c.run(others[0].name, "ping -c1 -W2 -s 56 %s" % gw, check=False).returncode == 0
        assert c.run(others[0].name, "ping -c1 -W2 -M do -s 1444 %s" % gw, check=False).returncode != 0

        # report.yml: the matrix as text, in the JSON, as a page; strict fails on the pairs not up
        page = tmp_path / "report.html"
        run, data = report(c, tmp_path, "-e", "flannel_report_strict=true", "-e", "flannel_report_html=%s" % page)
        assert run.rc != 0 and "4 findings" in run.stdout, run.tail()
        cells = dict(((cell["source"], cell["target"]), cell["state"]) for cell in data["matrix"]["cells"])
        assert cells == dict(((a.name, b.name), through_bad("mtu")(a.name, b.name))
                             for a in c.hosts for b in c.hosts if a.name != b.name)
        assert sorted(f["kind"] for f in data["findings"]) == ["peer_mtu"] * 4
        assert re.search(r"^\s*\"%s\s+-\s+up [0-9.]+ms\s+mtu\"" % others[0].name, run.stdout, re.M), run.stdout
        dom, shot = browser(page, tmp_path)
        grid = Grid()
        grid.feed(dom)
        assert len(grid.cells) == len(c.hosts) * (len(c.hosts) - 1)
        assert grid.cells[(others[0].name, bad.name)] == ("mtu", "cell state-mtu")
        assert grid.cells[(others[0].name, others[1].name)] == ("up", "cell state-up")
        assert shot.stat().st_size > 10000

    wait_states(c, all_up, "recovery from the MTU black hole")

    # A blocked backend port on one host: its pairs are down, then up again when the rule goes.
    rule = "INPUT -p udp --dport 8285 -j DROP"
    c.run(bad.name, "iptables -w -I %s" % rule, check=True)
    try:
        wait_states(c, through_bad("down"), "down for the pairs of %s" % bad.name)
        assert 'flannel_forwarder_peers_by_state{state="down"} 1' in metrics(c, others[0].name)
        page = tmp_path / "down.html"
        run, data = report(c, tmp_path, "-e", "flannel_report_html=%s" % page, name="down.json")
        assert run.rc == 0 and sorted(f["kind"] for f in data["findings"]) == ["peer_down"] * 4, run.tail()
        grid = Grid()
        grid.feed(browser(page, tmp_path)[0])
        assert grid.cells[(bad.name, others[0].name)] == ("down", "cell state-down")
    finally:
        c.run(bad.name, "iptables -w -D %s" % rule, check=False)
    wait_states(c, all_up, "recovery from the blocked port")
