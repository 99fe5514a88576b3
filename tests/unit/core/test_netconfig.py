"""flannel's config defaults and rules (flannel-compat.md), one case each."""

import json

import pytest

from ansible_collections.overlay.flannel.plugins.module_utils import netconfig
from ansible_collections.overlay.flannel.plugins.module_utils.netconfig import ConfigError, from_dict, parse


@pytest.mark.parametrize("network, subnet_len, smin, smax", [
    ("10.5.0.0/16", 24, "10.5.1.0", "10.5.255.0"),
    ("10.0.0.0/8", 24, "10.0.1.0", "10.255.255.0"),
    ("10.5.0.0/21", 24, "10.5.1.0", "10.5.7.0"),
    ("10.5.0.0/22", 24, "10.5.1.0", "10.5.3.0"),
    ("10.5.0.0/23", 25, "10.5.0.128", "10.5.1.128"),
    ("10.5.0.0/24", 26, "10.5.0.64", "10.5.0.192"),
    ("10.5.0.0/28", 30, "10.5.0.4", "10.5.0.12"),
])
def test_defaults_filled_as_flannel_does(network, subnet_len, smin, smax):
    cfg = from_dict({"Network": network})
    assert cfg.to_dict() == {
        "Network": network, "SubnetLen": subnet_len, "SubnetMin": smin, "SubnetMax": smax,
        "Backend": {"Type": "udp", "Port": 8285},
    }


def test_backend_defaults_and_pass_through():
    assert from_dict({"Network": "10.5.0.0/16", "Backend": {}}).backend == {"Type": "udp", "Port": 8285}
    cfg = from_dict({"Network": "10.5.0.0/16", "Backend": {"Type": "udp", "Port": 9000}})
    assert cfg.backend_port == 9000
    other = from_dict({"Network": "10.5.0.0/16", "Backend": {"Type": "vxlan", "VNI": 7, "MacPrefix": "0E:2A"}})
    # vxlan's defaults written out; a key flanneld knows and we do not is kept as it is (stored configs only).
    assert other.backend == {"Type": "vxlan", "VNI": 7, "Port": 0, "GBP": False, "Learning": False,
                             "DirectRouting": False, "MacPrefix": "0E:2A"}
    assert other.backend_port == 8472
    assert from_dict({"Network": "10.5.0.0/16", "Backend": {"Type": "host-gw"}}).backend_port is None


@pytest.mark.parametrize("raw, rule, words", [
    ({}, "Network-required", "Network is required"),
    ({"Network": "10.5.0.0"}, "Network-cidr", "not an IPv4 CIDR"),
    ({"Network": "10.5.0.0/33"}, "Network-cidr", "invalid prefix length"),
    ({"Network": "fc00::/64"}, "Network-cidr", "not an IPv4 CIDR"),
    ({"Network": "10.5.0.0/16", "SubnetLen": 31}, "SubnetLen-max", "less than /31"),
    ({"Network": "10.5.0.0/16", "SubnetLen": 17}, "SubnetLen-min", "at least four subnets"),
    ({"Network": "10.5.0.0/29"}, "Network-too-small", "Minimum useful network prefix is /28"),
    ({"Network": "10.5.0.0/16", "SubnetMin": "10.6.1.0"}, "SubnetMin-in-network", "not in the range of the Network"),
    ({"Network": "10.5.0.0/16", "SubnetMax": "10.4.255.0"}, "SubnetMax-in-network", "not in the range of the Network"),
    ({"Network": "10.5.0.0/16", "SubnetMin": "10.5.1.128"}, "SubnetMin-boundary", "SubnetLen boundary"),
    ({"Network": "10.5.0.0/16", "SubnetMax": "10.5.9.1"}, "SubnetMax-boundary", "SubnetLen boundary"),
    ({"Network": "10.5.0.0/16", "SubnetMin": "10.5.9.0", "SubnetMax": "10.5.8.0"}, "SubnetMin-le-SubnetMax", "greater"),
    ({"Network": "10.5.0.0/16", "SubnetLen": "24"}, "type", "SubnetLen must be an integer"),
    ({"Network": "10.5.0.0/16", "Backend": "udp"}, "type", "Backend must be a JSON object"),
    ({"Network": "10.5.0.0/16", "Backend": {"Port": 70000}}, "Backend-Port", "Backend.Port of the udp backend must be an integer in 1..65535"),
    ({"Network": "10.5.0.0/16", "EnableIPv6": True}, "ipv6", "IPv6"),
])
def test_rules_reject_with_a_message_naming_the_rule(raw, rule, words):
    with pytest.raises(ConfigError) as err:
        from_dict(raw)
    assert err.value.rule == rule
    assert words in str(err.value)


@pytest.mark.parametrize("raw", [
    {"Network": "10.5.0.0/16", "SubnetLen": 30},
    {"Network": "10.5.0.0/16", "SubnetLen": 18},
    {"Network": "10.5.0.0/28"},
    {"Network": "10.5.0.0/16", "SubnetMin": "10.5.10.0", "SubnetMax": "10.5.20.0"},
    {"Network": "10.5.0.0/16", "SubnetMin": "10.5.10.0", "SubnetMax": "10.5.10.0"},
])
def test_rules_accept_the_edges(raw):
    cfg = from_dict(raw)
    assert cfg.capacity >= 1


def test_parse_json_errors():
    with pytest.raises(ConfigError, match="not valid JSON"):
        parse(b"{not json")
    with pytest.raises(ConfigError, match="must be a JSON object"):
        parse("[1, 2]")
    with pytest.raises(ConfigError, match="not UTF-8"):
        parse(b"\xff\xfe")


def test_same_meaning_ignores_order_spacing_and_implicit_defaults():
    desired = from_dict({"Network": "10.5.0.0/16", "SubnetLen": 24})
    assert netconfig.same_meaning('{ "Network" : "10.5.0.0/16" }', desired)
    assert netconfig.same_meaning(json.dumps({"Backend": {"Port": 8285, "Type": "udp"}, "SubnetMax": "10.5.255.0",
                                              "Network": "10.5.0.0/16"}, indent=4), desired)
    assert not netconfig.same_meaning('{"Network": "10.5.0.0/16", "SubnetLen": 25}', desired)
    assert not netconfig.same_meaning('garbage', desired)


def test_incompatible_leases_lists_out_of_range_and_other_length():
    import ipaddress
    cfg = from_dict({"Network": "10.5.0.0/16", "SubnetMin": "10.5.10.0", "SubnetMax": "10.5.20.0"})
    subnets = [ipaddress.IPv4Network(s) for s in ("10.5.10.0/24", "10.5.21.0/24", "10.5.12.0/25", "10.5.9.0/24")]
    assert [str(s) for s in netconfig.incompatible_leases(cfg, subnets)] == ["10.5.9.0/24", "10.5.12.0/25", "10.5.21.0/24"]


def test_tun_mtu():
    assert netconfig.tun_mtu(1500) == 1472
