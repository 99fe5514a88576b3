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


OWN6 = ipaddress.IPv6Network("fd00:5:0:7::/64")
VX = {"Network": "10.5.0.0/16", "Backend": {"Type": "vxlan"}}
DUAL = dict(VX, EnableIPv6=True, IPv6Network="fd00:5::/48")


@pytest.mark.parametrize("old, raw, action, words", [
    # A network turning dual-stack, or back, changes every lease's key: the daemon restarts on it.
    (VX, DUAL, "restart", "network turned dual-stack (IPv6Network fd00:5::/48)"),
    (DUAL, VX, "restart", "network turned IPv4-only (IPv6Network fd00:5::/48 dropped)"),
    (DUAL, DUAL, "keep", "unchanged"),
    # The IPv6 network grows, or its range changes, with the own IPv6 half still in it: followed.
    (DUAL, dict(DUAL, IPv6Network="fd00:5::/47"), "follow",
     "IPv6 network fd00:5::/48 -> fd00:5::/47"),
    (DUAL, dict(DUAL, Network="10.4.0.0/15", IPv6Network="fd00:5::/47"), "follow",
     "network 10.5.0.0/16 -> 10.4.0.0/15, IPv6 network"),
    (DUAL, dict(DUAL, IPv6SubnetMax="fd00:5:0:ff::"), "follow", "subnet range changed"),
    # ... and refused when the own IPv6 half is no longer a host subnet of it.
    (DUAL, dict(DUAL, IPv6Network="fd00:6::/48"), "refuse",
     "IPv6 subnet fd00:5:0:7::/64 is no host subnet of the new IPv6 network fd00:6::/48"),
    (DUAL, dict(DUAL, IPv6SubnetMin="fd00:5:0:8::"), "refuse", "IPv6 subnet fd00:5:0:7::/64"),
])
def test_config_change_of_a_dual_stack_network(old, raw, action, words):
    got, why = config_change(from_dict(old), from_dict(raw), OWN, OWN6)
    assert got == action and words in why, (got, why)
