# -*- coding: utf-8 -*-
# Copyright: overlay.flannel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The files flannel leaves on each host: /run/flannel/subnet.env and /run/flannel/docker.

Pure text in, text out; shared by the forwarder (which writes them, and
re-creates them after a reboot), the host probe (hoststate.py: what the roles
decide from), the report and the subnet_env filter, so all read them one way.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.overlay.flannel.plugins.module_utils.subnets import SubnetError, gateway, parse_cidr

SUBNET_ENV_PATH = "/run/flannel/subnet.env"
DOCKER_OPTS_PATH = "/run/flannel/docker"


def _bool(value):
    return "true" if value else "false"


def render_subnet_env(network, subnet, mtu, ipmasq):
    """subnet.env as flanneld writes it; `subnet` is the host subnet (FLANNEL_SUBNET is its gateway)."""
    return "FLANNEL_NETWORK=%s\nFLANNEL_SUBNET=%s\nFLANNEL_MTU=%d\nFLANNEL_IPMASQ=%s\n" % (
        network, gateway(subnet), int(mtu), _bool(ipmasq))


def parse_subnet_env(text):
    """KEY=VALUE lines -> dict (comments and blank lines ignored, quotes stripped)."""
    values = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        values[key.strip()] = value.strip().strip('"').strip("'")
    return values


def previous_subnet(text):
    """The host subnet named by a subnet.env text, or None when it names none or garbage."""
    value = parse_subnet_env(text).get("FLANNEL_SUBNET")
    if not value:
        return None
    try:
        return parse_cidr(value, "FLANNEL_SUBNET", strict=False)
    except SubnetError:
        return None


def render_docker_opts(subnet_env_text):
    """/run/flannel/docker as flannel's mk-docker-opts.sh writes it from subnet.env.

    FLANNEL_IPMASQ=true means flannel masquerades, so docker gets
    --ip-masq=false (and the other way round): exactly one of them does it.
    """
    env = parse_subnet_env(subnet_env_text)
    bip = "--bip=%s" % env["FLANNEL_SUBNET"]
    ipmasq = "--ip-masq=%s" % _bool(env.get("FLANNEL_IPMASQ", "false") != "true")
    mtu = "--mtu=%s" % env["FLANNEL_MTU"]
    return ('DOCKER_OPT_BIP="%s"\nDOCKER_OPT_IPMASQ="%s"\nDOCKER_OPT_MTU="%s"\n'
            'DOCKER_NETWORK_OPTIONS=" %s %s %s "\n' % (bip, ipmasq, mtu, bip, ipmasq, mtu))
