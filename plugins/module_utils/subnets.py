# -*- coding: utf-8 -*-
# Copyright: overlay.flannel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Subnet arithmetic and etcd key names, shared by the modules and the forwarder.

Pure logic: no Ansible, no etcd, no I/O. Subnets are ipaddress.IPv4Network, the IPv6
halves of dual-stack leases ipaddress.IPv6Network; the arithmetic below takes either.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import re

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


def claims_prefix(prefix):
    """Where the claims of the halves of dual-stack leases live (with its trailing slash): one key per leased
    subnet of either family (10.5.34.0-24, fd00:5:0:22::-64), written in the transaction that writes its
    lease, so that two hosts never take one subnet (store.py). Outside <prefix>/subnets/, which flanneld
    lists as leases, and not named subnets* (flanneld lists <prefix>/subnets as a prefix)."""
    return normalize_prefix(prefix) + "/claims/"


def _half_name(subnet):
    # str() of an ipaddress address is the compressed, lower-case form (RFC 5952), as flanneld writes it.
    return "%s-%d" % (subnet.network_address, subnet.prefixlen)


def subnet_key_name(subnet, subnet6=None):
    """IPv4Network('10.5.34.0/24') -> '10.5.34.0-24' (flannel's key encoding); with the IPv6 half of a
    dual-stack lease, '10.5.34.0-24&fd00:5:0:22::-64' (the IPv6 address compressed)."""
    if subnet6 is None:
        return _half_name(subnet)
    return "%s&%s" % (_half_name(subnet), _half_name(subnet6))


def lease_key(prefix, subnet, subnet6=None):
    return subnets_prefix(prefix) + subnet_key_name(subnet, subnet6)


def claim_key(prefix, half):
    """The claim key of one half (IPv4Network or IPv6Network) of a dual-stack lease."""
    return claims_prefix(prefix) + _half_name(half)


def parse_claim_name(name):
    """'10.5.34.0-24' -> IPv4Network, 'fd00:5:0:22::-64' -> IPv6Network. Raises SubnetError."""
    try:
        return ipaddress.ip_network(name.replace("-", "/"))
    except ValueError:
        raise SubnetError("claim %r names no subnet" % (name,))


def parse_subnet_key_name(name):
    """'10.5.34.0-24' -> IPv4Network('10.5.34.0/24').

    A dual-stack key ('10.5.34.0-24&fc00::-64') is accepted; its IPv6 half is
    not used (nor checked) here: parse_subnet_key_pair reads both. Raises
    SubnetError for anything else.
    """
    v4 = name.split("&", 1)[0]
    addr, sep, length = v4.rpartition("-")
    if not sep or not length.isdigit():
        raise SubnetError("subnet key %r is not of the form A.B.C.D-LEN" % name)
    try:
        return ipaddress.IPv4Network("%s/%s" % (addr, length))
    except ValueError as exc:
        raise SubnetError("subnet key %r is not a valid subnet: %s" % (name, exc))


# flanneld reads the IPv6 half as lower-case hex digits and colons only (no dotted IPv4 tail, no zone).
_IPV6_HALF = re.compile(r"^([0-9a-f:]+)-([0-9]{1,3})$")


def parse_subnet_key_pair(name):
    """'10.5.34.0-24&fd00:5:0:22::-64' -> (IPv4Network, IPv6Network); '10.5.34.0-24' -> (IPv4Network, None).

    Both halves are checked: a garbage IPv6 half is a SubnetError that names the key and the half, as
    flanneld does not read such a key either. Raises SubnetError.
    """
    subnet = parse_subnet_key_name(name)
    _v4, amp, v6 = name.partition("&")
    if not amp:
        return subnet, None
    return subnet, _parse_ipv6_half(name, v6)


def _parse_ipv6_half(name, half):
    match = _IPV6_HALF.match(half)
    if not match:
        raise SubnetError("subnet key %r: its IPv6 half %r is not of the form ADDR-LEN (lower-case hex, "
                          "e.g. fd00:5:0:22::-64)" % (name, half))
    try:
        return ipaddress.IPv6Network("%s/%s" % match.groups())
    except ValueError as exc:
        raise SubnetError("subnet key %r: its IPv6 half %r is not a valid IPv6 subnet: %s" % (name, half, exc))


def ipv6_half_of_key_name(name):
    """The IPv6Network of a key name's IPv6 half, or None (no half, or one that cannot be read)."""
    _v4, amp, v6 = name.partition("&")
    if not amp:
        return None
    try:
        return _parse_ipv6_half(name, v6)
    except SubnetError:
        return None


def parse_lease_key(prefix, key):
    """Full etcd key -> IPv4Network; SubnetError if it is not a lease key under prefix."""
    base = subnets_prefix(prefix)
    if not key.startswith(base):
        raise SubnetError("key %r is not under %s" % (key, base))
    return parse_subnet_key_name(key[len(base):])


def parse_lease_key_pair(prefix, key):
    """Full etcd key -> (IPv4Network, IPv6Network or None); SubnetError if it is not a lease key under prefix
    or one of its halves cannot be read."""
    base = subnets_prefix(prefix)
    if not key.startswith(base):
        raise SubnetError("key %r is not under %s" % (key, base))
    return parse_subnet_key_pair(key[len(base):])


def _parse_network(text, what, strict, network_class, family):
    """An IPv4 or IPv6 CIDR (`network_class`), with an error that names `what` and the problem."""
    example = "10.5.0.0/16" if family == 4 else "fd00:5::/48"
    if isinstance(text, network_class):
        return text
    if not isinstance(text, str) or "/" not in text:
        raise SubnetError("%s %r is not an IPv%d CIDR such as %s" % (what, text, family, example))
    try:
        return network_class(text.strip(), strict=strict)
    except ipaddress.NetmaskValueError:
        raise SubnetError("%s %r has an invalid prefix length" % (what, text))
    except ValueError as exc:
        if "host bits set" in str(exc):
            fixed = network_class(text.strip(), strict=False)
            raise SubnetError("%s %r has host bits set (did you mean %s?)" % (what, text, fixed))
        raise SubnetError("%s %r is not an IPv%d CIDR such as %s" % (what, text, family, example))


def parse_cidr(text, what="subnet", strict=True):
    """Parse an IPv4 CIDR with an error that names `what` and the problem."""
    return _parse_network(text, what, strict, ipaddress.IPv4Network, 4)


def parse_cidr6(text, what="IPv6 subnet", strict=True):
    """Parse an IPv6 CIDR with an error that names `what` and the problem."""
    return _parse_network(text, what, strict, ipaddress.IPv6Network, 6)


def parse_ipv6(text, what="address"):
    if not isinstance(text, str):
        raise SubnetError("%s %r is not an IPv6 address" % (what, text))
    try:
        return ipaddress.IPv6Address(text.strip())
    except (ValueError, TypeError):
        raise SubnetError("%s %r is not an IPv6 address" % (what, text))


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


def subnet6_at(network_int, subnet_len):
    return ipaddress.IPv6Network((network_int, subnet_len))


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
    make = type(subnet_min)  # IPv4Network or IPv6Network
    current = int(subnet_min.network_address)
    last = int(subnet_max.network_address)
    found = 0
    while current <= last:
        if current not in taken:
            yield make((current, length))
            found += 1
            if limit is not None and found >= limit:
                return
        current += size
