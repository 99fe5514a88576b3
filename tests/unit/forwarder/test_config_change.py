"""What a running forwarder does about a changed network config (leasekeeper.config_change)."""

import ipaddress

import pytest

from ansible_collections.overlay.flannel.plugins.module_utils.netconfig import from_dict

from flannel_forwarder.leasekeeper import config_change

OWN = ipaddress.IPv4Network("10.5.7.0/24")
OLD = from_dict({"Network": "10.5.0.0/16"})


@pytest.mark.parametrize("raw, action, words", [
    ({"Network": "10.5.0.0/16"}, "keep", "unchanged"),
    ({"Network": "10.5.0.0/16", "SubnetLen": 24, "Backend": {"Type": "udp"}}, "keep", "unchanged"),
    ({"Network": "10.4.0.0/15"}, "follow", "10.5.0.0/16 -> 10.4.0.0/15"),
    ({"Network": "10.5.0.0/16", "SubnetMax": "10.5.100.0"}, "follow", "subnet range changed"),
    ({"Network": "10.5.0.0/16", "Backend": {"Type": "udp", "Port": 8286}}, "restart", "backend udp Port=8285 -> udp Port=8286"),
    ({"Network": "10.5.0.0/16", "Backend": {"Type": "vxlan"}}, "restart", "backend udp Port=8285 -> vxlan DirectRouting=false"),
    ({"Network": "10.5.0.0/16", "Backend": {"Type": "host-gw"}}, "restart", "-> host-gw"),
    ({"Network": "10.6.0.0/16"}, "refuse", "10.5.7.0/24 is no host subnet of the new network 10.6.0.0/16"),
    ({"Network": "10.5.0.0/16", "SubnetLen": 25}, "refuse", "no host subnet"),
    ({"Network": "10.5.0.0/16", "SubnetMin": "10.5.8.0"}, "refuse", "no host subnet"),
])
def test_config_change(raw, action, words):
    got, why = config_change(OLD, from_dict(raw), OWN)
    assert got == action and words in why, (got, why)
