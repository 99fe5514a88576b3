#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: overlay.flannel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: network
short_description: Manage the flannel network config in etcd
version_added: 0.1.0
description:
  - Creates, updates or removes the overlay network config stored at C(<etcd_prefix>/config),
    in the JSON format flanneld reads (C(Network), C(SubnetLen), C(SubnetMin), C(SubnetMax), C(Backend)).
  - The config is validated with flannel's rules before anything is written, and written with
    one etcd transaction guarded by the revision that was read, so a concurrent change is never overwritten.
  - "Idempotent by meaning: key order, spacing, and defaults left implicit or written out never cause a change."
  - A change that would leave existing subnet leases outside the new range, or with another prefix
    length, is refused with the list of those leases unless O(force=true).
author:
  - overlay.flannel maintainers (@overlay-flannel)
extends_documentation_fragment:
  - overlay.flannel.etcd
attributes:
  check_mode:
    support: full
    description: Reports what would change; nothing is written to etcd.
  diff_mode:
    support: full
    description: Shows the stored config before and after.
options:
  state:
    description:
      - V(present) stores the config, V(absent) removes it.
    type: str
    choices: [present, absent]
    default: present
  network:
    description:
      - IPv4 CIDR of the whole overlay network, for example C(10.5.0.0/16). Required with O(state=present).
    type: str
  subnet_len:
    description:
      - Prefix length of each host subnet.
      - Default is flannel's; 24, or the network prefix + 2 when the network is smaller than a /22.
    type: int
  subnet_min:
    description:
      - First subnet that may be leased, as an address (C(10.5.1.0)) or a CIDR. Default is the second subnet of the network.
    type: str
  subnet_max:
    description:
      - Last subnet that may be leased, as an address or a CIDR. Default is the last subnet of the network.
    type: str
  backend:
    description:
      - The C(Backend) object.
      - C(type) (default C(udp), the type the bundled forwarder implements) and C(port)
        (default C(8285) for C(udp)) map to C(Type) and C(Port).
      - Any other key is stored as it is given, for example C(VNI) for another backend type.
    type: dict
    default: {}
  force:
    description:
      - Store the config even when existing leases do not fit it, or remove it while leases exist.
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Create the overlay network
  overlay.flannel.network:
    etcd_endpoints: ["https://etcd1:2379", "https://etcd2:2379"]
    etcd_ca_cert: /etc/etcd/ca.pem
    network: 10.5.0.0/16
    subnet_len: 24

- name: Same, with the etcd options set once for the whole play
  module_defaults:
    group/overlay.flannel.etcd:
      etcd_endpoints: ["http://10.0.0.10:2379"]
  block:
    - name: Seed the network config
      overlay.flannel.network:
        network: 10.5.0.0/16
        backend:
          type: udp
          port: 8285

- name: Remove the config of a retired network
  overlay.flannel.network:
    etcd_prefix: /old.example/network
    state: absent
"""

RETURN = r"""
config:
  description: The config as stored, every default written out. Null after O(state=absent).
  returned: always
  type: dict
  sample:
    Network: 10.5.0.0/16
    SubnetLen: 24
    SubnetMin: 10.5.1.0
    SubnetMax: 10.5.255.0
    Backend:
      Type: udp
      Port: 8285
key:
  description: The etcd key of the config.
  returned: always
  type: str
  sample: /coreos.com/network/config
stranded_leases:
  description: Leases that do not fit the new config (only non-empty with O(force=true)).
  returned: always
  type: list
  elements: dict
  sample: [{"subnet": "10.6.3.0/24", "public_ip": "192.0.2.10"}]
"""

import json

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.overlay.flannel.plugins.module_utils.ansible_etcd import (
    ETCD_REQUIRED_TOGETHER,
    connect,
    etcd_argument_spec,
)
from ansible_collections.overlay.flannel.plugins.module_utils.etcd_client import EtcdError
from ansible_collections.overlay.flannel.plugins.module_utils.netconfig import (
    ConfigError,
    dumps,
    from_dict,
    incompatible_leases,
)
from ansible_collections.overlay.flannel.plugins.module_utils.store import StoreError
from ansible_collections.overlay.flannel.plugins.module_utils.subnets import SubnetError, parse_cidr


def desired_config(params):
    """The module options as a validated NetworkConfig (raises ConfigError/SubnetError)."""
    network = parse_cidr(params["network"], "network", strict=True)
    raw = {"Network": str(network)}
    if params["subnet_len"] is not None:
        raw["SubnetLen"] = params["subnet_len"]
    if params["subnet_min"]:
        raw["SubnetMin"] = params["subnet_min"]
    if params["subnet_max"]:
        raw["SubnetMax"] = params["subnet_max"]
    backend = {}
    for name, value in (params["backend"] or {}).items():
        if name in ("type", "Type"):
            backend["Type"] = value
        elif name in ("port", "Port"):
            # Templated values may arrive as strings ("{{ port }}").
            backend["Port"] = int(value) if isinstance(value, str) and value.strip().isdigit() else value
        else:
            backend[name] = value
    raw["Backend"] = backend
    return from_dict(raw)


def pretty(text):
    """Stored config text as indented JSON for the diff (garbage shown as it is)."""
    if text is None:
        return ""
    try:
        return json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"
    except ValueError:
        return text if text.endswith("\n") else text + "\n"


def main():
    argument_spec = etcd_argument_spec()
    argument_spec.update(
        state=dict(type="str", default="present", choices=["present", "absent"]),
        network=dict(type="str"),
        subnet_len=dict(type="int"),
        subnet_min=dict(type="str"),
        subnet_max=dict(type="str"),
        backend=dict(type="dict", default={}),
        force=dict(type="bool", default=False),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           required_together=ETCD_REQUIRED_TOGETHER,
                           required_if=[("state", "present", ["network"])])
    p = module.params
    result = dict(changed=False, config=None, stranded_leases=[])
    try:
        desired = desired_config(p) if p["state"] == "present" else None
    except (ConfigError, SubnetError) as exc:
        module.fail_json(msg="invalid network config: %s" % exc, **result)

    store = connect(module)
    result["key"] = store.config_key
    try:
        for _attempt in range(5):
            snap = store.snapshot()
            before = snap.config_kv.value.decode("utf-8", "replace") if snap.config_kv else None
            stranded = []
            if desired is not None:
                result["config"] = desired.to_dict()
                if snap.config == desired:
                    module.exit_json(**result)
                stranded = incompatible_leases(desired, [lease.subnet for lease in snap.leases])
            elif snap.config_kv is None:
                module.exit_json(**result)
            else:
                stranded = [lease.subnet for lease in snap.leases]
            holders = dict((lease.subnet, lease.public_ip) for lease in snap.leases)
            result["stranded_leases"] = [dict(subnet=str(s), public_ip=holders[s]) for s in stranded]
            if stranded and not p["force"]:
                listing = ", ".join("%s (%s)" % (s, holders[s]) for s in stranded)
                if desired is None:
                    module.fail_json(msg="refusing to remove the network config: %d lease(s) still use it: %s; "
                                         "release them first or set force: true" % (len(stranded), listing), **result)
                module.fail_json(msg="refusing to change the network config: %d existing lease(s) would not fit "
                                     "the new one (outside %s..%s or not /%d): %s; set force: true to store it anyway"
                                     % (len(stranded), desired.subnet_min, desired.subnet_max, desired.subnet_len,
                                        listing), **result)
            after_text = dumps(desired.to_dict()) if desired is not None else None
            result["changed"] = True
            if module._diff:
                result["diff"] = dict(before=pretty(before), after=pretty(after_text),
                                      before_header=store.config_key, after_header=store.config_key)
            if snap.config_error and desired is not None:
                module.warn("replacing an invalid config at %s (%s)" % (store.config_key, snap.config_error))
            if module.check_mode:
                module.exit_json(**result)
            ok = store.write_config(after_text, snap) if desired is not None else store.delete_config(snap)
            if ok:
                module.exit_json(**result)
            # Someone else changed the config between our read and our write: look again.
            result["changed"] = False
        module.fail_json(msg="the config at %s kept changing while it was being written" % store.config_key, **result)
    except (EtcdError, StoreError) as exc:
        module.fail_json(msg=str(exc), **result)


if __name__ == "__main__":
    main()
