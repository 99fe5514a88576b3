"""The daemon's backends: one interface, chosen once by the network config's Backend.Type."""

import ipaddress

import pytest

from ansible_collections.overlay.flannel.plugins.module_utils import backends
from ansible_collections.overlay.flannel.plugins.module_utils.leases import Lease
from ansible_collections.overlay.flannel.plugins.module_utils.netconfig import from_dict

from flannel_forwarder import backend
from flannel_forwarder.config import Settings
from flannel_forwarder.kernel_state import GwPeer, VxlanPeer
from flannel_forwarder.routes import Peer

HOST = backend.Host("192.0.2.1", "eth0", ipaddress.IPv4Network("10.5.1.0/24"), 1450)


def lease(btype, data=None):
    attrs = {"PublicIP": "192.0.2.2", "PublicIPv6": None, "BackendType": btype, "BackendData": data}
    return Lease("/k", ipaddress.IPv4Network("10.5.2.0/24"), attrs, 1, 1)


@pytest.mark.parametrize("btype", backends.TYPES)
def test_every_backend_type_has_one_implementation_of_the_interface(btype):
    kind = backend.get(btype)
    assert issubclass(kind, backend.Backend) and kind.TYPE == btype
    assert kind.KEEPS_KERNEL_STATE is (btype != backends.UDP)


def test_an_unknown_type_is_refused_by_name():
    with pytest.raises(ValueError, match="no such backend: wireguard"):
        backend.get("wireguard")


def test_each_backend_makes_its_own_peer_of_a_lease_before_starting():
    udp = backend.get("udp")(from_dict({"Network": "10.5.0.0/16", "Backend": {"Type": "udp", "Port": 8286}}),
                             HOST, Settings())
    assert udp.peer_of(lease("udp")) == Peer("192.0.2.2", 8286) and len(udp.peers) == 0
    assert not udp.healthy and not udp.failed
    mac = backends.vtep_mac("192.0.2.2", 1)
    vx = backend.get("vxlan")(from_dict({"Network": "10.5.0.0/16", "Backend": {"Type": "vxlan"}}), HOST, Settings())
    assert vx.peer_of(lease("vxlan", {"VNI": 1, "VtepMAC": mac})) == VxlanPeer("192.0.2.2", mac)
    assert vx.device == "flannel.1" and vx.describe() == "flannel.1 on eth0, VtepMAC %s" % backends.vtep_mac(
        "192.0.2.1", 1)
    gw = backend.get("host-gw")(from_dict({"Network": "10.5.0.0/16", "Backend": {"Type": "host-gw"}}), HOST,
                                Settings())
    assert gw.peer_of(lease("host-gw")) == GwPeer("192.0.2.2") and gw.device is None
    assert gw.describe() == "routes via eth0"
    for b in (udp, vx, gw):
        b.close()  # nothing started: nothing to free, no error
