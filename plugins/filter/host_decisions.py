# -*- coding: utf-8 -*-
# Copyright: overlay.flannel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.overlay.flannel.plugins.module_utils import hoststate
from ansible_collections.overlay.flannel.plugins.module_utils.hostfiles import parse_subnet_env


class FilterModule(object):
    """The roles' decisions from what overlay.flannel.host_probe read (module_utils/hoststate.py)."""

    def filters(self):
        return {"files_due": hoststate.files_due, "iptables_plan": hoststate.iptables_plan,
                "subnet_env": parse_subnet_env, "forwarder_not_ready": hoststate.forwarder_not_ready}
