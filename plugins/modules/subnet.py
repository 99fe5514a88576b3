#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: overlay.flannel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: subnet
short_description: Lease a flannel host subnet in etcd
version_added: 0.1.0
description:
  - Makes sure the host with O(public_ip) holds exactly one subnet lease at
    C(<etcd_prefix>/subnets/<net>-<len>), with the value flanneld writes
    (C(PublicIP), C(PublicIPv6), C(BackendType), C(BackendData)).
  - "Reuse order, as flanneld: the existing lease of O(public_ip) when it fits the network config;
    then O(previous_subnet) when it is free and fits; then a free subnet chosen at random among
    the first 100 free ones between C(SubnetMin) and C(SubnetMax)."
  - A new lease is created atomically (an etcd transaction that only succeeds when the key does
    not exist) and retried with another subnet when another host won the race, so two hosts
    never hold one subnet.
  - An existing lease is renewed only when less than O(renew_margin) seconds remain, or at once with
    O(renew=true).
  - "An existing lease asked with another O(ttl) keeps its subnet: V(0) turns it into a reservation (the key
    is rewritten without an etcd lease and the old etcd lease is revoked), a TTL turns a reservation back
    into a lease on a new etcd lease; each in one guarded transaction."
  - On a dual-stack network (C(EnableIPv6)) a lease is a pair, an IPv4 and an IPv6 subnet in one key
    C(<net>-<len>&<net6>-<len6>), written in one transaction with a claim of each of its subnets under
    C(<etcd_prefix>/claims/), so that two hosts never hold one subnet of either family.
  - When the network turns dual-stack, a host keeps its IPv4 subnet and gets an IPv6 half; its key is replaced
    by the dual-stack one in one transaction (the old key deleted, the new one put). Reservations too, with
    O(ttl=0). Back to IPv4-only, the reverse. Either is RV(action=update).
author:
  - overlay.flannel maintainers (@overlay-flannel)
extends_documentation_fragment:
  - overlay.flannel.etcd
attributes:
  check_mode:
    support: full
    description: Reports the lease that would be taken or renewed; nothing is written to etcd.
  diff_mode:
    support: full
    description: Shows the host's lease before and after.
options:
  public_ip:
    description:
      - The host's underlay IPv4 address, stored as C(PublicIP). It identifies the host's lease.
    type: str
    required: true
  public_ipv6:
    description:
      - The host's underlay IPv6 address, stored as C(PublicIPv6). Required when the network is dual-stack;
        ignored (C(PublicIPv6) stays null) when it is IPv4-only.
    type: str
    version_added: 0.2.0
  state:
    description:
      - V(present) makes sure the host holds a lease; V(absent) releases every lease of O(public_ip)
        and revokes its etcd lease.
    type: str
    choices: [present, absent]
    default: present
  ttl:
    description:
      - Lifetime of the lease in seconds, renewed by the forwarder on the host.
      - V(0) makes a reservation, a key with no etcd lease that never expires.
      - A lease whose etcd lease was granted with another TTL, or a reservation when O(ttl) is positive (and
        the reverse), is converted on the same subnet.
    type: int
    default: 86400
  renew_margin:
    description:
      - Renew an existing lease when fewer than this many seconds remain. Must be smaller than O(ttl).
    type: int
    default: 3600
  renew:
    description:
      - Renew the etcd lease now, back to its full O(ttl), whatever remains (O(renew_margin) is not consulted).
        Always a change for a lease (its expiry moves); no effect on a reservation (O(ttl=0)), which never expires.
      - A host without a lease gets one as without this option; pin O(subnet) to fail instead.
    type: bool
    version_added: 0.2.0
    default: false
  subnet:
    description:
      - Lease exactly this subnet (CIDR). Fails when another host holds it or it does not fit the config.
      - The host's other leases are released in the same transaction.
      - On a dual-stack network, the IPv6 half not named by O(ipv6_subnet) is the host's own when it is
        free, else chosen as for a new lease.
    type: str
  ipv6_subnet:
    description:
      - Lease exactly this IPv6 subnet (CIDR) as the IPv6 half, on a dual-stack network. Fails when another host
        holds it or it does not fit the config.
      - Without O(subnet), the IPv4 half is the host's own when it is free, else chosen as for a new lease.
    type: str
    version_added: 0.2.0
  previous_subnet:
    description:
      - A subnet this host held before, reused when it is free and fits the config, for example read back
        from C(/run/flannel/subnet.env). Either the subnet (C(10.5.34.0/24)) or the C(FLANNEL_SUBNET)
        form (C(10.5.34.1/24)).
    type: str
  previous_ipv6_subnet:
    description:
      - The IPv6 half this host held before (C(FLANNEL_IPV6_SUBNET)), reused when it is free and fits the
        config, each half on its own.
    type: str
    version_added: 0.2.0
  relet:
    description:
      - Give up the current subnet and take another one (day-2 re-leasing). The old lease is deleted in the
        same transaction that creates the new one. On a dual-stack network both halves move.
    type: bool
    default: false
  backend_type:
    description:
      - C(BackendType) of the lease. Default is the C(Backend.Type) of the network config.
    type: str
  backend_data:
    description:
      - C(BackendData) of the lease (any JSON value).
      - "Default: what the backend of the network config puts in a lease, the same value the forwarder on
        the host writes: null for V(udp) and V(host-gw); for V(vxlan) C({\"VNI\": <Backend.VNI>,
        \"VtepMAC\": <mac>}), where the MAC of the host's VXLAN device is derived from O(public_ip) and the VNI,
        so that it is known without asking the host and stays the same across restarts and re-installs."
      - An existing lease whose C(BackendType) or C(BackendData) differ (for example a V(udp) lease after the
        network config moved to V(vxlan)) is rewritten in place, on the same subnet (RV(action=update)).
      - With an O(backend_type) other than the config's, the default is null.
    type: raw
"""

EXAMPLES = r"""
- name: Lease a subnet for this host (modules talk to etcd from the controller)
  overlay.flannel.subnet:
    etcd_endpoints: ["http://10.0.0.10:2379"]
    public_ip: "{{ ansible_default_ipv4.address }}"
  delegate_to: localhost
  register: lease

- name: Keep the subnet docker0 already uses
  overlay.flannel.subnet:
    public_ip: 192.0.2.21
    previous_subnet: 10.5.34.1/24

- name: A reservation that never expires
  overlay.flannel.subnet:
    public_ip: 192.0.2.22
    subnet: 10.5.200.0/24
    ttl: 0

- name: Renew a host's lease now to the full TTL, on the subnet it holds
  overlay.flannel.subnet:
    public_ip: 192.0.2.22
    subnet: 10.5.200.0/24
    renew: true

- name: Turn a host's lease into a reservation (same subnet, never expires)
  overlay.flannel.subnet:
    public_ip: 192.0.2.25
    ttl: 0

- name: Lease a pair on a dual-stack network
  overlay.flannel.subnet:
    public_ip: 192.0.2.26
    public_ipv6: 2001:db8::26

- name: Move only the IPv6 half of a host; its IPv4 subnet stays
  overlay.flannel.subnet:
    public_ip: 192.0.2.26
    public_ipv6: 2001:db8::26
    ipv6_subnet: fd00:6:0:9::/64

- name: Move a host to another subnet
  overlay.flannel.subnet:
    public_ip: 192.0.2.23
    relet: true

- name: Retire a host
  overlay.flannel.subnet:
    public_ip: 192.0.2.24
    state: absent
"""

RETURN = r"""
subnet:
  description: The host subnet. Null in check mode when the network config does not exist yet.
  returned: when O(state=present)
  type: str
  sample: 10.5.34.0/24
subnet_gateway:
  description: The first usable address of the subnet with its length, the C(FLANNEL_SUBNET) value and docker's C(--bip).
  returned: when O(state=present)
  type: str
  sample: 10.5.34.1/24
network:
  description: The overlay network, C(FLANNEL_NETWORK).
  returned: when O(state=present)
  type: str
  sample: 10.5.0.0/16
ipv6_subnet:
  description: The host's IPv6 subnet on a dual-stack network; null on an IPv4-only one.
  returned: when O(state=present)
  type: str
  version_added: 0.2.0
  sample: fd00:5:0:22::/64
ipv6_subnet_gateway:
  description: The first usable address of the IPv6 subnet with its length (C(FLANNEL_IPV6_SUBNET)); null on an IPv4-only network.
  returned: when O(state=present)
  type: str
  version_added: 0.2.0
  sample: fd00:5:0:22::1/64
ipv6_network:
  description: The overlay's IPv6 network (C(FLANNEL_IPV6_NETWORK)); null on an IPv4-only network.
  returned: when O(state=present)
  type: str
  version_added: 0.2.0
  sample: fd00:5::/48
lease_key:
  description: The etcd key of the lease.
  returned: when O(state=present)
  type: str
  sample: /coreos.com/network/subnets/10.5.34.0-24
ttl:
  description: Seconds the lease has left (0 for a reservation).
  returned: when O(state=present)
  type: int
  sample: 86400
expires_at:
  description: When the lease expires unless renewed, ISO 8601 UTC; null for a reservation.
  returned: when O(state=present)
  type: str
  sample: "2026-11-26T10:00:00Z"
previous_expires_at:
  description:
    - When the host's lease would have expired before this run, ISO 8601 UTC; null when it was a reservation or
      the host had no lease (see RV(previous_reservation)).
  returned: when O(state=present)
  type: str
  version_added: 0.2.0
  sample: "2026-11-25T22:14:05Z"
previous_reservation:
  description: Whether the host's lease on this subnet was a reservation before this run (false without one).
  returned: when O(state=present)
  type: bool
  version_added: 0.2.0
  sample: false
action:
  description:
    - What was done, V(keep), V(renew), V(update), V(create), V(relet) or V(release).
    - V(update) is also a conversion between a lease and a reservation, on the same subnet, and the move of a
      lease to another key on the same IPv4 subnet (its IPv6 half added, changed or dropped).
  returned: always
  type: str
  sample: create
backend_type:
  description:
    - C(Backend.Type) of the network config (V(udp), V(vxlan) or V(host-gw)), which the host's forwarder runs.
    - Null in check mode before the network config exists.
  returned: when O(state=present)
  type: str
  version_added: 0.2.0
  sample: vxlan
backend_port:
  description:
    - The UDP port of the network config's backend on the wire, V(8285) by default for V(udp), V(8472) (the
      kernel's) for V(vxlan) unless C(Backend.Port) sets one.
    - Null for V(host-gw), which does not encapsulate, and in check mode before the network config exists.
  returned: when O(state=present)
  type: int
  sample: 8285
released:
  description: Subnets whose leases were deleted (the host's old ones, or all of them with O(state=absent)).
  returned: always
  type: list
  elements: str
  sample: ["10.5.12.0/24"]
released_ipv6:
  description: IPv6 halves the host gave up (of its old leases, or all of them with O(state=absent)).
  returned: always
  type: list
  elements: str
  version_added: 0.2.0
  sample: ["fd00:5:0:12::/64"]
"""

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.overlay.flannel.plugins.module_utils import backends, settings
from ansible_collections.overlay.flannel.plugins.module_utils.ansible_etcd import (
    ETCD_REQUIRED_TOGETHER,
    connect,
    etcd_argument_spec,
)
from ansible_collections.overlay.flannel.plugins.module_utils.etcd_client import EtcdError
from ansible_collections.overlay.flannel.plugins.module_utils.leases import LeaseError
from ansible_collections.overlay.flannel.plugins.module_utils.store import StoreError
from ansible_collections.overlay.flannel.plugins.module_utils.subnets import (
    SubnetError,
    gateway,
    parse_cidr,
    parse_cidr6,
    parse_ipv4,
    parse_ipv6,
)


def expiry(seconds):
    """ISO 8601 UTC time `seconds` from now; None for no time (a reservation, or nothing known)."""
    if not seconds or seconds <= 0:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + seconds))


def lease_view(lease, ttl=None):
    if lease is None:
        return {}
    view = dict(subnet=str(lease.subnet), public_ip=lease.public_ip, backend_type=lease.attrs["BackendType"],
                backend_data=lease.attrs["BackendData"], key=lease.key,
                reservation=not lease.lease_id if ttl is None else not ttl)
    if lease.subnet6 is not None or lease.public_ipv6:
        view.update(ipv6_subnet=str(lease.subnet6) if lease.subnet6 is not None else None,
                    public_ipv6=lease.public_ipv6)
    return view


def released_ipv6(leases, kept=None):
    return [str(old.subnet6) for old in leases if old.subnet6 is not None and old.subnet6 != kept]


def main():
    argument_spec = etcd_argument_spec()
    argument_spec.update(
        public_ip=dict(type="str", required=True),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        renew=dict(type="bool", default=False),
        subnet=dict(type="str"),
        ipv6_subnet=dict(type="str"),
        previous_subnet=dict(type="str"),
        previous_ipv6_subnet=dict(type="str"),
        relet=dict(type="bool", default=False),
        backend_type=dict(type="str"),
        backend_data=dict(type="raw"),
    )
    argument_spec.update(settings.argument_spec("subnet", ("ttl", "renew_margin", "public_ipv6")))
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           required_together=ETCD_REQUIRED_TOGETHER,
                           mutually_exclusive=[("subnet", "relet"), ("ipv6_subnet", "relet")])
    p = module.params
    result = dict(changed=False, action="keep", released=[], released_ipv6=[])
    try:
        public_ip = str(parse_ipv4(p["public_ip"], "public_ip"))
        public_ipv6 = str(parse_ipv6(p["public_ipv6"], "public_ipv6")) if p["public_ipv6"] else None
        requested = parse_cidr(p["subnet"], "subnet") if p["subnet"] else None
        requested6 = parse_cidr6(p["ipv6_subnet"], "ipv6_subnet") if p["ipv6_subnet"] else None
        # subnet.env holds the gateway form (10.5.34.1/24): accept it as the subnet it names.
        previous = parse_cidr(p["previous_subnet"], "previous_subnet", strict=False) if p["previous_subnet"] else None
        previous6 = (parse_cidr6(p["previous_ipv6_subnet"], "previous_ipv6_subnet", strict=False)
                     if p["previous_ipv6_subnet"] else None)
    except SubnetError as exc:
        module.fail_json(msg=str(exc), **result)
    # The table's rules: a TTL of 0 (a reservation) or more, a margin below it (or every run would renew).
    wrong = settings.problems(dict(ttl=p["ttl"], renew_margin=p["renew_margin"]), name="option")
    if wrong:
        module.fail_json(msg="; ".join(wrong), **result)

    store = connect(module)
    try:
        if p["state"] == "absent":
            released = store.release(public_ip, check_mode=module.check_mode)
            result["released"] = [str(lease.subnet) for lease in released]
            result["released_ipv6"] = released_ipv6(released)
            if released:
                result.update(changed=True, action="release")
                if module._diff:
                    result["diff"] = dict(before=lease_view(released[0]), after={})
            module.exit_json(**result)

        snap = store.snapshot()
        if module.check_mode and snap.config is None and snap.config_error is None:
            # A first --check run before the network task has really run: the
            # lease would be created then; which subnet cannot be known yet.
            module.warn("no network config at %s yet: a lease would be created once it exists" % store.config_key)
            result.update(changed=True, action="create", subnet=None, subnet_gateway=None, network=None,
                          lease_key=None, ttl=p["ttl"], expires_at=None, backend_port=None, backend_type=None,
                          previous_expires_at=None, previous_reservation=False, ipv6_subnet=None,
                          ipv6_subnet_gateway=None, ipv6_network=None)
            module.exit_json(**result)
        config = store.require_config(snap)
        if config.dual_stack and public_ipv6 is None:
            module.fail_json(msg="public_ipv6 is required: the network config at %s is dual-stack (EnableIPv6, "
                                 "IPv6Network %s); give the host's underlay IPv6 address"
                             % (store.config_key, config.ipv6_network), **result)
        backend_type = p["backend_type"] or config.backend_type
        backend_data = p["backend_data"]
        if backend_data is None and backend_type == config.backend_type:
            # The forwarder on the host computes the same value: no rewrite back and forth.
            backend_data = backends.lease_data(config.backend, public_ip)
        out = store.acquire(public_ip, ttl=p["ttl"], renew_margin=p["renew_margin"],
                            backend_type=backend_type,
                            backend_data=backend_data, requested=requested, previous=previous,
                            relet=p["relet"], check_mode=module.check_mode, snap=snap, renew=p["renew"],
                            public_ipv6=public_ipv6, requested6=requested6, previous6=previous6)
    except (EtcdError, StoreError, LeaseError) as exc:
        module.fail_json(msg=str(exc), **result)

    lease = out.lease
    result.update(
        changed=out.changed,
        action=out.action,
        subnet=str(lease.subnet),
        subnet_gateway=gateway(lease.subnet),
        network=str(out.config.network),
        backend_port=out.config.backend_port,
        backend_type=out.config.backend_type,
        lease_key=lease.key,
        ttl=out.ttl,
        expires_at=out.expires_at,
        previous_expires_at=expiry(out.before_ttl),
        previous_reservation=out.before_ttl == 0,
        released=[str(old.subnet) for old in out.released if old.subnet != lease.subnet],
        released_ipv6=released_ipv6(out.released, lease.subnet6),
        ipv6_subnet=str(lease.subnet6) if lease.subnet6 is not None else None,
        ipv6_subnet_gateway=gateway(lease.subnet6) if lease.subnet6 is not None else None,
        ipv6_network=str(out.config.ipv6_network) if out.config.dual_stack else None,
    )
    if module._diff and out.changed:
        before = lease_view(out.before)
        after = lease_view(lease, p["ttl"])
        if before and out.before_ttl is not None:
            before["expires_at"] = expiry(out.before_ttl)
        if after:
            after["expires_at"] = out.expires_at
        result["diff"] = dict(before=before, after=after)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
