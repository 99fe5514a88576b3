# -*- coding: utf-8 -*-
# Copyright: overlay.flannel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.overlay.flannel.plugins.module_utils import hoststate, underlay
from ansible_collections.overlay.flannel.plugins.module_utils.hostfiles import parse_subnet_env


def _var(hostvars, name, key, default=None):
    try:
        value = hostvars[name][key]
    except (KeyError, TypeError):
        return default
    return default if value is None or value == "" else value


def underlay_targets(names, name, hostvars, count=underlay.RING):
    """The hosts `name` checks in site.yml's preflight (its ring neighbours in `names`), each with its underlay
    address: flannel_public_ip, else ansible_host, else its name."""
    return [dict(name=n, address=_var(hostvars, n, "flannel_public_ip") or _var(hostvars, n, "ansible_host") or n)
            for n in underlay.ring(names, name, count)]


def underlay_problems(result, name, backend, mtu, hostvars):
    """The messages of what the preflight of host `name` found (underlay.problems), its targets' own results
    read from their flannel_host_probe."""
    others = {}
    for check in (result or {}).get("checks", []):
        probe = _var(hostvars, check["name"], "flannel_host_probe", {})
        others[check["name"]] = probe.get("preflight") if isinstance(probe, dict) else None
    return underlay.problems(name, result, backend, int(mtu or 0), others)


class FilterModule(object):
    """The roles' decisions from what overlay.flannel.host_probe read (module_utils/hoststate.py)."""

    def filters(self):
        return {"files_due": hoststate.files_due, "forwarder_privileges": hoststate.forwarder_privileges,
                "iptables_plan": hoststate.iptables_plan,
                "subnet_env": parse_subnet_env, "forwarder_not_ready": hoststate.forwarder_not_ready,
                "underlay_targets": underlay_targets, "underlay_problems": underlay_problems}
