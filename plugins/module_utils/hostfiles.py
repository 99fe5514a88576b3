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

from ansible_collections.overlay.flannel.plugins.module_utils.subnets import (
    SubnetError,
    gateway,
    parse_cidr,
    parse_cidr6,
)

SUBNET_ENV_PATH = "/run/flannel/subnet.env"
DOCKER_OPTS_PATH = "/run/flannel/docker"


def _bool(value):
    return "true" if value else "false"


def render_subnet_env(network, subnet, mtu, ipmasq, ipv6_network=None, ipv6_subnet=None):
    """subnet.env as flanneld writes it; `subnet` is the host subnet (FLANNEL_SUBNET is its gateway). A dual-stack
    host (`ipv6_network` and its `ipv6_subnet`) also gets FLANNEL_IPV6_NETWORK and FLANNEL_IPV6_SUBNET (the IPv6
    subnet's first address with its length), in flanneld's order: after the IPv4 lines, before FLANNEL_MTU."""
    text = "FLANNEL_NETWORK=%s\nFLANNEL_SUBNET=%s\n" % (network, gateway(subnet))
    if ipv6_network is not None and ipv6_subnet is not None:
        text += "FLANNEL_IPV6_NETWORK=%s\nFLANNEL_IPV6_SUBNET=%s\n" % (ipv6_network, gateway(ipv6_subnet))
    return text + "FLANNEL_MTU=%d\nFLANNEL_IPMASQ=%s\n" % (int(mtu), _bool(ipmasq))


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


def previous_subnet6(text):
    """The host's IPv6 subnet named by a subnet.env text (FLANNEL_IPV6_SUBNET), or None."""
    value = parse_subnet_env(text).get("FLANNEL_IPV6_SUBNET")
    if not value:
        return None
    try:
        return parse_cidr6(value, "FLANNEL_IPV6_SUBNET", strict=False)
    except SubnetError:
        return None


def render_lease_state(subnet, subnet6=None):
    """The forwarder's lease state file (kept across reboots, where /run is not): the IPv4 subnet on the first
    line (all an IPv4-only host's file ever held), a dual-stack host's IPv6 subnet on the second."""
    return "%s\n" % subnet + ("%s\n" % subnet6 if subnet6 is not None else "")


def parse_lease_state(text):
    """(subnet, subnet6) of a lease state file (render_lease_state); None for a line missing or garbage."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    found = []
    for index, parse in ((0, parse_cidr), (1, parse_cidr6)):
        try:
            found.append(parse(lines[index], "lease state", strict=False))
        except (IndexError, SubnetError):
            found.append(None)
    return found[0], found[1]


def render_docker_opts(subnet_env_text):
    """/run/flannel/docker as flannel's mk-docker-opts.sh writes it from subnet.env.

    FLANNEL_IPMASQ=true means flannel masquerades, so docker gets
    --ip-masq=false (and the other way round): exactly one of them does it.
    A dual-stack host (FLANNEL_IPV6_SUBNET) also gets DOCKER_OPT_IPV6, "--ipv6
    --fixed-cidr-v6=<the host's IPv6 subnet>" (docker gives docker0 its first
    address, as --bip does for IPv4), in DOCKER_NETWORK_OPTIONS after --bip
    (mk-docker-opts.sh has no IPv6 options: this is ours).
    """
    env = parse_subnet_env(subnet_env_text)
    bip = "--bip=%s" % env["FLANNEL_SUBNET"]
    ipmasq = "--ip-masq=%s" % _bool(env.get("FLANNEL_IPMASQ", "false") != "true")
    mtu = "--mtu=%s" % env["FLANNEL_MTU"]
    subnet6 = previous_subnet6(subnet_env_text)
    if subnet6 is None:
        return ('DOCKER_OPT_BIP="%s"\nDOCKER_OPT_IPMASQ="%s"\nDOCKER_OPT_MTU="%s"\n'
                'DOCKER_NETWORK_OPTIONS=" %s %s %s "\n' % (bip, ipmasq, mtu, bip, ipmasq, mtu))
    ipv6 = "--ipv6 --fixed-cidr-v6=%s" % subnet6
    return ('DOCKER_OPT_BIP="%s"\nDOCKER_OPT_IPV6="%s"\nDOCKER_OPT_IPMASQ="%s"\nDOCKER_OPT_MTU="%s"\n'
            'DOCKER_NETWORK_OPTIONS=" %s %s %s %s "\n' % (bip, ipv6, ipmasq, mtu, bip, ipv6, ipmasq, mtu))
