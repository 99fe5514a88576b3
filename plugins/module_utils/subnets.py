# -*- coding: utf-8 -*-
# Copyright: overlay.flannel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Subnet arithmetic and etcd key names, shared by the modules and the forwarder.

Pure logic: no Ansible, no etcd, no I/O. Subnets are ipaddress.IPv4Network.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress

from ansible_collections.overlay.flannel.plugins.module_utils.settings import DEFAULT_PREFIX


class SubnetError(ValueError):
    """A subnet or a subnet key that cannot be used."""


def normalize_prefix(prefix):
    """'/coreos.com/network/' -> '/coreos.com/network' (keys are built with '/')."""
    if not isinstance(prefix, str) or not prefix.strip("/"):
        raise SubnetError("etcd prefix must be a non-empty path such as %s, got %r" % (DEFAULT_PREFIX, prefix))
    return "/" + prefix.strip("/")


def config_key(prefix):
    return normalize_prefix(prefix) + "/config"


def subnets_prefix(prefix):
    """The key prefix under which all leases live (with its trailing slash)."""
    return normalize_prefix(prefix) + "/subnets/"


def subnet_key_name(subnet):
    """IPv4Network('10.5.34.0/24') -> '10.5.34.0-24' (flannel's key encoding)."""
    return "%s-%d" % (subnet.network_address, subnet.prefixlen)


def lease_key(prefix, subnet):
    return subnets_prefix(prefix) + subnet_key_name(subnet)


def parse_subnet_key_name(name):
    """'10.5.34.0-24' -> IPv4Network('10.5.34.0/24').

    A dual-stack key ('10.5.34.0-24&fc00::-64') is accepted; its IPv6 half is
    not used here. Raises SubnetError for anything else.
    """
    v4 = name.split("&", 1)[0]
    addr, sep, length = v4.rpartition("-")
    if not sep or not length.isdigit():
        raise SubnetError("subnet key %r is not of the form A.B.C.D-LEN" % name)
    try:
        return ipaddress.IPv4Network("%s/%s" % (addr, length))
    except ValueError as exc:
        raise SubnetError("subnet key %r is not a valid subnet: %s" % (name, exc))


def parse_lease_key(prefix, key):
    """Full etcd key -> IPv4Network; SubnetError if it is not a lease key under prefix."""
    base = subnets_prefix(prefix)
    if not key.startswith(base):
        raise SubnetError("key %r is not under %s" % (key, base))
    return parse_subnet_key_name(key[len(base):])


def parse_cidr(text, what="subnet", strict=True):
    """Parse an IPv4 CIDR with an error that names `what` and the problem."""
    if isinstance(text, ipaddress.IPv4Network):
        return text
    if not isinstance(text, str) or "/" not in text:
        raise SubnetError("%s %r is not an IPv4 CIDR such as 10.5.0.0/16" % (what, text))
    try:
        return ipaddress.IPv4Network(text.strip(), strict=strict)
    except ipaddress.NetmaskValueError:
        raise SubnetError("%s %r has an invalid prefix length" % (what, text))
    except ValueError as exc:
        if "host bits set" in str(exc):
            fixed = ipaddress.IPv4Network(text.strip(), strict=False)
            raise SubnetError("%s %r has host bits set (did you mean %s?)" % (what, text, fixed))
        raise SubnetError("%s %r is not an IPv4 CIDR such as 10.5.0.0/16" % (what, text))


def parse_ipv4(text, what="address"):
    if not isinstance(text, str):
        raise SubnetError("%s %r is not an IPv4 address" % (what, text))
    try:
        return ipaddress.IPv4Address(text)
    except (ValueError, TypeError):
        raise SubnetError("%s %r is not an IPv4 address" % (what, text))


def gateway(subnet):
    """The first usable address with the subnet's length: FLANNEL_SUBNET ('10.5.34.1/24')."""
    return "%s/%d" % (subnet.network_address + 1, subnet.prefixlen)


def subnet_at(network_int, subnet_len):
    return ipaddress.IPv4Network((network_int, subnet_len))


def next_subnet(subnet):
    """The subnet of the same length right after `subnet`."""
    return ipaddress.IPv4Network((int(subnet.network_address) + subnet.num_addresses, subnet.prefixlen))


def overlaps(a, b):
    return a.overlaps(b)


def in_range(subnet, subnet_len, subnet_min, subnet_max):
    """True when `subnet` is a leasable subnet: right length, within [min, max]."""
    return (subnet.prefixlen == subnet_len
            and int(subnet_min.network_address) <= int(subnet.network_address) <= int(subnet_max.network_address))


def count_subnets(subnet_min, subnet_max):
    size = subnet_min.num_addresses
    return (int(subnet_max.network_address) - int(subnet_min.network_address)) // size + 1


def iter_free(subnet_min, subnet_max, taken, limit=None):
    """Subnets from subnet_min to subnet_max (inclusive) whose network is not in `taken`.

    `taken` is a set of network addresses as ints. Costs O(len(taken) + limit),
    not O(size of the range), so a /8 of /30s is no slower than a /16.
    """
    size = subnet_min.num_addresses
    length = subnet_min.prefixlen
    current = int(subnet_min.network_address)
    last = int(subnet_max.network_address)
    found = 0
    while current <= last:
        if current not in taken:
            yield ipaddress.IPv4Network((current, length))
            found += 1
            if limit is not None and found >= limit:
                return
        current += size
