"""The vxlan backend: the VXLAN device flannel.<VNI> and, per peer, a neighbour, an FDB entry and a route.

flanneld's vxlan backend, in the kernel: the device on the underlay
(local address = the public IP, the VtepMAC derived from it and the VNI,
learning as configured, the own subnet's network address as /32); the
entries per peer are kernel_state.desired's, kept by ../kernel.py's sync
(DirectRouting: a peer on the underlay's network gets a host-gw route).
"""

from __future__ import annotations

import logging
import socket

from ansible_collections.overlay.flannel.plugins.module_utils import backends

from .. import kernel_state as ks
from ..kernel import NUD_PERMANENT, KernelBackend, link_index

log = logging.getLogger("flannel_forwarder.kernel")


class VxlanBackend(KernelBackend):
    TYPE = backends.VXLAN

    def __init__(self, config, host, settings=None, interval=1.0):
        super().__init__(config, host, settings, interval)
        self.device = backends.device_name(self.backend)
        self.vtep_mac = backends.vtep_mac(self.public_ip, self.backend["VNI"])

    def describe(self):
        return "%s on %s, VtepMAC %s" % (self.device, self.underlay, self.vtep_mac)

    def _setup_device(self):
        """flannel.<VNI>: on the underlay, local = the public IP, the derived VtepMAC, learning as
        configured (off by default), MTU, the own subnet's network address as /32, up. A device of
        the same name that differs in what cannot be changed in place is re-created."""
        ipr, b = self._ipr, self.backend
        link = self._underlay_index()
        mac = self.vtep_mac
        want = {"IFLA_VXLAN_ID": b["VNI"], "IFLA_VXLAN_LOCAL": self.public_ip, "IFLA_VXLAN_LINK": link,
                "IFLA_VXLAN_PORT": backends.port(b), "IFLA_VXLAN_LEARNING": 1 if b["Learning"] else 0}
        index = link_index(ipr, self.device)
        if index is not None:
            current = ipr.get_links(index)[0]
            info = current.get_attr("IFLA_LINKINFO")
            data = info.get_attr("IFLA_INFO_DATA") if info is not None else None
            have = {k: data.get_attr(k) for k in want} if data is not None else {}
            gbp = data is not None and any(name == "IFLA_VXLAN_GBP" for name, _v in data["attrs"])
            if info is None or info.get_attr("IFLA_INFO_KIND") != "vxlan" or have != want or gbp != b["GBP"]:
                log.warning("device %s differs from the config (%s, want %s): re-creating it", self.device,
                            have, want)
                ipr.link("del", index=index)
                index = None
        if index is None:
            args = dict(ifname=self.device, kind="vxlan", vxlan_id=b["VNI"], vxlan_local=self.public_ip,
                        vxlan_link=link, vxlan_port=b["Port"], vxlan_learning=1 if b["Learning"] else 0,
                        address=mac, mtu=self.mtu)
            if b["GBP"]:
                args["vxlan_gbp"] = True
            ipr.link("add", **args)
            index = link_index(ipr, self.device)
            log.info("created %s vni=%d local=%s dev=%s mac=%s mtu=%d", self.device, b["VNI"], self.public_ip,
                     self.underlay, mac, self.mtu)
        current = ipr.get_links(index)[0]
        if current.get_attr("IFLA_ADDRESS") != mac or current.get_attr("IFLA_MTU") != self.mtu:
            ipr.link("set", index=index, address=mac, mtu=self.mtu)
        own = str(self.subnet.network_address)
        for addr in ipr.get_addr(family=socket.AF_INET, index=index):
            if (addr.get_attr("IFA_ADDRESS"), addr["prefixlen"]) != (own, 32):
                ipr.addr("del", index=index, address=addr.get_attr("IFA_ADDRESS"), prefixlen=addr["prefixlen"])
        if not ipr.get_addr(family=socket.AF_INET, index=index, address=own):
            ipr.addr("add", index=index, address=own, prefixlen=32)
        ipr.link("set", index=index, state="up")

    def _check_device(self):
        if link_index(self._ipr, self.device) is None:
            log.warning("the VXLAN device %s is gone: re-creating it", self.device)
            self._setup_device()

    def _read_device(self, ipr):
        neighs, fdbs = set(), set()
        index = link_index(ipr, self.device)
        if index is None:
            raise RuntimeError("the VXLAN device %s is gone" % self.device)
        for n in ipr.get_neighbours(family=socket.AF_INET, ifindex=index):
            if n["state"] & NUD_PERMANENT and n.get_attr("NDA_LLADDR"):
                neighs.add(ks.Neigh(n.get_attr("NDA_DST"), n.get_attr("NDA_LLADDR").lower()))
        for n in ipr.fdb("dump", ifindex=index):
            if n["ifindex"] == index and n.get_attr("NDA_DST") and n["state"] & NUD_PERMANENT:
                fdbs.add(ks.Fdb(n.get_attr("NDA_LLADDR").lower(), n.get_attr("NDA_DST")))
        return neighs, fdbs


BACKEND = VxlanBackend
