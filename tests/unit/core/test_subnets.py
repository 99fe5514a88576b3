import ipaddress

import pytest

from ansible_collections.overlay.flannel.plugins.module_utils import subnets as s


def net(text):
    return ipaddress.IPv4Network(text)


def test_key_encoding_round_trip():
    assert s.subnet_key_name(net("10.5.34.0/24")) == "10.5.34.0-24"
    assert s.lease_key("/coreos.com/network/", net("10.5.34.0/24")) == "/coreos.com/network/subnets/10.5.34.0-24"
    assert s.parse_subnet_key_name("10.5.34.0-24") == net("10.5.34.0/24")
    assert s.parse_subnet_key_name("10.5.34.0-24&fc00::-64") == net("10.5.34.0/24")
    assert s.parse_lease_key("/x/y", "/x/y/subnets/10.1.2.0-26") == net("10.1.2.0/26")


@pytest.mark.parametrize("bad", ["garbage", "10.5.34.0", "10.5.34.0-", "10.5.34.1-24", "300.1.1.0-24", "10.5.34.0-99"])
def test_bad_key_names(bad):
    with pytest.raises(s.SubnetError):
        s.parse_subnet_key_name(bad)


def test_prefix_rules():
    assert s.config_key("coreos.com/network") == "/coreos.com/network/config"
    assert s.subnets_prefix("/a/b/") == "/a/b/subnets/"
    with pytest.raises(s.SubnetError):
        s.normalize_prefix("/")


def test_gateway_and_next():
    assert s.gateway(net("10.5.34.0/24")) == "10.5.34.1/24"
    assert s.next_subnet(net("10.5.255.0/24")) == net("10.6.0.0/24")


def test_parse_cidr_messages():
    with pytest.raises(s.SubnetError, match="host bits set .did you mean 10.5.0.0/16"):
        s.parse_cidr("10.5.1.0/16", "network")
    assert s.parse_cidr("10.5.34.1/24", "previous_subnet", strict=False) == net("10.5.34.0/24")
    with pytest.raises(s.SubnetError, match="network 'ten' is not an IPv4 CIDR"):
        s.parse_cidr("ten", "network")
    with pytest.raises(s.SubnetError, match="not an IPv4 CIDR"):
        s.parse_cidr(24, "network")


def test_range_and_free_iteration():
    smin, smax = net("10.5.1.0/24"), net("10.5.5.0/24")
    assert s.count_subnets(smin, smax) == 5
    taken = {int(net("10.5.2.0/24").network_address), int(net("10.5.4.0/24").network_address)}
    assert [str(x) for x in s.iter_free(smin, smax, taken)] == ["10.5.1.0/24", "10.5.3.0/24", "10.5.5.0/24"]
    assert [str(x) for x in s.iter_free(smin, smax, taken, limit=1)] == ["10.5.1.0/24"]
    assert s.in_range(net("10.5.5.0/24"), 24, smin, smax)
    assert not s.in_range(net("10.5.6.0/24"), 24, smin, smax)
    assert not s.in_range(net("10.5.2.0/25"), 24, smin, smax)
    assert s.overlaps(net("10.5.0.0/16"), net("10.5.3.0/24"))
