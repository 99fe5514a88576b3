#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: overlay.flannel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: host_files
short_description: Write flannel's subnet.env and docker options files on a host
version_added: 0.1.0
description:
  - Writes C(/run/flannel/subnet.env) (C(FLANNEL_NETWORK), C(FLANNEL_SUBNET), C(FLANNEL_MTU), C(FLANNEL_IPMASQ))
    and C(/run/flannel/docker) (what flannel's C(mk-docker-opts.sh) makes of it, C(DOCKER_NETWORK_OPTIONS) included)
    in exactly the bytes flanneld and the bundled forwarder write.
  - C(FLANNEL_IPMASQ=true) (flannel masquerades) gives docker C(--ip-masq=false), and the other way round,
    so that exactly one of them masquerades.
  - Each file is written atomically (a temporary file in the same directory, then a rename), and only when
    its content differs, so a docker service that reads it is restarted only when something changed.
  - Runs on the host itself (not delegated), since the files belong to the host's docker.
author:
  - overlay.flannel maintainers (@overlay-flannel)
attributes:
  check_mode:
    support: full
    description: Reports which files would change; nothing is written.
  diff_mode:
    support: full
    description: Shows both files before and after.
  platform:
    support: full
    platforms: posix
    description: Linux hosts with docker.
options:
  network:
    description:
      - The whole overlay network (CIDR), C(FLANNEL_NETWORK).
    type: str
    required: true
  subnet:
    description:
      - The host subnet (C(10.5.34.0/24)) or its C(FLANNEL_SUBNET) form (C(10.5.34.1/24)), for example the
        RV(overlay.flannel.subnet#module:subnet) returned by M(overlay.flannel.subnet).
    type: str
    required: true
  mtu:
    description:
      - C(FLANNEL_MTU) and docker's C(--mtu), the underlay interface MTU minus 28 for the udp backend.
    type: int
    required: true
  ipmasq:
    description:
      - C(FLANNEL_IPMASQ). V(true) when flannel (not docker) masquerades traffic that leaves the overlay.
    type: bool
    default: false
  subnet_file:
    description:
      - Where subnet.env goes (flanneld's C(--subnet-file)).
    type: path
    default: /run/flannel/subnet.env
  docker_opts_file:
    description:
      - Where the docker options go (C(mk-docker-opts.sh -d)).
    type: path
    default: /run/flannel/docker
  mode:
    description:
      - Permissions of both files.
    type: raw
    default: "0644"
"""

EXAMPLES = r"""
- name: Lease a subnet on the controller
  overlay.flannel.subnet:
    etcd_endpoints: ["http://10.0.0.10:2379"]
    public_ip: "{{ ansible_default_ipv4.address }}"
  delegate_to: localhost
  register: lease

- name: Write subnet.env and the docker options for that lease
  overlay.flannel.host_files:
    network: "{{ lease.network }}"
    subnet: "{{ lease.subnet }}"
    mtu: "{{ ansible_default_ipv4.mtu - 28 }}"
    ipmasq: false
  register: flannel_files
"""

RETURN = r"""
subnet_env:
  description: The content of subnet.env.
  returned: always
  type: str
  sample: "FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_SUBNET=10.5.34.1/24\nFLANNEL_MTU=1472\nFLANNEL_IPMASQ=false\n"
docker_opts:
  description: The content of the docker options file.
  returned: always
  type: str
  sample: "DOCKER_OPT_BIP=\"--bip=10.5.34.1/24\"\n...DOCKER_NETWORK_OPTIONS=\" --bip=10.5.34.1/24 --ip-masq=true --mtu=1472 \"\n"
subnet_gateway:
  description: C(FLANNEL_SUBNET), the address docker0 gets (C(--bip)).
  returned: always
  type: str
  sample: 10.5.34.1/24
changed_files:
  description: The files that were (or in check mode would be) written.
  returned: always
  type: list
  elements: str
  sample: ["/run/flannel/subnet.env", "/run/flannel/docker"]
"""

import os
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_bytes, to_native

from ansible_collections.overlay.flannel.plugins.module_utils.hostfiles import (
    DOCKER_OPTS_PATH,
    SUBNET_ENV_PATH,
    render_docker_opts,
    render_subnet_env,
)
from ansible_collections.overlay.flannel.plugins.module_utils.subnets import SubnetError, gateway, parse_cidr


def read_text(path):
    try:
        with open(path, "rb") as fh:
            return fh.read().decode("utf-8", "replace")
    except (IOError, OSError):
        return None


def write_atomic(module, path, text, mode):
    directory = os.path.dirname(path) or "."
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o755)
    fd, tmp = tempfile.mkstemp(prefix=".%s." % os.path.basename(path), dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(to_bytes(text))
            fh.flush()
            os.fsync(fh.fileno())
        module.atomic_move(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    module.set_mode_if_different(path, mode, False)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            network=dict(type="str", required=True),
            subnet=dict(type="str", required=True),
            mtu=dict(type="int", required=True),
            ipmasq=dict(type="bool", default=False),
            subnet_file=dict(type="path", default=SUBNET_ENV_PATH),
            docker_opts_file=dict(type="path", default=DOCKER_OPTS_PATH),
            mode=dict(type="raw", default="0644"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        network = parse_cidr(p["network"], "network")
        # FLANNEL_SUBNET's form (10.5.34.1/24) names the same subnet as 10.5.34.0/24.
        subnet = parse_cidr(p["subnet"], "subnet", strict=False)
    except SubnetError as exc:
        module.fail_json(msg=str(exc))
    if not subnet.subnet_of(network):
        module.fail_json(msg="subnet %s is not inside network %s" % (subnet, network))
    if not 68 <= p["mtu"] <= 65535:
        module.fail_json(msg="mtu %d is outside 68..65535 (the underlay MTU minus 28)" % p["mtu"])

    subnet_env = render_subnet_env(str(network), subnet, p["mtu"], p["ipmasq"])
    wanted = [(p["subnet_file"], subnet_env), (p["docker_opts_file"], render_docker_opts(subnet_env))]
    result = dict(changed=False, subnet_env=wanted[0][1], docker_opts=wanted[1][1],
                  subnet_gateway=gateway(subnet), changed_files=[])
    diffs = []
    for path, text in wanted:
        before = read_text(path)
        diffs.append(dict(before_header=path, after_header=path, before=before or "", after=text))
        if before != text:
            result["changed_files"].append(path)
            if not module.check_mode:
                try:
                    write_atomic(module, path, text, p["mode"])
                except (IOError, OSError) as exc:
                    module.fail_json(msg="cannot write %s: %s" % (path, to_native(exc)), **result)
        elif not module.check_mode:
            # The content is right; only the permissions may differ.
            if module.set_mode_if_different(path, p["mode"], False):
                result["changed_files"].append(path)
        result["changed"] = bool(result["changed_files"])
    if module._diff:
        result["diff"] = diffs
    module.exit_json(**result)


if __name__ == "__main__":
    main()
