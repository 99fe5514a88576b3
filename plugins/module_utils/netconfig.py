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
    subnet_at,
)


class ConfigError(ValueError):
    """A config that breaks one of flannel's rules; `rule` names the rule."""

    def __init__(self, rule, message):
        super(ConfigError, self).__init__(message)
        self.rule = rule


class NetworkConfig(object):
    """A validated config with flannel's defaults filled in."""

    __slots__ = ("network", "subnet_len", "subnet_min", "subnet_max", "backend")

    def __init__(self, network, subnet_len, subnet_min, subnet_max, backend):
        self.network = network
        self.subnet_len = subnet_len
        self.subnet_min = subnet_min
        self.subnet_max = subnet_max
        self.backend = backend

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

    def contains_lease(self, subnet):
        """True when a lease on `subnet` is compatible with this config."""
        return in_range(subnet, self.subnet_len, self.subnet_min, self.subnet_max)

    def to_dict(self):
        """Flannel's JSON shape, every default written out."""
        return {
            "Network": str(self.network),
            "SubnetLen": self.subnet_len,
            "SubnetMin": str(self.subnet_min.network_address),
            "SubnetMax": str(self.subnet_max.network_address),
            "Backend": dict(self.backend),
        }

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


def _subnet_bound(raw, name, network, subnet_len):
    """SubnetMin/SubnetMax: an address (flannel) or a CIDR; inside Network, on a SubnetLen boundary."""
    value = raw.get(name)
    if not isinstance(value, str):
        raise ConfigError("type", "%s must be an IPv4 address string, got %r" % (name, value))
    text = value.split("/", 1)[0].strip()
    try:
        addr = ipaddress.IPv4Address(text)
    except ValueError:
        raise ConfigError("type", "%s %r is not an IPv4 address" % (name, value))
    if addr not in network:
        raise ConfigError("%s-in-network" % name,
                          "%s %s is not in the range of the Network %s" % (name, addr, network))
    size = 2 ** (32 - subnet_len)
    if int(addr) % size:
        raise ConfigError("%s-boundary" % name,
                          "%s %s is not on a SubnetLen boundary (/%d)" % (name, addr, subnet_len))
    return subnet_at(int(addr), subnet_len)


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
    if raw.get("EnableIPv6") or raw.get("IPv6Network"):
        raise ConfigError("ipv6", "IPv6 networks are not supported (EnableIPv6/IPv6Network)")
    if raw.get("EnableIPv4") is False:
        raise ConfigError("ipv4", "EnableIPv4 false is not supported: the overlay is IPv4")
    try:
        network = parse_cidr(raw["Network"], "Network", strict=False)
    except SubnetError as exc:
        raise ConfigError("Network-cidr", str(exc))

    subnet_len = _int_field(raw, "SubnetLen")
    if subnet_len:
        if subnet_len > 30:
            raise ConfigError("SubnetLen-max", "SubnetLen must be less than /31 (got /%d)" % subnet_len)
        if subnet_len < network.prefixlen + 2:
            raise ConfigError(
                "SubnetLen-min",
                "Network %s must be able to accommodate at least four subnets: "
                "SubnetLen must be /%d or longer (got /%d)" % (network, network.prefixlen + 2, subnet_len))
    else:
        # flannel: /24 for networks of /22 and larger, prefix + 2 down to /28.
        if network.prefixlen < 22:
            subnet_len = 24
        elif network.prefixlen <= 28:
            subnet_len = network.prefixlen + 2
        else:
            raise ConfigError("Network-too-small",
                              "Network %s is too small. Minimum useful network prefix is /28" % network)

    subnet_size = 2 ** (32 - subnet_len)
    if raw.get("SubnetMin") in (None, ""):
        subnet_min = subnet_at(int(network.network_address) + subnet_size, subnet_len)
    else:
        subnet_min = _subnet_bound(raw, "SubnetMin", network, subnet_len)
    if raw.get("SubnetMax") in (None, ""):
        subnet_max = subnet_at(int(network.broadcast_address) + 1 - subnet_size, subnet_len)
    else:
        subnet_max = _subnet_bound(raw, "SubnetMax", network, subnet_len)
    if int(subnet_min.network_address) > int(subnet_max.network_address):
        raise ConfigError("SubnetMin-le-SubnetMax",
                          "SubnetMin %s is greater than SubnetMax %s"
                          % (subnet_min.network_address, subnet_max.network_address))
    return NetworkConfig(network, subnet_len, subnet_min, subnet_max, _backend(raw, strict))


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


def tun_mtu(underlay_mtu):
    """FLANNEL_MTU for the udp backend."""
    return backends.mtu(backends.UDP, underlay_mtu)
