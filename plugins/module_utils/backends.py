# -*- coding: utf-8 -*-
# Copyright: overlay.flannel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The three backends (udp, vxlan, host-gw): options, defaults, rules, lease BackendData, MTU.

Pure logic: no Ansible, no etcd, no I/O. The network config (netconfig.py)
validates its Backend object here; the subnet module and the forwarder take
a lease's BackendData and a host's MTU from here, so that every writer of a
lease agrees on its value.

flanneld's facts matched here: Backend.Type selects the backend of the whole
network; vxlan options VNI (default 1), Port (default 0, the kernel's own,
8472 on Linux), GBP, Learning, DirectRouting (false); a vxlan lease carries
{"VNI": n, "VtepMAC": "aa:bb:..."}; udp and host-gw leases carry null.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import re

UDP = "udp"
VXLAN = "vxlan"
HOST_GW = "host-gw"
TYPES = (UDP, VXLAN, HOST_GW)
DEFAULT_TYPE = UDP

DEFAULT_UDP_PORT = 8285
DEFAULT_VNI = 1
VXLAN_KERNEL_PORT = 8472  # what Port 0 means to Linux
MAX_VNI = 2 ** 24 - 1

# Bytes the encapsulation takes from the underlay MTU: FLANNEL_MTU = underlay MTU - this.
# udp: outer IPv4 + UDP; vxlan: outer IPv4 + UDP + VXLAN header + inner Ethernet (20+8+8+14).
OVERHEAD = {UDP: 28, VXLAN: 50, HOST_GW: 0}
# The same over an IPv6 underlay (the IPv6 side of a dual-stack network): vxlan 40+8+8+14; udp has no IPv6.
OVERHEAD6 = {VXLAN: 70, HOST_GW: 0}

# Every option of each type, as stored (flanneld's key names), with its default.
OPTIONS = {
    UDP: (("Port", DEFAULT_UDP_PORT),),
    VXLAN: (("VNI", DEFAULT_VNI), ("Port", 0), ("GBP", False), ("Learning", False), ("DirectRouting", False)),
    HOST_GW: (),
}

_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


class BackendError(ValueError):
    """A Backend object or BackendData that breaks a rule; `rule` names the option it is about."""

    def __init__(self, rule, message):
        super(BackendError, self).__init__(message)
        self.rule = rule


def _int(btype, name, value, low, high, zero_default=None):
    if value is None or (zero_default is not None and value == 0 and not isinstance(value, bool)):
        return zero_default
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BackendError("Backend-%s" % name, "Backend.%s of the %s backend must be an integer in %d..%d, got %r"
                           % (name, btype, low, high, value))
    return value


def _bool(btype, name, value):
    if value is None:
        return False
    if not isinstance(value, bool):
        raise BackendError("Backend-%s" % name, "Backend.%s of the %s backend must be true or false, got %r"
                           % (name, btype, value))
    return value


def normalise(backend, strict=False):
    """A Backend object with its type's defaults filled in. Raises BackendError.

    Unknown keys are kept as they are (flanneld ignores them too), unless
    `strict` (the network module's input), where they are refused by name.
    """
    if backend is None:
        backend = {}
    if not isinstance(backend, dict):
        raise BackendError("type", "Backend must be a JSON object, got %r" % (backend,))
    btype = backend.get("Type")
    if btype is None or btype == "":
        btype = DEFAULT_TYPE
    if not isinstance(btype, str):
        raise BackendError("Backend-Type", "Backend.Type must be a string, got %r" % (btype,))
    if btype not in TYPES:
        raise BackendError("Backend-Type", "Backend.Type %r is not a backend of overlay.flannel (one of %s)"
                           % (btype, ", ".join(TYPES)))
    known = dict(OPTIONS[btype])
    out = dict((k, v) for k, v in backend.items() if k not in known)
    out["Type"] = btype
    if strict:
        unknown = sorted(k for k in out if k != "Type")
        if unknown:
            raise BackendError("Backend-options", "%s: not an option of the %s backend (its options: %s)"
                               % (", ".join(unknown), btype, ", ".join(known) or "none"))
    if btype == UDP:
        out["Port"] = _int(btype, "Port", backend.get("Port"), 1, 65535, zero_default=DEFAULT_UDP_PORT)
    elif btype == VXLAN:
        vni = backend.get("VNI")
        out["VNI"] = DEFAULT_VNI if vni is None else _int(btype, "VNI", vni, 0, MAX_VNI)
        out["Port"] = _int(btype, "Port", backend.get("Port"), 0, 65535, zero_default=0)
        for name in ("GBP", "Learning", "DirectRouting"):
            out[name] = _bool(btype, name, backend.get(name))
    return out


def port(backend):
    """The UDP port on the wire (vxlan's 0 is the kernel's 8472); None for host-gw."""
    btype = backend["Type"]
    if btype == UDP:
        return backend["Port"]
    if btype == VXLAN:
        return backend["Port"] or VXLAN_KERNEL_PORT
    return None


def device_name(backend):
    """The kernel device a backend runs on: flannel.<VNI> for vxlan; None for the others."""
    return "flannel.%d" % backend["VNI"] if backend["Type"] == VXLAN else None


def device_name6(backend):
    """The kernel device of a dual-stack vxlan network's IPv6 side: flannel-v6.<VNI> (flanneld's); None for the
    others."""
    return "flannel-v6.%d" % backend["VNI"] if backend["Type"] == VXLAN else None


def mtu(btype, underlay_mtu):
    """FLANNEL_MTU (the TUN's or the VXLAN device's MTU, docker0's and the containers') of a backend."""
    return underlay_mtu - OVERHEAD[btype]


def mtu6(btype, underlay_mtu):
    """The MTU of the IPv6 VXLAN device (flannel-v6.<VNI>): the underlay's less the encapsulation over IPv6
    (OVERHEAD6), as the kernel gives a VXLAN device over IPv6 (FLANNEL_MTU stays mtu()'s, as flanneld writes)."""
    return underlay_mtu - OVERHEAD6[btype]


def vtep_mac(public_ip, vni):
    """The VXLAN device's MAC of a host: derived from its public IP and the VNI, so it is the same after
    every restart, reboot or re-install (peers' neighbour and FDB entries stay right) and known to the
    controller without asking the host. Locally administered, unicast: 0e, the VNI's low byte, the IP."""
    packed = ipaddress.IPv4Address(public_ip).packed
    return ":".join("%02x" % b for b in bytearray([0x0e, vni & 0xff]) + bytearray(packed))


def vtep_mac6(public_ip, vni):
    """The MAC of a host's IPv6 VXLAN device (flanneld's flannel-v6.<VNI>, a device of its own beside
    flannel.<VNI>): as vtep_mac, from the host's public IPv4 address (unique among the leases, where the low
    bytes of IPv6 addresses often repeat from one /64 to the next) and the VNI, with 1e first so that it never
    equals the IPv4 device's MAC. Locally administered, unicast."""
    packed = ipaddress.IPv4Address(public_ip).packed
    return ":".join("%02x" % b for b in bytearray([0x1e, vni & 0xff]) + bytearray(packed))


def lease_data(backend, public_ip):
    """The BackendData of `public_ip`'s lease under `backend` (normalised): {"VNI", "VtepMAC"} for vxlan."""
    if backend["Type"] == VXLAN:
        return {"VNI": backend["VNI"], "VtepMAC": vtep_mac(public_ip, backend["VNI"])}
    return None


def lease_data6(backend, public_ip):
    """The BackendV6Data of `public_ip`'s dual-stack lease under `backend`: {"VNI", "VtepMAC"} (vtep_mac6) for
    vxlan, None (not written) for host-gw."""
    if backend["Type"] == VXLAN:
        return {"VNI": backend["VNI"], "VtepMAC": vtep_mac6(public_ip, backend["VNI"])}
    return None


def vxlan_peer(data, vni, name="BackendData"):
    """The VtepMAC of a vxlan lease's BackendData (lower case); `name` "BackendV6Data" for its IPv6 device's.
    Raises BackendError naming what is wrong."""
    if not isinstance(data, dict):
        raise BackendError(name, "%s of a vxlan lease must be an object, got %r" % (name, data))
    mac = data.get("VtepMAC")
    if not isinstance(mac, str) or not _MAC.fullmatch(mac.lower()):
        raise BackendError("VtepMAC", "%s.VtepMAC %r is not a MAC address" % (name, mac))
    lease_vni = data.get("VNI", vni)
    if isinstance(lease_vni, bool) or lease_vni != vni:
        raise BackendError("VNI", "%s.VNI %r is not the network's VNI %d" % (name, lease_vni, vni))
    return mac.lower()


def lease_type_matches(network_type, lease_type):
    """Is a lease of BackendType `lease_type` a peer under a network of `network_type`? (flanneld ignores
    leases of another backend; an empty type is an old udp lease.)"""
    return (lease_type or UDP) == network_type
