# -*- coding: utf-8 -*-
# Copyright: overlay.flannel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
name: report
short_description: The overlay's health report from its leases and what was observed on each host
version_added: 0.2.0
author:
  - overlay.flannel maintainers (@overlay-flannel)
description:
  - Builds the table and the findings of C(playbooks/report.yml) from the result of
    M(overlay.flannel.subnet_info) and one observation per inventory host. Pure logic, no I/O.
  - "Findings: C(not_reachable), C(forwarder_not_ready), C(no_lease), C(several_leases),
    C(subnet_env_mismatch) (subnet.env's C(FLANNEL_SUBNET) is not the lease's gateway),
    C(peer_down), C(peer_mtu), C(peer_unknown), C(peer_missing) (a pair of hosts whose peer probe is not up),
    C(peer_status) (a ready forwarder without a peer probe status file),
    C(docker0_mismatch), C(expiring) (less than O(warn_hours) left on a host's lease that no ready forwarder
    is seen renewing), C(orphan) (a lease whose public IP is
    no inventory host), C(unused_reservation), C(invalid_key) and C(config)."
options:
  _input:
    description: The registered result of M(overlay.flannel.subnet_info).
    type: dict
    required: true
  hosts:
    description:
      - One dict per inventory host with C(name), C(public_ip) (empty when unknown), C(reachable), C(error),
        C(subnet_env) (the text of subnet.env, null when absent), C(docker0) (the bridge's IPv4 addresses with
        their prefix length, as M(overlay.flannel.host_probe) returns them in C(docker.bridge_addresses)),
        C(forwarder_active) (the unit's active state, the word of C(systemctl is-active)) and
        C(readyz_status) (the HTTP status of C(/readyz), -1 when it did not answer, null when not checked),
        C(peers) (the forwarder's peer probe status, as M(overlay.flannel.host_probe) returns it in C(peers); a
        host without this key is left out of the matrix's findings).
    type: list
    elements: dict
    required: true
  inventory:
    description: Every host name the report covers; one without an entry in O(hosts) is reported as not reachable.
    type: list
    elements: str
  warn_hours:
    description:
      - A host's lease with fewer hours than this left is a finding when the host's forwarder is not seen ready.
      - A ready forwarder renews its lease before it ends, so its lease is never "expiring".
    type: float
    default: 72
  now:
    description: Epoch seconds; only used for a lease that has C(expires_at) but no C(ttl_remaining).
    type: float
  matrix:
    description:
      - Build the reachability matrix (hosts x hosts) from the hosts' C(peers), each pair that is not up a finding.
    type: bool
    default: true
"""

EXAMPLES = r"""
- name: Build the report
  ansible.builtin.set_fact:
    overlay_report: >-
      {{ overlay_leases | overlay.flannel.report(hosts=observed, inventory=groups['flannel'], warn_hours=72) }}

- name: Show the table
  ansible.builtin.debug:
    msg: "{{ overlay_report.lines }}"
"""

RETURN = r"""
_value:
  description: The report.
  type: dict
  contains:
    rows:
      description:
        - One per host and lease (a host with no lease has one row without subnet), then one per lease
          of no inventory host. Keys C(host), C(subnet), C(public_ip), C(backend), C(expires_at),
          C(ttl_remaining), C(reservation), C(key), C(expiry), C(forwarder), C(forwarder_ready), C(reachable),
          C(subnet_env), C(docker0).
      type: list
      elements: dict
    findings:
      description: Each with C(kind), C(message), C(host), C(subnet) and C(public_ip); empty when all is well.
      type: list
      elements: dict
    lines:
      description: The rows as a text table.
      type: list
      elements: str
    summary:
      description: C(no findings), or the number of findings and each message, numbered.
      type: str
    matrix:
      description:
        - The reachability matrix (null when O(matrix) is false) with C(hosts) (the names, in inventory order),
          C(cells) (one per ordered pair of hosts, C(source), C(target), C(state) - one of C(up), C(down),
          C(mtu), C(unknown), C(missing), C(no_data) - and C(rtt_ms)) and C(counts) (cells per state).
      type: dict
    matrix_lines:
      description: The matrix as a text grid.
      type: list
      elements: str
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.overlay.flannel.plugins.plugin_utils.reachability import render_html
from ansible_collections.overlay.flannel.plugins.plugin_utils.report import ReportError, build_report


def report(info, hosts, inventory=None, warn_hours=72, now=None, matrix=True):
    try:
        return build_report(info, hosts, warn_hours=warn_hours, now=now, inventory=inventory, matrix=matrix)
    except ReportError as exc:
        raise AnsibleFilterError(str(exc))


def report_html(report_value, generated_at="", network=""):
    return render_html(report_value, generated_at=generated_at, network=network or "")


class FilterModule(object):
    def filters(self):
        return {"report": report, "report_html": report_html}
