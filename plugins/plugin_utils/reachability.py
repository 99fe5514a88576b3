# -*- coding: utf-8 -*-
# Copyright: overlay.flannel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The reachability matrix of playbooks/report.yml: hosts x hosts from the forwarders' peer probes.

Pure logic, no I/O: each host's forwarder writes the state of its probes of
every peer (forwarder/flannel_forwarder/peer_probes.py, the status file
/run/flannel/peers.json, read by overlay.flannel.host_probe's part
``peers``); here they become one cell per ordered pair of hosts (from the
row's host to the column's), its findings, a text grid and a self-contained
HTML page.

A cell's state: ``up`` (full-size probes answered, with the round-trip time
of the small ones), ``down`` (nothing answered), ``mtu`` (small probes pass,
full-size ones do not: an MTU black hole between the two), ``unknown`` (not
probed long enough), ``missing`` (the row's forwarder does not know the
column's host as a peer: no lease of it, or another backend), ``no_data``
(the row's host was not read, its forwarder is not ready, or it has no
status file).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import html

UP, DOWN, MTU, UNKNOWN, MISSING, NO_DATA = "up", "down", "mtu", "unknown", "missing", "no_data"
STATES = (UP, DOWN, MTU, UNKNOWN, MISSING, NO_DATA)

# What each state means, for the legend, the text and the findings.
MEANING = {
    UP: "answers full-size probes",
    DOWN: "answers no probe",
    MTU: "MTU black hole: small probes pass, full-size ones do not",
    UNKNOWN: "not probed long enough yet",
    MISSING: "not a peer of the forwarder (no lease of it, or another backend)",
    NO_DATA: "no probe status from this host",
}
COLOURS = {UP: "#2e9d4a", DOWN: "#d0312d", MTU: "#f08a00", UNKNOWN: "#9e9e9e", MISSING: "#7b5ea7",
           NO_DATA: "#e4e4e4"}
FINDING_KINDS = ("peer_down", "peer_mtu", "peer_unknown", "peer_missing", "peer_status")


def build_matrix(hosts):
    """The matrix of `hosts`, a list of dicts in inventory order: name, public_ip, ready (the forwarder is
    seen ready: True/False/None), peers (the host's status file as host_probe reads it, None when absent; no
    such key: not read, so no finding about it).

    Returns dict(hosts=[names], cells=[dict(source, target, state, rtt_ms)] row by row (no cell for a host
    and itself), counts={state: n}, findings=[...]) where each pair that is not up is a finding, and each
    ready host without a usable status file is one."""
    names = [h["name"] for h in hosts]
    cells, findings = [], []
    for src in hosts:
        status = src.get("peers")
        usable = src.get("ready") is True and isinstance(status, dict) and isinstance(status.get("peers"), list)
        if src.get("ready") is True and not usable and "peers" in src:
            why = status.get("error") if isinstance(status, dict) and status.get("error") else "no status file"
            findings.append(dict(kind="peer_status", host=src["name"], subnet=None, public_ip=src.get("public_ip"),
                                 message="%s: no peer probe status (%s; are the probes off?)" % (src["name"], why)))
        by_ip = {}
        if usable:
            for entry in status["peers"]:
                if isinstance(entry, dict) and entry.get("public_ip"):
                    by_ip[entry["public_ip"]] = entry
        for dst in hosts:
            if dst is src:
                continue
            entry = by_ip.get(dst.get("public_ip")) if dst.get("public_ip") else None
            if not usable:
                state, rtt = NO_DATA, None
            elif entry is None:
                state, rtt = MISSING, None
            else:
                state = entry.get("state") if entry.get("state") in (UP, DOWN, MTU, UNKNOWN) else UNKNOWN
                rtt = entry.get("rtt_ms") if state == UP else None
            cells.append(dict(source=src["name"], target=dst["name"], state=state, rtt_ms=rtt))
            if state not in (UP, NO_DATA):
                findings.append(dict(
                    kind="peer_" + state, host=src["name"], subnet=entry.get("subnet") if entry else None,
                    public_ip=dst.get("public_ip"), target=dst["name"],
                    message="%s -> %s (%s): %s%s" % (src["name"], dst["name"], dst.get("public_ip") or "no public IP",
                                                     state, _hint(state, status))))
    counts = dict((s, 0) for s in STATES)
    for cell in cells:
        counts[cell["state"]] += 1
    return dict(hosts=names, cells=cells, counts=counts, findings=findings)


def _hint(state, status):
    if state == MTU:
        mtu = status.get("mtu") if isinstance(status, dict) else None
        return (" (%s; packets of %s bytes do not get through: lower flannel_mtu, or raise the MTU of the hop "
                "between them)" % (MEANING[MTU], mtu or "the overlay MTU"))
    if state == DOWN:
        return " (%s: is the backend's port blocked by a firewall, or the host down?)" % MEANING[DOWN]
    return " (%s)" % MEANING[state]


def _cell_text(cell):
    if cell["state"] == UP and cell.get("rtt_ms") is not None:
        return "up %.2fms" % cell["rtt_ms"]
    return {NO_DATA: "?"}.get(cell["state"], cell["state"])


def matrix_lines(matrix):
    """The matrix as a text grid: one line per source host, one column per target."""
    names = matrix["hosts"]
    if not names:
        return []
    grid = dict(((c["source"], c["target"]), _cell_text(c)) for c in matrix["cells"])
    header = ["from \\ to"] + names
    rows = [[src] + [("-" if src == dst else grid.get((src, dst), "?")) for dst in names] for src in names]
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    out = ["reachability through the overlay (peer probes; %s)"
           % ", ".join("%s: %s" % (s, MEANING[s]) for s in (MTU, MISSING)) + ", ?: no status"]
    for line in [header] + rows:
        out.append("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip())
    return out


def render_html(report, generated_at="", network=""):
    """A self-contained HTML page of the report: the matrix as a coloured grid (a cell per ordered pair,
    marked with its state in a class, a data-state attribute and its text), the legend, the findings and the
    hosts' table. No script, no external resource."""
    e = html.escape
    matrix = report.get("matrix") or dict(hosts=[], cells=[], counts={})
    names = matrix["hosts"]
    cells = dict(((c["source"], c["target"]), c) for c in matrix["cells"])
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           "<title>overlay.flannel report%s</title>" % (" - " + e(network) if network else ""),
           "<style>",
           "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}",
           "table{border-collapse:collapse}td,th{border:1px solid #fff;padding:.35em .6em;font-size:.9em}",
           "table.grid td{min-width:5.5em;text-align:center;color:#fff;font-weight:600}",
           "table.grid th{background:#f3f3f3}table.grid td.self{background:#fafafa;color:#bbb}",
           "table.rows td,table.rows th{border:1px solid #ddd;text-align:left}",
           ".legend span{display:inline-block;padding:.2em .6em;margin:.15em;color:#fff;border-radius:3px}"]
    for state in STATES:
        out.append("td.state-%s,.legend .state-%s{background:%s%s}" % (state, state, COLOURS[state],
                                                                       ";color:#555" if state == NO_DATA else ""))
    out += ["</style></head><body>",
            "<h1>overlay.flannel report</h1>",
            "<p>Network <b>%s</b>, generated %s: %s.</p>" % (
                e(network or "?"), e(generated_at or "?"),
                "%d finding%s" % (len(report.get("findings") or []), "" if len(report.get("findings") or []) == 1
                                  else "s") if report.get("findings") else "no findings"),
            "<h2>Reachability through the overlay</h2>",
            "<p>Each cell: the peer probes of the row's forwarder to the column's host (its docker0), small and at "
            "the full MTU with DF.</p>",
            '<p class="legend">' + "".join('<span class="state-%s">%s: %s</span>' % (s, s, e(MEANING[s]))
                                           for s in STATES) + "</p>",
            '<table class="grid" id="matrix"><tr><th>from \\ to</th>'
            + "".join("<th>%s</th>" % e(n) for n in names) + "</tr>"]
    for src in names:
        row = ["<tr><th>%s</th>" % e(src)]
        for dst in names:
            if src == dst:
                row.append('<td class="self">-</td>')
                continue
            c = cells.get((src, dst)) or dict(state=NO_DATA, rtt_ms=None)
            title = "%s -> %s: %s" % (src, dst, MEANING[c["state"]])
            row.append('<td class="cell state-%s" data-source="%s" data-target="%s" data-state="%s" title="%s">%s</td>'
                       % (c["state"], e(src), e(dst), c["state"], e(title), e(_cell_text(dict(c, source=src)))))
        out.append("".join(row) + "</tr>")
    out.append("</table>")
    findings = report.get("findings") or []
    out.append("<h2>Findings</h2>")
    if findings:
        out.append('<ol id="findings">' + "".join('<li class="%s">%s</li>' % (e(f.get("kind", "")), e(f["message"]))
                                                  for f in findings) + "</ol>")
    else:
        out.append('<p id="findings">no findings</p>')
    out.append('<h2>Hosts and leases</h2><table class="rows"><tr>'
               + "".join("<th>%s</th>" % e(label) for label in ("host", "subnet", "public IP", "backend", "expiry",
                                                                "forwarder")) + "</tr>")
    for r in report.get("rows") or []:
        out.append("<tr>" + "".join("<td>%s</td>" % e("-" if r.get(k) in (None, "") else str(r.get(k)))
                                    for k in ("host", "subnet", "public_ip", "backend", "expiry", "forwarder"))
                   + "</tr>")
    out.append("</table></body></html>")
    return "\n".join(out) + "\n"
