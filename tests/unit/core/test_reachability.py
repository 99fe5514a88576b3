"""The reachability matrix of report.yml (plugins/plugin_utils/reachability.py): cells, findings, text, HTML."""

import html.parser

from ansible_collections.overlay.flannel.plugins.plugin_utils import reachability as r
from ansible_collections.overlay.flannel.plugins.plugin_utils.report import build_report

IPS = {"h1": "192.0.2.1", "h2": "192.0.2.2", "h3": "192.0.2.3"}
SUBNETS = {"h1": "10.5.1.0/24", "h2": "10.5.2.0/24", "h3": "10.5.3.0/24"}


def status(src, states, mtu=1472):
    """The status file of `src`, with {target host: state}."""
    return {"version": 1, "public_ip": IPS[src], "mtu": mtu, "peers": [
        {"subnet": SUBNETS[t], "public_ip": IPS[t], "gateway": SUBNETS[t].replace(".0/24", ".1"), "state": s,
         "rtt_ms": 0.42 if s == "up" else None} for t, s in sorted(states.items())]}


def host(name, peers, ready=True):
    return {"name": name, "public_ip": IPS[name], "ready": ready, "peers": peers}


def cells(m):
    return dict(((c["source"], c["target"]), c["state"]) for c in m["cells"])


def test_every_ordered_pair_gets_a_cell_from_the_rows_status_file():
    m = r.build_matrix([host("h1", status("h1", {"h2": "up", "h3": "mtu"})),
                        host("h2", status("h2", {"h1": "up", "h3": "down"})),
                        host("h3", status("h3", {"h1": "unknown"}))])
    assert m["hosts"] == ["h1", "h2", "h3"]
    assert cells(m) == {("h1", "h2"): "up", ("h1", "h3"): "mtu", ("h2", "h1"): "up", ("h2", "h3"): "down",
                        ("h3", "h1"): "unknown", ("h3", "h2"): "missing"}
    assert [c["rtt_ms"] for c in m["cells"] if c["state"] == "up"] == [0.42, 0.42]
    assert m["counts"] == {"up": 2, "down": 1, "mtu": 1, "unknown": 1, "missing": 1, "no_data": 0}
    kinds = sorted((f["kind"], f["host"], f["target"]) for f in m["findings"])
    assert kinds == [("peer_down", "h2", "h3"), ("peer_missing", "h3", "h2"), ("peer_mtu", "h1", "h3"),
                     ("peer_unknown", "h3", "h1")]
    mtu = [f for f in m["findings"] if f["kind"] == "peer_mtu"][0]["message"]
    assert mtu.startswith("h1 -> h3 (192.0.2.3): mtu (MTU black hole")
    assert "1472 bytes" in mtu and "flannel_mtu" in mtu
    down = [f for f in m["findings"] if f["kind"] == "peer_down"][0]["message"]
    assert "port blocked by a firewall" in down


def test_hosts_without_usable_status_have_no_data_and_one_finding_when_ready():
    m = r.build_matrix([host("h1", None), host("h2", {"error": "x is not JSON"}),
                        host("h3", status("h3", {"h1": "up", "h2": "up"}), ready=False)])
    assert set(cells(m).values()) == {"no_data"}
    assert [(f["kind"], f["host"]) for f in m["findings"]] == [("peer_status", "h1"), ("peer_status", "h2")]
    assert "x is not JSON" in m["findings"][1]["message"]
    # a stale file of a stopped forwarder says nothing; a host that was not looked at is no finding
    unlooked = r.build_matrix([{"name": "h1", "public_ip": IPS["h1"], "ready": True}])
    assert unlooked["findings"] == [] and unlooked["cells"] == []


def test_a_garbled_state_is_unknown_not_up():
    bad = status("h1", {"h2": "up"})
    bad["peers"][0]["state"] = "fine"
    bad["peers"].append("garbage")
    m = r.build_matrix([host("h1", bad), host("h2", status("h2", {"h1": "up"}))])
    assert cells(m)[("h1", "h2")] == "unknown"


def test_text_grid():
    m = r.build_matrix([host("h1", status("h1", {"h2": "up"})), host("h2", status("h2", {"h1": "mtu"}))])
    lines = r.matrix_lines(m)
    assert lines[0].startswith("reachability through the overlay")
    assert lines[1].split() == ["from", "\\", "to", "h1", "h2"]
    assert lines[2].split() == ["h1", "-", "up", "0.42ms"]
    assert lines[3].split() == ["h2", "mtu", "-"]
    assert r.matrix_lines(dict(hosts=[], cells=[])) == []


class Cells(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.cells, self.scripts, self.links = [], 0, 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "td" and "data-state" in a:
            self.cells.append((a["data-source"], a["data-target"], a["data-state"], a["class"]))
        self.scripts += tag == "script"
        self.links += tag in ("link", "img") or "src" in a


def test_the_report_with_its_matrix_and_the_html_page():
    info = {"config": {"Network": "10.5.0.0/16"}, "leases": [
        {"subnet": SUBNETS[n], "public_ip": IPS[n], "backend_type": "udp", "ttl_remaining": 80000,
         "expires_at": "2030-01-01T00:00:00Z", "key": "k" + n} for n in ("h1", "h2")]}
    hosts = [{"name": n, "public_ip": IPS[n], "reachable": True, "forwarder_active": "active", "readyz_status": None,
              "subnet_env": "FLANNEL_SUBNET=%s\n" % SUBNETS[n].replace(".0/24", ".1/24"),
              "docker0": [SUBNETS[n].replace(".0/24", ".1/24")]} for n in ("h1", "h2")]
    hosts[0]["peers"] = status("h1", {"h2": "down"})
    hosts[1]["peers"] = status("h2", {"h1": "up"})
    rep = build_report(info, hosts)
    assert [f["kind"] for f in rep["findings"]] == ["peer_down"]
    assert rep["matrix"]["counts"]["down"] == 1 and rep["matrix_lines"]
    assert build_report(info, hosts, matrix=False)["findings"] == []
    page = r.render_html(rep, generated_at="2026-12-07T13:00:00Z", network="10.5.0.0/16<script>")
    parser = Cells()
    parser.feed(page)
    assert sorted(parser.cells) == [("h1", "h2", "down", "cell state-down"), ("h2", "h1", "up", "cell state-up")]
    assert parser.scripts == 0 and parser.links == 0  # self-contained, and the network name escaped
    assert "10.5.0.0/16&lt;script&gt;" in page and "h1 -&gt; h2 (192.0.2.2): down" in page
