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
  - A dual-stack network (O(ipv6_network), stored as C(EnableIPv6) with C(IPv6Network), C(IPv6SubnetLen),
    C(IPv6SubnetMin) and C(IPv6SubnetMax)) gives every host an IPv6 subnet beside its IPv4 one, in the same
    lease key. A network that turns dual-stack (or back to IPv4-only) strands no lease, since each host keeps
    its IPv4 subnet (M(overlay.flannel.subnet) rewrites its key); an existing IPv6 half outside a new IPv6
    range is stranded like an IPv4 subnet.
  - IPv6-only networks (C(EnableIPv4) false) are not supported, nor IPv6 with the V(udp) backend, which
    flannel's udp backend does not have.
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
      - Each option of the network is also accepted under flanneld's own key (C(Network), C(SubnetLen), C(IPv6Network),
        ...), as an alias.
    type: str
    aliases: [Network]
  subnet_len:
    description:
      - Prefix length of each host subnet.
      - Default is flannel's; 24, or the network prefix + 2 when the network is smaller than a /22.
    type: int
    aliases: [SubnetLen]
  subnet_min:
    description:
      - First subnet that may be leased, as an address (C(10.5.1.0)) or a CIDR. Default is the second subnet of the network.
    type: str
    aliases: [SubnetMin]
  subnet_max:
    description:
      - Last subnet that may be leased, as an address or a CIDR. Default is the last subnet of the network.
    type: str
    aliases: [SubnetMax]
  enable_ipv4:
    description:
      - C(EnableIPv4). Only V(true), flannel's default, is supported; V(false) (an IPv6-only network) is refused.
    type: bool
    version_added: 0.2.0
    aliases: [EnableIPv4]
  enable_ipv6:
    description:
      - C(EnableIPv6), a dual-stack network. Default is V(true) when O(ipv6_network) is given, else V(false).
      - V(true) needs O(ipv6_network) and a backend that has IPv6 (V(vxlan) or V(host-gw), not V(udp)).
    type: bool
    version_added: 0.2.0
    aliases: [EnableIPv6]
  ipv6_network:
    description:
      - C(IPv6Network), the IPv6 CIDR of the whole overlay, for example C(fd00:5::/48); makes the network
        dual-stack. At least a /124.
    type: str
    version_added: 0.2.0
    aliases: [IPv6Network]
  ipv6_subnet_len:
    description:
      - C(IPv6SubnetLen), the prefix length of each host's IPv6 subnet, at most 126 and at least the
        O(ipv6_network) prefix + 2.
      - Default is flannel's; 64, or the O(ipv6_network) prefix + 2 when that network is smaller than a /62.
    type: int
    version_added: 0.2.0
    aliases: [IPv6SubnetLen]
  ipv6_subnet_min:
    description:
      - C(IPv6SubnetMin), the first IPv6 subnet that may be leased, as an address or a CIDR, inside O(ipv6_network)
        and on an O(ipv6_subnet_len) boundary. Default is the second subnet of O(ipv6_network).
    type: str
    version_added: 0.2.0
    aliases: [IPv6SubnetMin]
  ipv6_subnet_max:
    description:
      - C(IPv6SubnetMax), the last IPv6 subnet that may be leased. Default is the last subnet of O(ipv6_network).
    type: str
    version_added: 0.2.0
    aliases: [IPv6SubnetMax]
  backend:
    description:
      - The C(Backend) object, which selects the backend of the whole network and its options.
      - Each suboption is stored under flanneld's own key (C(Type), C(Port), C(VNI), C(GBP), C(Learning),
        C(DirectRouting)); those spellings are accepted too, as aliases.
      - Only the options of the chosen O(backend.type) may be given; another one (for example O(backend.vni)
        with V(udp), or O(backend.port) with V(host-gw)) is refused with its name, as is a key that is no
        suboption. Options left out get flanneld's defaults, which are stored written out.
      - Templated values arrive as strings; numbers (V("4096")) and booleans (V("true")) are converted.
    type: dict
    default: {}
    suboptions:
      type:
        description:
          - C(Backend.Type), the backend of the whole network.
          - V(udp) encapsulates in UDP through the flannel-forwarder (user space).
          - V(vxlan) uses the kernel's VXLAN device C(flannel.<vni>); each lease carries the host's
            C(VtepMAC), derived from its public IP and the VNI.
          - V(host-gw) routes each subnet to its host's public IP, with no encapsulation; every host
            must be on one layer 2 segment with all the others.
        type: str
        choices: [udp, vxlan, host-gw]
        default: udp
        aliases: [Type]
      port:
        description:
          - C(Backend.Port), the UDP port on the wire. V(udp) and V(vxlan) only.
          - V(udp) defaults to V(8285) (V(0) means the same).
          - V(vxlan) defaults to V(0), the kernel's own port (8472 on Linux); V(4789) is the IANA one.
        type: int
        aliases: [Port]
      vni:
        description:
          - C(Backend.VNI), the VXLAN network identifier, 0 to 16777215. V(vxlan) only; default V(1).
        type: int
        version_added: 0.2.0
        aliases: [VNI]
      gbp:
        description:
          - C(Backend.GBP), VXLAN group based policy. V(vxlan) only; default V(false).
        type: bool
        version_added: 0.2.0
        aliases: [GBP]
      learning:
        description:
          - C(Backend.Learning), source address learning on the VXLAN device. V(vxlan) only; default V(false).
        type: bool
        version_added: 0.2.0
        aliases: [Learning]
      direct_routing:
        description:
          - C(Backend.DirectRouting), route directly (as V(host-gw)) to the hosts on the same subnet as this
            one and use VXLAN only for the others. V(vxlan) only; default V(false).
        type: bool
        version_added: 0.2.0
        aliases: [DirectRouting]
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

- name: A vxlan network (the kernel's VXLAN device flannel.1 on each host, port 8472)
  overlay.flannel.network:
    network: 10.6.0.0/16
    backend:
      type: vxlan
      vni: 1

- name: A vxlan network that routes directly between hosts of one subnet, on the IANA port
  overlay.flannel.network:
    network: 10.6.0.0/16
    backend:
      type: vxlan
      vni: 4096
      port: 4789
      direct_routing: true

- name: A dual-stack vxlan network (each host an IPv4 /24 and an IPv6 /64, in one lease)
  overlay.flannel.network:
    network: 10.6.0.0/16
    ipv6_network: fd00:6::/48
    backend:
      type: vxlan

- name: A host-gw network (every host on one layer 2 segment; no encapsulation)
  overlay.flannel.network:
    network: 10.7.0.0/16
    backend:
      type: host-gw

- name: Remove the config of a retired network
  overlay.flannel.network:
    etcd_prefix: /old.example/network
    state: absent
"""

RETURN = r"""
config:
  description:
    - The config as stored, every default written out (those of the backend too). Null after O(state=absent).
    - "C(Backend) of each type: C({Type: udp, Port: 8285}); C({Type: vxlan, VNI: 1, Port: 0, GBP: false,
      Learning: false, DirectRouting: false}) (the sample); C({Type: host-gw})."
    - A dual-stack config also has C(EnableIPv6) (true), C(IPv6Network), C(IPv6SubnetLen), C(IPv6SubnetMin)
      and C(IPv6SubnetMax).
  returned: always
  type: dict
  sample:
    Network: 10.5.0.0/16
    SubnetLen: 24
    SubnetMin: 10.5.1.0
    SubnetMax: 10.5.255.0
    Backend:
      Type: vxlan
      VNI: 1
      Port: 0
      GBP: false
      Learning: false
      DirectRouting: false
key:
  description: The etcd key of the config.
  returned: always
  type: str
  sample: /coreos.com/network/config
stranded_leases:
  description:
    - Leases that do not fit the new config (only non-empty with O(force=true)).
    - The lease of a dual-stack key also has its C(ipv6_subnet).
  returned: always
  type: list
  elements: dict
  sample: [{"subnet": "10.6.3.0/24", "public_ip": "192.0.2.10"}]
"""

import json

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.overlay.flannel.plugins.module_utils import backends
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
    stranded,
)
from ansible_collections.overlay.flannel.plugins.module_utils.store import StoreError
from ansible_collections.overlay.flannel.plugins.module_utils.subnets import SubnetError, parse_cidr, parse_cidr6


# The `backend` suboptions and flanneld's key of each (also accepted as an alias).
BACKEND_KEYS = (("type", "Type"), ("port", "Port"), ("vni", "VNI"), ("gbp", "GBP"), ("learning", "Learning"),
                ("direct_routing", "DirectRouting"))


# The IPv6 options and flanneld's key of each (also accepted as an alias).
IPV6_KEYS = (("ipv6_network", "IPv6Network"), ("ipv6_subnet_len", "IPv6SubnetLen"),
             ("ipv6_subnet_min", "IPv6SubnetMin"), ("ipv6_subnet_max", "IPv6SubnetMax"))
# The option a refusal of the config is about, by the flanneld key its rule starts with (netconfig's rules).
RULE_OPTIONS = dict([(key, name) for name, key in IPV6_KEYS]
                    + [("ipv4", "enable_ipv4"), ("ipv6", "enable_ipv6 with backend.type")])


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
    if params["enable_ipv4"] is not None:
        raw["EnableIPv4"] = params["enable_ipv4"]
    raw.update(ipv6_keys(params))
    raw["Backend"] = backend_object(params["backend"])
    try:
        return from_dict(raw, strict=True)
    except ConfigError as exc:
        option = RULE_OPTIONS.get(exc.rule.split("-", 1)[0])
        if option is None:
            raise
        raise ConfigError(exc.rule, "%s: %s" % (option, exc))


def ipv6_keys(params):
    """The IPv6 keys of the config (none for an IPv4-only network). Raises ConfigError naming the option."""
    given = [name for name, _key in IPV6_KEYS if params[name] not in (None, "")]
    enable = params["enable_ipv6"]
    if enable is None:
        enable = "ipv6_network" in given
    if not enable:
        if given:
            raise ConfigError("ipv6", "%s given, but the network is IPv4-only (%s): give ipv6_network, and leave "
                                      "enable_ipv6 unset or true, for a dual-stack network"
                              % (", ".join(given), "enable_ipv6 false" if params["enable_ipv6"] is False
                                 else "no ipv6_network"))
        return {}
    raw = {"EnableIPv6": True}
    if params["ipv6_network"]:
        try:
            raw["IPv6Network"] = str(parse_cidr6(params["ipv6_network"], "ipv6_network", strict=True))
        except SubnetError as exc:
            raise ConfigError("IPv6Network-cidr", str(exc))
    for name, key in IPV6_KEYS[1:]:
        if params[name] not in (None, ""):
            raw[key] = params[name]
    return raw


def backend_object(options):
    """The `backend` suboptions given (Ansible has converted templated strings) as flanneld's Backend object.

    Options left out (None) are left out here too, so that backends.py fills in the type's defaults
    and refuses, by its flanneld name, an option that the type does not have.
    """
    options = options or {}
    return dict((key, options[name]) for name, key in BACKEND_KEYS if options.get(name) is not None)


def stranded_view(lease):
    view = dict(subnet=str(lease.subnet), public_ip=lease.public_ip)
    if lease.subnet6 is not None:
        view["ipv6_subnet"] = str(lease.subnet6)
    return view


def lease_name(lease):
    return str(lease.subnet) if lease.subnet6 is None else "%s & %s" % (lease.subnet, lease.subnet6)


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
        network=dict(type="str", aliases=["Network"]),
        subnet_len=dict(type="int", aliases=["SubnetLen"]),
        subnet_min=dict(type="str", aliases=["SubnetMin"]),
        subnet_max=dict(type="str", aliases=["SubnetMax"]),
        enable_ipv4=dict(type="bool", aliases=["EnableIPv4"]),
        enable_ipv6=dict(type="bool", aliases=["EnableIPv6"]),
        ipv6_network=dict(type="str", aliases=["IPv6Network"]),
        ipv6_subnet_len=dict(type="int", aliases=["IPv6SubnetLen"]),
        ipv6_subnet_min=dict(type="str", aliases=["IPv6SubnetMin"]),
        ipv6_subnet_max=dict(type="str", aliases=["IPv6SubnetMax"]),
        backend=dict(type="dict", default={}, options=dict(
            type=dict(type="str", default=backends.DEFAULT_TYPE, choices=list(backends.TYPES), aliases=["Type"]),
            port=dict(type="int", aliases=["Port"]),
            vni=dict(type="int", aliases=["VNI"]),
            gbp=dict(type="bool", aliases=["GBP"]),
            learning=dict(type="bool", aliases=["Learning"]),
            direct_routing=dict(type="bool", aliases=["DirectRouting"]),
        )),
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
            strand = []
            if desired is not None:
                result["config"] = desired.to_dict()
                if snap.config == desired:
                    module.exit_json(**result)
                strand = stranded(desired, snap.leases)
            elif snap.config_kv is None:
                module.exit_json(**result)
            else:
                strand = list(snap.leases)
            result["stranded_leases"] = [stranded_view(lease) for lease in strand]
            if strand and not p["force"]:
                listing = ", ".join("%s (%s)" % (lease_name(lease), lease.public_ip) for lease in strand)
                if desired is None:
                    module.fail_json(msg="refusing to remove the network config: %d lease(s) still use it: %s; "
                                         "release them first or set force: true" % (len(strand), listing), **result)
                ipv6_range = ""
                if desired.dual_stack:
                    ipv6_range = ", IPv6 halves outside %s..%s or not /%s" % (
                        desired.ipv6_subnet_min, desired.ipv6_subnet_max, desired.ipv6_subnet_len)
                module.fail_json(msg="refusing to change the network config: %d existing lease(s) would not fit "
                                     "the new one (outside %s..%s or not /%d%s): %s; set force: true to store it "
                                     "anyway" % (len(strand), desired.subnet_min, desired.subnet_max,
                                                 desired.subnet_len, ipv6_range, listing), **result)
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
