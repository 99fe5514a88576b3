#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: overlay.flannel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: subnet_info
short_description: Read the flannel network config and subnet leases from etcd
version_added: 0.1.0
description:
  - Returns the network config and the subnet leases, sorted by subnet, with the time each lease has left.
  - Keys under C(<etcd_prefix>/subnets/) that cannot be read (a bad key name or a value that is not a
    lease) are listed in RV(invalid) instead of failing the listing.
  - Costs two etcd round trips whatever the number of leases. One request reads the config and every
    lease at one revision. The remaining TTLs of all etcd leases are then asked for together on one
    connection (flanneld makes one call per lease, one after the other).
author:
  - overlay.flannel maintainers (@overlay-flannel)
extends_documentation_fragment:
  - overlay.flannel.etcd
attributes:
  check_mode:
    support: full
    description: Read-only; runs the same in check mode.
  diff_mode:
    support: none
    description: Nothing is changed, so there is no diff.
options:
  public_ip:
    description: Only list the leases of this underlay address.
    type: str
  subnet:
    description:
      - Only list the lease of this subnet (CIDR), or the leases inside it when it is larger.
      - An IPv6 CIDR selects by the IPv6 halves of dual-stack leases.
    type: str
"""

EXAMPLES = r"""
- name: List every lease
  overlay.flannel.subnet_info:
    etcd_endpoints: ["http://10.0.0.10:2379"]
  register: overlay

- name: Show which host holds which subnet
  ansible.builtin.debug:
    msg: "{{ overlay.leases | items2dict(key_name='subnet', value_name='public_ip') }}"

- name: The lease of one host
  overlay.flannel.subnet_info:
    public_ip: 192.0.2.21
  register: one
"""

RETURN = r"""
config:
  description: The network config with flannel's defaults filled in; null when absent or invalid.
  returned: always
  type: dict
  sample: {"Network": "10.5.0.0/16", "SubnetLen": 24, "SubnetMin": "10.5.1.0", "SubnetMax": "10.5.255.0",
           "Backend": {"Type": "udp", "Port": 8285}}
config_error:
  description: Why the stored config could not be used; null when it is fine.
  returned: always
  type: str
  sample: "config is not valid JSON: Expecting value: line 1 column 1 (char 0)"
leases:
  description: The leases, sorted by subnet.
  returned: always
  type: list
  elements: dict
  contains:
    subnet:
      description: The host subnet.
      type: str
      sample: 10.5.34.0/24
    public_ip:
      description: The host's underlay address.
      type: str
      sample: 192.0.2.21
    backend_type:
      description: C(BackendType) of the lease.
      type: str
      sample: udp
    key:
      description: The etcd key.
      type: str
      sample: /coreos.com/network/subnets/10.5.34.0-24
    expires_at:
      description: ISO 8601 UTC expiry; null for a reservation.
      type: str
      sample: "2026-11-26T10:00:00Z"
    ttl_remaining:
      description: Seconds left; null for a reservation.
      type: int
      sample: 86100
    reservation:
      description: True for a key with no etcd lease (never expires).
      type: bool
      sample: false
    ipv6_subnet:
      description: The IPv6 half of a dual-stack lease (only in the entries of dual-stack leases).
      type: str
      version_added: 0.2.0
      sample: fd00:5:0:22::/64
    public_ipv6:
      description: C(PublicIPv6) of a dual-stack lease, the host's underlay IPv6 address (only in the entries of dual-stack leases).
      type: str
      version_added: 0.2.0
      sample: 2001:db8::21
invalid:
  description: Keys under the subnets prefix that are not readable leases, with the reason.
  returned: always
  type: list
  elements: dict
  sample: [{"key": "/coreos.com/network/subnets/garbage", "error": "subnet key 'garbage' is not of the form A.B.C.D-LEN"}]
revision:
  description: The etcd revision the listing was read at.
  returned: always
  type: int
  sample: 42
"""

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.overlay.flannel.plugins.module_utils.ansible_etcd import (
    ETCD_REQUIRED_TOGETHER,
    connect,
    etcd_argument_spec,
)
from ansible_collections.overlay.flannel.plugins.module_utils.etcd_client import EtcdError
from ansible_collections.overlay.flannel.plugins.module_utils.leases import lease_entries
from ansible_collections.overlay.flannel.plugins.module_utils.subnets import (
    SubnetError,
    parse_cidr,
    parse_cidr6,
    parse_ipv4,
)


def selected(lease, only_ip, only_net):
    if only_ip is not None and lease.public_ip != only_ip:
        return False
    if only_net is None:
        return True
    if only_net.version == 6:
        return lease.subnet6 is not None and lease.subnet6.subnet_of(only_net)
    return lease.subnet.subnet_of(only_net)


def main():
    argument_spec = etcd_argument_spec()
    argument_spec.update(
        public_ip=dict(type="str"),
        subnet=dict(type="str"),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           required_together=ETCD_REQUIRED_TOGETHER)
    p = module.params
    result = dict(changed=False, config=None, config_error=None, leases=[], invalid=[])
    try:
        only_ip = str(parse_ipv4(p["public_ip"], "public_ip")) if p["public_ip"] else None
        only_net = None
        if p["subnet"]:
            only_net = parse_cidr6(p["subnet"], "subnet") if ":" in p["subnet"] else parse_cidr(p["subnet"], "subnet")
    except SubnetError as exc:
        module.fail_json(msg=str(exc), **result)

    store = connect(module)
    try:
        snap = store.snapshot()
        leases = [lease for lease in snap.leases if selected(lease, only_ip, only_net)]
        ttls = store.ttls(leases)
    except EtcdError as exc:
        module.fail_json(msg=str(exc), **result)

    result["leases"] = lease_entries(leases, ttls, time.time())
    result["invalid"] = [dict(key=entry.key, error=entry.error) for entry in snap.bad]
    result["config"] = snap.config.to_dict() if snap.config is not None else None
    result["config_error"] = snap.config_error
    result["revision"] = snap.revision
    module.exit_json(**result)


if __name__ == "__main__":
    main()
