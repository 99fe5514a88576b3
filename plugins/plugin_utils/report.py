# -*- coding: utf-8 -*-
# Copyright: overlay.flannel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The overlay health report (playbooks/report.yml): rows and findings from what was read.

Pure logic, no I/O: given the result of overlay.flannel.subnet_info, the
inventory hosts with their public IPs and what was observed on each (subnet.env,
docker0's addresses, the forwarder's state), build the table rows, the findings
and the table's text lines. The filter overlay.flannel.report exposes it.

It lives in plugin_utils (controller-side code), not module_utils: the
forwarder's release bundles module_utils, and this code has no business on
the hosts.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import calendar
import ipaddress
import math
import time

from ansible_collections.overlay.flannel.plugins.module_utils.hostfiles import parse_subnet_env
from ansible_collections.overlay.flannel.plugins.module_utils.subnets import gateway
from ansible_collections.overlay.flannel.plugins.plugin_utils import reachability

DEFAULT_WARN_HOURS = 72

# The kinds of findings, in the order they are listed.
KINDS = ("not_reachable", "forwarder_not_ready", "no_lease", "several_leases", "subnet_env_mismatch",
         "docker0_mismatch", "expiring", "orphan", "unused_reservation", "invalid_key", "config") \
    + reachability.FINDING_KINDS

COLUMNS = (("host", "host"), ("subnet", "subnet"), ("public_ip", "public IP"), ("backend", "backend"),
           ("expiry", "expiry"), ("forwarder", "forwarder"))
# On a dual-stack overlay (a lease with an IPv6 half), after the subnet.
IPV6_COLUMN = ("ipv6_subnet", "IPv6 subnet")


class ReportError(ValueError):
    pass


def warn_hours_value(value):
    """flannel_report_warn_hours as a float >= 0; ReportError with a clear message otherwise."""
    if isinstance(value, bool):
        raise ReportError("flannel_report_warn_hours must be a non-negative number of hours (got %r)" % (value,))
    try:
        hours = float(value)
    except (TypeError, ValueError):
        raise ReportError("flannel_report_warn_hours must be a non-negative number of hours (got %r)" % (value,))
    if math.isnan(hours) or math.isinf(hours) or hours < 0:
        raise ReportError("flannel_report_warn_hours must be a non-negative number of hours (got %r)" % (value,))
    return hours


def _duration(seconds):
    seconds = int(max(seconds, 0))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return "%dd%02dh" % (days, hours)
    if hours:
        return "%dh%02dm" % (hours, minutes)
    return "%dm" % minutes


def _seconds_left(lease, now):
    if lease.get("reservation"):
        return None
    if lease.get("ttl_remaining") is not None:
        return int(lease["ttl_remaining"])
    expires = lease.get("expires_at")
    if expires and now is not None:
        try:
            return int(calendar.timegm(time.strptime(expires, "%Y-%m-%dT%H:%M:%SZ")) - now)
        except ValueError:
            return None
    return None


def _network(text):
    try:
        return ipaddress.IPv4Network(str(text))
    except ValueError:
        return None


def _subnet_order(lease):
    net = _network(lease.get("subnet"))
    return (0, int(net.network_address), net.prefixlen, "") if net is not None else (1, 0, 0, str(lease.get("subnet")))


def _forwarder_state(host):
    """(ready, text) of a host's forwarder from its observation."""
    active = host.get("forwarder_active")
    readyz = host.get("readyz_status")
    if active is None:
        return None, "unknown"
    if active != "active":
        return False, "not ready (%s)" % (active or "no state")
    if readyz is not None and int(readyz) != 200:
        return False, "not ready (/readyz %s)" % ("unreachable" if int(readyz) < 0 else readyz)
    return True, "ready"


def _one_line(text):
    """Ansible's connection error as one line ('Task failed: ...\\r\\nConnection to ... timed out')."""
    lines = [line.strip() for line in str(text or "").splitlines() if line.strip()]
    if lines and lines[0].startswith("Task failed: "):
        lines[0] = lines[0][len("Task failed: "):]
    return "; ".join(lines) or "unreachable"


def _finding(kind, message, host=None, subnet=None, public_ip=None):
    return dict(kind=kind, message=message, host=host, subnet=subnet, public_ip=public_ip)


def build_report(info, hosts, warn_hours=DEFAULT_WARN_HOURS, now=None, inventory=None, matrix=True):
    """The report: dict(rows, findings, lines, summary, matrix, matrix_lines).

    info: overlay.flannel.subnet_info's result (leases, invalid, config, config_error).
    hosts: one dict per inventory host: name, public_ip ('' or None when unknown), reachable (bool),
      error (why it was not reachable), subnet_env (the text of subnet.env, None when absent),
      docker0 (its IPv4 addresses with their prefix length, as host_probe's docker.bridge_addresses gives them:
      ["10.5.3.1/24"]; None when not read), docker0_ipv6 (its global IPv6 addresses, bridge_ipv6_addresses:
      ["fd00:5:0:3::1/64"]; looked at for a lease with an IPv6 half, when the key is there),
      forwarder_active (systemctl is-active's word, None when not read),
      readyz_status (HTTP status of /readyz, -1 when it did not answer, None when not checked),
      peers (the forwarder's peer probe status file as host_probe's part peers reads it; None when absent;
      a host without this key was not looked at: its row of the matrix is no_data, without a finding).
    matrix: build the reachability matrix (reachability.build_matrix) from the hosts' peers, with a finding
      for each pair of hosts that is not up; False: matrix is None, matrix_lines empty.
    inventory: every host name the report is about; a name without an entry in hosts is "not observed".
    warn_hours: a host's lease with less than this left is "expiring" when no ready forwarder is seen
      renewing it (a ready forwarder renews its lease a renew margin before the end, so with the default
      24 h TTL every healthy lease has less than the default 72 h left). now: epoch seconds, only used for
      a lease that has expires_at but no ttl_remaining.
    """
    hours = warn_hours_value(warn_hours)
    info = info or {}
    leases = sorted(info.get("leases") or [], key=_subnet_order)
    hosts = [dict(h) for h in hosts or []]
    seen = set(h.get("name") for h in hosts)
    for name in inventory or []:
        if name not in seen:
            hosts.append(dict(name=name, public_ip=None, reachable=False, error="not observed (the play lost it)"))
            seen.add(name)

    by_ip = {}
    for lease in leases:
        by_ip.setdefault(lease.get("public_ip"), []).append(lease)
    host_ips = set(h.get("public_ip") for h in hosts if h.get("public_ip"))
    unknown_ip_hosts = [h["name"] for h in hosts if not h.get("public_ip")]

    rows, findings, probed = [], [], []

    def lease_cells(lease):
        left = _seconds_left(lease, now)
        if lease.get("reservation"):
            expiry = "reservation"
        elif lease.get("expires_at"):
            expiry = "%s (%s)" % (lease["expires_at"], _duration(left)) if left is not None else lease["expires_at"]
        else:
            expiry = "unknown"
        return dict(subnet=lease.get("subnet"), ipv6_subnet=lease.get("ipv6_subnet"), public_ip=lease.get("public_ip"),
                    backend=lease.get("backend_type"), expires_at=lease.get("expires_at"),
                    ttl_remaining=left, reservation=bool(lease.get("reservation")), key=lease.get("key"),
                    expiry=expiry)

    def check_expiry(lease, host_name, why):
        left = _seconds_left(lease, now)
        if left is not None and left < hours * 3600:
            findings.append(_finding(
                "expiring", "lease %s of %s (%s) expires in %s at %s, within %s h, and %s"
                % (lease.get("subnet"), host_name, lease.get("public_ip"), _duration(left), lease.get("expires_at"),
                   ("%g" % hours), why), host=host_name, subnet=lease.get("subnet"), public_ip=lease.get("public_ip")))

    for host in hosts:
        name = host.get("name")
        ip = host.get("public_ip") or None
        mine = by_ip.get(ip, []) if ip else []
        reachable = bool(host.get("reachable"))
        if reachable:
            ready, fwd_text = _forwarder_state(host)
        else:
            ready, fwd_text = None, "not reachable"
            findings.append(_finding("not_reachable", "%s is not reachable: %s"
                                     % (name, _one_line(host.get("error"))), host=name, public_ip=ip))
        probed.append(dict(name=name, public_ip=ip, ready=ready, **dict((k, host[k]) for k in ("peers",) if k in host)))
        if ready is False:
            findings.append(_finding("forwarder_not_ready", "%s: forwarder %s" % (name, fwd_text), host=name,
                                     public_ip=ip))
        base = dict(host=name, public_ip=ip, reachable=reachable, forwarder=fwd_text, forwarder_ready=ready,
                    subnet_env=None, docker0=None, subnet_env_ipv6=None)
        if reachable:
            env = parse_subnet_env(host["subnet_env"]) if host.get("subnet_env") is not None else {}
            base["subnet_env"] = env.get("FLANNEL_SUBNET")
            base["subnet_env_ipv6"] = env.get("FLANNEL_IPV6_SUBNET")
            base["docker0"] = list(host.get("docker0") or [])
            if "docker0_ipv6" in host:
                base["docker0_ipv6"] = list(host.get("docker0_ipv6") or [])
        if not mine:
            row = dict(base, subnet=None, ipv6_subnet=None, backend=None, expires_at=None, ttl_remaining=None,
                       reservation=False, key=None, expiry="-")
            rows.append(row)
            if ip:
                findings.append(_finding("no_lease", "%s (%s) has no lease" % (name, ip), host=name, public_ip=ip))
            continue
        if len(mine) > 1:
            findings.append(_finding("several_leases", "%s (%s) holds %d leases: %s"
                                     % (name, ip, len(mine), ", ".join(lease.get("subnet") for lease in mine)),
                                     host=name, public_ip=ip))
        for lease in mine:
            rows.append(dict(base, **lease_cells(lease)))
            # A ready forwarder renews its lease (renew margin before the end): only a lease that nothing
            # is seen renewing can lapse.
            if ready is not True:
                check_expiry(lease, name, "no ready forwarder is seen renewing it")
        if reachable and len(mine) == 1:
            net = _network(mine[0].get("subnet"))
            want = gateway(net) if net is not None else None
            if base["subnet_env"] is None:
                findings.append(_finding("subnet_env_mismatch", "%s: subnet.env has no FLANNEL_SUBNET, the lease is %s"
                                         % (name, mine[0].get("subnet")), host=name, subnet=mine[0].get("subnet"),
                                         public_ip=ip))
            elif base["subnet_env"] != want:
                findings.append(_finding("subnet_env_mismatch", "%s: subnet.env has FLANNEL_SUBNET=%s, the lease is %s (%s)"
                                         % (name, base["subnet_env"], mine[0].get("subnet"), want), host=name,
                                         subnet=mine[0].get("subnet"), public_ip=ip))
            if want not in base["docker0"]:
                findings.append(_finding("docker0_mismatch", "%s: docker0 has %s, the lease is %s (%s)"
                                         % (name, ", ".join(base["docker0"]) or "no IPv4 address",
                                            mine[0].get("subnet"), want), host=name, subnet=mine[0].get("subnet"),
                                         public_ip=ip))
            findings.extend(_ipv6_findings(name, ip, mine[0], base))

    maybe = (" (or of %s, whose public IP is unknown)" % ", ".join(unknown_ip_hosts)) if unknown_ip_hosts else ""
    for lease in leases:
        if lease.get("public_ip") in host_ips:
            continue
        rows.append(dict(lease_cells(lease), host=None, reachable=None, forwarder="-", forwarder_ready=None,
                         subnet_env=None, docker0=None))
        if lease.get("reservation"):
            findings.append(_finding("unused_reservation", "reservation %s (%s) is used by no inventory host%s"
                                     % (lease.get("subnet"), lease.get("public_ip"), maybe),
                                     subnet=lease.get("subnet"), public_ip=lease.get("public_ip")))
        else:
            findings.append(_finding("orphan", "orphan lease %s: its public IP %s is no inventory host%s"
                                     % (lease.get("subnet"), lease.get("public_ip"), maybe),
                                     subnet=lease.get("subnet"), public_ip=lease.get("public_ip")))

    for bad in info.get("invalid") or []:
        findings.append(_finding("invalid_key", "unreadable key %s: %s" % (bad.get("key"), bad.get("error"))))
    if info.get("config_error"):
        findings.append(_finding("config", "network config: %s" % info["config_error"]))
    elif "config" in info and info.get("config") is None:
        findings.append(_finding("config", "no network config in etcd"))

    grid = None
    if matrix:
        grid = reachability.build_matrix(probed)
        findings.extend(grid.pop("findings"))
    order = dict((kind, i) for i, kind in enumerate(KINDS))
    findings.sort(key=lambda f: order.get(f["kind"], len(KINDS)))
    summary = ("%d finding%s: %s" % (len(findings), "" if len(findings) == 1 else "s",
                                     " ".join("(%d) %s" % (n, f["message"]) for n, f in enumerate(findings, 1)))
               if findings else "no findings")
    return dict(rows=rows, findings=findings, lines=table_lines(rows), summary=summary, matrix=grid,
                matrix_lines=reachability.matrix_lines(grid) if grid else [])


def _ipv6_findings(name, ip, lease, base):
    """The IPv6 half of a host's lease against subnet.env's FLANNEL_IPV6_SUBNET and docker0's IPv6 addresses
    (when they were read); a lease without one against a FLANNEL_IPV6_SUBNET left in subnet.env."""
    half = lease.get("ipv6_subnet")
    env6 = _ipv6_interface(base.get("subnet_env_ipv6"))
    if not half:
        if base.get("subnet_env_ipv6"):
            return [_finding("subnet_env_mismatch", "%s: subnet.env has FLANNEL_IPV6_SUBNET=%s, the lease %s has no "
                                                    "IPv6 half" % (name, base["subnet_env_ipv6"], lease.get("subnet")),
                             host=name, subnet=lease.get("subnet"), public_ip=ip)]
        return []
    try:
        want = gateway(ipaddress.ip_network(u"%s" % half))
    except ValueError:
        return []
    found = []
    if env6 != want:
        found.append(_finding("subnet_env_mismatch", "%s: subnet.env has %s, the lease's IPv6 half is %s (%s)"
                                                     % (name, ("FLANNEL_IPV6_SUBNET=%s" % base["subnet_env_ipv6"])
                                                        if base.get("subnet_env_ipv6") else "no FLANNEL_IPV6_SUBNET",
                                                        half, want),
                              host=name, subnet=lease.get("subnet"), public_ip=ip))
    if "docker0_ipv6" in base and want not in [_ipv6_interface(a) for a in base["docker0_ipv6"]]:
        found.append(_finding("docker0_mismatch", "%s: docker0 has %s, the lease's IPv6 half is %s (%s)"
                                                  % (name, ", ".join(base["docker0_ipv6"]) or "no global IPv6 address",
                                                     half, want),
                              host=name, subnet=lease.get("subnet"), public_ip=ip))
    return found


def _ipv6_interface(text):
    """'fd00:5:0:22:0::1/64' -> 'fd00:5:0:22::1/64' (compressed, as gateway() writes it); None for anything else."""
    try:
        return str(ipaddress.IPv6Interface(u"%s" % text)) if text else None
    except ValueError:
        return None


def table_lines(rows):
    """The rows as a text table (a header, a rule, one line per row); the IPv6 subnet's column when a row has
    one."""
    columns = COLUMNS
    if any(row.get(IPV6_COLUMN[0]) for row in rows):
        columns = COLUMNS[:2] + (IPV6_COLUMN,) + COLUMNS[2:]
    cells = [[label for _key, label in columns]]
    for row in rows:
        cells.append(["-" if row.get(key) in (None, "") else str(row.get(key)) for key, _label in columns])
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    out = []
    for n, line in enumerate(cells):
        out.append("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip())
        if n == 0:
            out.append("  ".join("-" * width for width in widths))
    return out
