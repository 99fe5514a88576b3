# -*- coding: utf-8 -*-
# Copyright: overlay.flannel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The network config stored at <prefix>/config: flannel's defaults and rules.

Pure logic: no Ansible, no etcd, no I/O. One parser for everybody, so that the
network module, the subnet module and the forwarder read a config the same way.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import json

from ansible_collections.overlay.flannel.plugins.module_utils import backends
from ansible_collections.overlay.flannel.plugins.module_utils.subnets import (
    SubnetError,
    count_subnets,
    in_range,
    parse_cidr,
    parse_cidr6,
    subnet6_at,
    subnet_at,
)

# The IPv6 keys of a dual-stack config, in the order to_dict writes them.
IPV6_KEYS = ("EnableIPv6", "IPv6Network", "IPv6SubnetLen", "IPv6SubnetMin", "IPv6SubnetMax")


class ConfigError(ValueError):
    """A config that breaks one of flannel's rules; `rule` names the rule."""

    def __init__(self, rule, message):
        super(ConfigError, self).__init__(message)
        self.rule = rule


class NetworkConfig(object):
    """A validated config with flannel's defaults filled in.

    A dual-stack config (EnableIPv6) also has ipv6_network, ipv6_subnet_len, ipv6_subnet_min and
    ipv6_subnet_max; they are None for an IPv4-only one.
    """

    __slots__ = ("network", "subnet_len", "subnet_min", "subnet_max", "backend",
                 "ipv6_network", "ipv6_subnet_len", "ipv6_subnet_min", "ipv6_subnet_max")

    def __init__(self, network, subnet_len, subnet_min, subnet_max, backend, ipv6=None):
        self.network = network
        self.subnet_len = subnet_len
        self.subnet_min = subnet_min
        self.subnet_max = subnet_max
        self.backend = backend
        self.ipv6_network, self.ipv6_subnet_len, self.ipv6_subnet_min, self.ipv6_subnet_max = ipv6 or (None,) * 4

    @property
    def dual_stack(self):
        return self.ipv6_network is not None

    @property
    def backend_type(self):
        return self.backend["Type"]

    @property
    def backend_port(self):
        """The UDP port of the backend on the wire (udp: 8285 by default, vxlan: 8472); None for host-gw."""
        return backends.port(self.backend)

    @property
    def capacity(self):
        return count_subnets(self.subnet_min, self.subnet_max)

    @property
    def ipv6_capacity(self):
        return count_subnets(self.ipv6_subnet_min, self.ipv6_subnet_max) if self.dual_stack else 0

    def contains_lease(self, subnet):
        """True when a lease on `subnet` (its IPv4 half) is compatible with this config."""
        return in_range(subnet, self.subnet_len, self.subnet_min, self.subnet_max)

    def contains_lease6(self, subnet6):
        """True when `subnet6` is the right IPv6 half of a lease under this config: a leasable IPv6 subnet
        of a dual-stack config, None (no half) for an IPv4-only one."""
        if not self.dual_stack:
            return subnet6 is None
        return subnet6 is not None and in_range(subnet6, self.ipv6_subnet_len, self.ipv6_subnet_min,
                                                self.ipv6_subnet_max)

    def fits(self, subnet, subnet6):
        """Both halves of a lease compatible with this config (flanneld's test before reusing a lease)."""
        return self.contains_lease(subnet) and self.contains_lease6(subnet6)

    def to_dict(self):
        """Flannel's JSON shape, every default written out (the IPv6 keys only for a dual-stack config)."""
        out = {
            "Network": str(self.network),
            "SubnetLen": self.subnet_len,
            "SubnetMin": str(self.subnet_min.network_address),
            "SubnetMax": str(self.subnet_max.network_address),
            "Backend": dict(self.backend),
        }
        if self.dual_stack:
            out.update(EnableIPv6=True, IPv6Network=str(self.ipv6_network), IPv6SubnetLen=self.ipv6_subnet_len,
                       IPv6SubnetMin=str(self.ipv6_subnet_min.network_address),
                       IPv6SubnetMax=str(self.ipv6_subnet_max.network_address))
        return out

    def __eq__(self, other):
        return isinstance(other, NetworkConfig) and self.to_dict() == other.to_dict()

    def __ne__(self, other):
        return not self == other

    def __hash__(self):
        return hash(dumps(self.to_dict()))

    def __repr__(self):
        return "NetworkConfig(%s)" % dumps(self.to_dict())


def dumps(data):
    """Compact, key-ordered JSON, as stored in etcd."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def _int_field(raw, name):
    value = raw.get(name)
    if value is None:
        return None
    # bool is an int in Python; a JSON true is not a prefix length.
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError("type", "%s must be an integer, got %r" % (name, value))
    return value


def _bool_field(raw, name, default):
    value = raw.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ConfigError("type", "%s must be true or false, got %r" % (name, value))
    return value


def _subnet_bound(raw, name, network, subnet_len, family=4):
    """SubnetMin/SubnetMax (IPv6SubnetMin/IPv6SubnetMax): an address (flannel) or a CIDR; inside Network
    (IPv6Network), on a SubnetLen (IPv6SubnetLen) boundary."""
    address, make, bits = ((ipaddress.IPv4Address, subnet_at, 32) if family == 4
                           else (ipaddress.IPv6Address, subnet6_at, 128))
    net_name, len_name = ("Network", "SubnetLen") if family == 4 else ("IPv6Network", "IPv6SubnetLen")
    value = raw.get(name)
    if not isinstance(value, str):
        raise ConfigError("type", "%s must be an IPv%d address string, got %r" % (name, family, value))
    text = value.split("/", 1)[0].strip()
    try:
        addr = address(text)
    except ValueError:
        raise ConfigError("type", "%s %r is not an IPv%d address" % (name, value, family))
    if addr not in network:
        raise ConfigError("%s-in-network" % name,
                          "%s %s is not in the range of the %s %s" % (name, addr, net_name, network))
    size = 2 ** (bits - subnet_len)
    if int(addr) % size:
        raise ConfigError("%s-boundary" % name,
                          "%s %s is not on a %s boundary (/%d)" % (name, addr, len_name, subnet_len))
    return make(int(addr), subnet_len)


# Per address family: the prefix of the config's key names and flannel's numbers (pkg/subnet/config.go): the
# subnet length a network gets by default, and the longest network prefix that still holds four subnets.
_FAMILIES = {
    4: dict(keys="", bits=32, parse=parse_cidr, subnet_at=subnet_at, default_len=24, smallest=28),
    6: dict(keys="IPv6", bits=128, parse=parse_cidr6, subnet_at=subnet6_at, default_len=64, smallest=124),
}


def _subnet_range(raw, family):
    """(Network, SubnetLen, SubnetMin, SubnetMax) of one address family (the IPv6 keys are IPv6Network, ...),
    by flannel's rules and defaults: SubnetLen at most the family's bits less 2 and at least the network's
    prefix + 2 (four subnets); by default the family's default length while the network holds four of them,
    else prefix + 2 down to the smallest useful network; SubnetMin/SubnetMax the second and the last subnet."""
    fam = _FAMILIES[family]
    net_name, len_name = fam["keys"] + "Network", fam["keys"] + "SubnetLen"
    try:
        network = fam["parse"](raw[net_name], net_name, strict=False)
    except SubnetError as exc:
        raise ConfigError(net_name + "-cidr", str(exc))
    subnet_len = _int_field(raw, len_name)
    if subnet_len:
        if subnet_len > fam["bits"] - 2:
            raise ConfigError(len_name + "-max", "%s must be less than /%d (got /%d)"
                              % (len_name, fam["bits"] - 1, subnet_len))
        if subnet_len < network.prefixlen + 2:
            raise ConfigError(
                len_name + "-min",
                "%s %s must be able to accommodate at least four subnets: "
                "%s must be /%d or longer (got /%d)" % (net_name, network, len_name, network.prefixlen + 2, subnet_len))
    elif network.prefixlen <= fam["default_len"] - 2:
        subnet_len = fam["default_len"]
    elif network.prefixlen <= fam["smallest"]:
        subnet_len = network.prefixlen + 2
    else:
        raise ConfigError(net_name + "-too-small", "%s %s is too small. Minimum useful network prefix is /%d"
                          % (net_name, network, fam["smallest"]))
    bounds = []
    for bound, first in (("SubnetMin", True), ("SubnetMax", False)):
        name = fam["keys"] + bound
        if raw.get(name) in (None, ""):
            size = 2 ** (fam["bits"] - subnet_len)
            start = int(network.network_address) + size if first else int(network.broadcast_address) + 1 - size
            bounds.append(fam["subnet_at"](start, subnet_len))
        else:
            bounds.append(_subnet_bound(raw, name, network, subnet_len, family))
    subnet_min, subnet_max = bounds
    if int(subnet_min.network_address) > int(subnet_max.network_address):
        raise ConfigError("%sSubnetMin-le-%sSubnetMax" % (fam["keys"], fam["keys"]),
                          "%sSubnetMin %s is greater than %sSubnetMax %s"
                          % (fam["keys"], subnet_min.network_address, fam["keys"], subnet_max.network_address))
    return network, subnet_len, subnet_min, subnet_max


def _ipv6(raw, backend):
    """The IPv6 half of a dual-stack config: (IPv6Network, IPv6SubnetLen, IPv6SubnetMin, IPv6SubnetMax) with
    flannel's defaults and rules (pkg/subnet/config.go), or None when EnableIPv6 is not true (flanneld then
    ignores the IPv6 keys too)."""
    if not _bool_field(raw, "EnableIPv6", False):
        return None
    if backend["Type"] == backends.UDP:
        raise ConfigError("ipv6", "the udp backend has no IPv6 (flannel's udp is IPv4 only): "
                          "EnableIPv6 needs Backend.Type vxlan or host-gw")
    if raw.get("IPv6Network") in (None, ""):
        raise ConfigError("IPv6Network-required",
                          "IPv6Network is required with EnableIPv6 (an IPv6 CIDR such as fd00:5::/48)")
    return _subnet_range(raw, 6)


def _backend(raw, strict=False):
    try:
        return backends.normalise(raw.get("Backend"), strict=strict)
    except backends.BackendError as exc:
        raise ConfigError(exc.rule, str(exc))


def from_dict(raw, strict=False):
    """Validate a config dict and fill flannel's defaults. Raises ConfigError.

    `strict` (the network module's input) also refuses Backend keys that are no option of its type.
    """
    if not isinstance(raw, dict):
        raise ConfigError("type", "config must be a JSON object, got %s" % type(raw).__name__)
    if raw.get("Network") in (None, ""):
        raise ConfigError("Network-required", "Network is required (an IPv4 CIDR such as 10.5.0.0/16)")
    if not _bool_field(raw, "EnableIPv4", True):
        raise ConfigError("ipv4", "EnableIPv4 false (an IPv6-only network) is not supported: IPv6-only is out of "
                                  "scope; a dual-stack network (EnableIPv6 true beside the IPv4 Network) is")
    network, subnet_len, subnet_min, subnet_max = _subnet_range(raw, 4)
    backend = _backend(raw, strict)
    return NetworkConfig(network, subnet_len, subnet_min, subnet_max, backend, _ipv6(raw, backend))


def parse(data):
    """Parse the JSON text (str or bytes) stored at <prefix>/config. Raises ConfigError."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigError("json", "config is not UTF-8 text")
    try:
        raw = json.loads(data)
    except ValueError as exc:
        raise ConfigError("json", "config is not valid JSON: %s" % exc)
    return from_dict(raw)


def same_meaning(stored_text, desired):
    """True when the stored config text means exactly `desired` (a NetworkConfig).

    Key order, spacing and defaults written out or left implicit never count.
    """
    try:
        return parse(stored_text) == desired
    except ConfigError:
        return False


def incompatible_leases(config, subnets):
    """The leased subnets that `config` would strand (out of range, other length), sorted."""
    return sorted((s for s in subnets if not config.contains_lease(s)),
                  key=lambda s: int(s.network_address))


def stranded(config, leases):
    """The leases (leases.Lease) that `config` would strand, sorted by subnet: an IPv4 half out of range or of
    another length, or an IPv6 half that a dual-stack `config` does not hold. A missing IPv6 half (the network
    turns dual-stack) or one that an IPv4-only `config` drops strands nothing: the subnet module rewrites
    the key on the same IPv4 subnet."""
    def out(lease):
        if not config.contains_lease(lease.subnet):
            return True
        return config.dual_stack and lease.subnet6 is not None and not config.contains_lease6(lease.subnet6)
    return sorted((lease for lease in leases if out(lease)), key=lambda lease: int(lease.subnet.network_address))


def tun_mtu(underlay_mtu):
    """FLANNEL_MTU for the udp backend."""
    return backends.mtu(backends.UDP, underlay_mtu)
