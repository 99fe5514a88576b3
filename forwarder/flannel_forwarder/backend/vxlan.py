"""The vxlan backend: the VXLAN device flannel.<VNI> and, per peer, a neighbour, an FDB entry and a route.

flanneld's vxlan backend, in the kernel: the device on the underlay
(local address = the public IP, the VtepMAC derived from it and the VNI,
learning as configured, the own subnet's network address as /32); the
entries per peer are kernel_state.desired's, kept by ../kernel.py's sync
(DirectRouting: a peer on the underlay's network gets a host-gw route).

On a dual-stack network a second device ``flannel-v6.<VNI>`` does the same
for IPv6, as flanneld's: local address = the host's PublicIPv6, its own
VtepMAC (BackendV6Data's, backends.vtep_mac6), the same VNI, port and
options, the own IPv6 subnet's network address as /128, the MTU the kernel
gives a VXLAN device over IPv6 (the underlay's less 70; FLANNEL_MTU stays
the IPv4 device's).
"""

from __future__ import annotations

import logging
import socket
from typing import NamedTuple

from ansible_collections.overlay.flannel.plugins.module_utils import backends

from .. import kernel_state as ks
from .. import rtnl
from ..kernel import NUD_PERMANENT, KernelBackend, link_index

log = logging.getLogger("flannel_forwarder.kernel")


class Device(NamedTuple):
    """One VXLAN device of this backend."""
    name: str
    family: int  # socket.AF_INET or AF_INET6: of its local address, its own address and its entries
    local: str  # the public IP (IPv4 device) or PublicIPv6 (IPv6 device)
    mac: str
    mtu: int
    address: str  # the own subnet's network address, as /32 or /128
    prefixlen: int


class VxlanBackend(KernelBackend):
    TYPE = backends.VXLAN

    def __init__(self, config, host, settings=None, interval=1.0):
        super().__init__(config, host, settings, interval)
        self.device = backends.device_name(self.backend)
        self.vtep_mac = backends.vtep_mac(self.public_ip, self.backend["VNI"])
        self.devices = [Device(self.device, socket.AF_INET, self.public_ip, self.vtep_mac, self.mtu,
                               str(self.subnet.network_address), 32)]
        if self.dual:
            self.device6 = backends.device_name6(self.backend)
            self.vtep_mac6 = backends.vtep_mac6(self.public_ip, self.backend["VNI"])
            self.devices.append(Device(self.device6, socket.AF_INET6, self.public_ipv6, self.vtep_mac6,
                                       self.mtu6 or self.mtu, str(self.subnet6.network_address), 128))

    def describe(self):
        text = "%s on %s, VtepMAC %s" % (self.device, self.underlay, self.vtep_mac)
        if self.device6:
            text += "; %s over %s, VtepMAC %s" % (self.device6, self.public_ipv6, self.vtep_mac6)
        return text

    def _setup_device(self):
        for dev in self.devices:
            self._setup_one(dev)

    def _setup_one(self, dev):
        """A VXLAN device: on the underlay, local = the public IP (IPv6: PublicIPv6), its VtepMAC, learning
        as configured (off by default), MTU, the own subnet's network address as /32 (IPv6: /128), up. A
        device of the same name that differs in what cannot be changed in place is re-created."""
        ipr, b = self._ipr, self.backend
        link = self._underlay_index()
        local_attr = "IFLA_VXLAN_LOCAL6" if dev.family == socket.AF_INET6 else "IFLA_VXLAN_LOCAL"
        want = {"IFLA_VXLAN_ID": b["VNI"], local_attr: dev.local, "IFLA_VXLAN_LINK": link,
                "IFLA_VXLAN_PORT": backends.port(b), "IFLA_VXLAN_LEARNING": 1 if b["Learning"] else 0}
        index = link_index(ipr, dev.name)
        if index is not None:
            current = ipr.get_links(index)[0]
            info = current.get_attr("IFLA_LINKINFO")
            data = info.get_attr("IFLA_INFO_DATA") if info is not None else None
            have = {k: data.get_attr(k) for k in want} if data is not None else {}
            gbp = data is not None and any(name == "IFLA_VXLAN_GBP" for name, _v in data["attrs"])
            if info is None or info.get_attr("IFLA_INFO_KIND") != "vxlan" or have != want or gbp != b["GBP"]:
                log.warning("device %s differs from the config (%s, want %s): re-creating it", dev.name,
                            have, want)
                ipr.link("del", index=index)
                index = None
        if index is None:
            args = dict(ifname=dev.name, kind="vxlan", vxlan_id=b["VNI"], vxlan_link=link, vxlan_port=b["Port"],
                        vxlan_learning=1 if b["Learning"] else 0, address=dev.mac, mtu=dev.mtu)
            args["vxlan_local6" if dev.family == socket.AF_INET6 else "vxlan_local"] = dev.local
            if b["GBP"]:
                args["vxlan_gbp"] = True
            ipr.link("add", **args)
            index = link_index(ipr, dev.name)
            log.info("created %s vni=%d local=%s dev=%s mac=%s mtu=%d", dev.name, b["VNI"], dev.local,
                     self.underlay, dev.mac, dev.mtu)
        current = ipr.get_links(index)[0]
        if current.get_attr("IFLA_ADDRESS") != dev.mac or current.get_attr("IFLA_MTU") != dev.mtu:
            ipr.link("set", index=index, address=dev.mac, mtu=dev.mtu)
        for addr in ipr.get_addr(family=dev.family, index=index):
            if dev.family == socket.AF_INET6 and addr.get_attr("IFA_ADDRESS", "").startswith("fe80:"):
                continue  # the kernel's link-local address
            if (addr.get_attr("IFA_ADDRESS"), addr["prefixlen"]) != (dev.address, dev.prefixlen):
                ipr.addr("del", index=index, address=addr.get_attr("IFA_ADDRESS"), prefixlen=addr["prefixlen"])
        if not ipr.get_addr(family=dev.family, index=index, address=dev.address):
            ipr.addr("add", index=index, address=dev.address, prefixlen=dev.prefixlen)
        ipr.link("set", index=index, state="up")

    def _check_device(self):
        present = {link.name for link in self._reader.links()}  # the sync's own reader, not pyroute2's parse
        for dev in self.devices:
            if dev.name not in present:
                log.warning("the VXLAN device %s is gone: re-creating it", dev.name)
                self._setup_one(dev)

    def _read_device(self, reader, indexes):
        ours = {}
        for dev in self.devices:
            index = indexes.get(dev.name)
            if index is None:
                raise RuntimeError("the VXLAN device %s is gone" % dev.name)
            ours[index] = dev.family
        neighs, fdbs = set(), set()
        for family in sorted(set(ours.values())):
            for n in reader.neighbours(family):
                if ours.get(n.ifindex) == family and n.state & NUD_PERMANENT and n.dst and n.lladdr:
                    neighs.add(ks.Neigh(n.dst, n.lladdr))
        for n in reader.neighbours(rtnl.AF_BRIDGE):
            if n.ifindex in ours and n.dst and n.lladdr and n.state & NUD_PERMANENT:
                fdbs.add(ks.Fdb(n.lladdr, n.dst))
        return neighs, fdbs


BACKEND = VxlanBackend
