"""The TUN device: opened with python-pytun, offloads asked for by ioctl, addressed and routed with pyroute2."""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import logging
import os
import struct

import pytun

from ...iproute import IPRoute
from .io import TunIO
from .virtio import VNET_HDR_LEN

log = logging.getLogger(__name__)

# <linux/if_tun.h>
TUNSETOFFLOAD = 0x400454D0
TUNSETVNETHDRSZ = 0x400454D8
TUN_F_CSUM = 0x01
TUN_F_TSO4 = 0x02
TUN_F_TSO6 = 0x04
TUN_F_TSO_ECN = 0x08
TUN_F_USO4 = 0x20
TUN_F_USO6 = 0x40  # the kernel only takes USO4 and USO6 together

# What we ask for, best first.  TSO6 is left out on purpose: the overlay is
# IPv4 only (an IPv6 packet is dropped anyway).  USO (UDP segmentation,
# kernel >= 6.2) is optional.
OFFLOAD_CHOICES = (
    TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO_ECN | TUN_F_USO4 | TUN_F_USO6,
    TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO_ECN,
    TUN_F_CSUM | TUN_F_TSO4,
)


class TunDevice(TunIO):
    """A configured TUN device for the overlay.

    ``TunDevice(name, network="10.5.0.0/16", subnet="10.5.1.0/24", mtu=1472)``
    creates the device, asks for TSO/checksum offload (``offload=True``;
    falls back to one plain packet per read when the kernel refuses), puts
    the subnet's network address on it as a /32, sets the MTU, brings it up
    and routes the whole *network* into it (``set_network`` moves that
    route to a changed network).  ``close()`` undoes all that.

    ``vnet_hdr`` tells whether every read and write carries a 10-byte
    virtio_net_hdr in front of the packet; ``reader()`` and ``writer()``
    (tun.io) hide it, and the offloads behind it, from the loops.
    """

    def __init__(self, name: str, *, network, subnet, mtu: int, offload: bool = True):
        self.network = ipaddress.IPv4Network(network)
        self.subnet = ipaddress.IPv4Network(subnet)
        self.address = self.subnet.network_address
        self.mtu = mtu
        self.offload_flags = 0
        self.vnet_hdr = False
        self._route_added = False
        flags = pytun.IFF_TUN | pytun.IFF_NO_PI
        self._dev = pytun.TunTapDevice(name, flags=flags | (pytun.IFF_VNET_HDR if offload else 0))
        self.name = self._dev.name
        self.fd = self._dev.fileno()
        try:
            if offload:
                self._enable_offload()
            self._configure()
        except BaseException:
            self.close()
            raise

    def _enable_offload(self) -> None:
        try:
            fcntl.ioctl(self.fd, TUNSETVNETHDRSZ, struct.pack("i", VNET_HDR_LEN))
        except OSError as e:
            log.warning("TUNSETVNETHDRSZ refused (%s): no offloads", e)
            self._reopen_plain()
            return
        for choice in OFFLOAD_CHOICES:
            try:
                fcntl.ioctl(self.fd, TUNSETOFFLOAD, choice)
            except OSError as e:
                if e.errno != errno.EINVAL:
                    log.warning("TUNSETOFFLOAD failed (%s)", e)
                continue
            self.offload_flags = choice
            self.vnet_hdr = True
            return
        log.warning("kernel refused TUN offloads: one packet per read")
        # Keep the virtio header (reads/writes stay valid) but with no offloads
        # there is nothing to gain from it; a plain device is simpler.
        self._reopen_plain()

    def _reopen_plain(self) -> None:
        self._dev.close()
        self._dev = pytun.TunTapDevice(self.name, flags=pytun.IFF_TUN | pytun.IFF_NO_PI)
        self.fd = self._dev.fileno()
        self.vnet_hdr = False
        self.offload_flags = 0

    def _configure(self) -> None:
        # No IPv6 on an IPv4 overlay device: saves the data path from reading
        # router solicitations and MLD reports.  accept_local: the ICMP
        # errors we write back come from the device's own address (as
        # flanneld's do), which the kernel would otherwise drop as martians.
        for key, value in (("ipv6/conf/{}/disable_ipv6", "1"), ("ipv4/conf/{}/accept_local", "1")):
            try:
                with open("/proc/sys/net/" + key.format(self.name), "w") as f:
                    f.write(value)
            except OSError as e:
                log.debug("sysctl %s: %s", key, e)
        with IPRoute() as ipr:
            idx = ipr.link_lookup(ifname=self.name)[0]
            ipr.link("set", index=idx, mtu=self.mtu)
            ipr.addr("add", index=idx, address=str(self.address), prefixlen=32)
            ipr.link("set", index=idx, state="up")
            ipr.route("add", dst=str(self.network), oif=idx)
            self._route_added = True

    def set_network(self, network) -> bool:
        """Route a new overlay *network* (a grown or moved config) into the device instead of the old one.

        The new route is added before the old one goes, so traffic to the
        part both cover never lacks a route.  Returns whether anything changed.
        """
        network = ipaddress.IPv4Network(network)
        if network == self.network:
            return False
        with IPRoute() as ipr:
            idx = ipr.link_lookup(ifname=self.name)[0]
            ipr.route("replace", dst=str(network), oif=idx)
            old, self.network = self.network, network
            try:
                ipr.route("del", dst=str(old), oif=idx)
            except Exception as e:  # removed by hand meanwhile
                log.debug("route del %s: %s", old, e)
        return True

    @property
    def address_int(self) -> int:
        return int(self.address)

    def set_nonblocking(self, on: bool = True) -> None:
        fl = fcntl.fcntl(self.fd, fcntl.F_GETFL)
        fcntl.fcntl(self.fd, fcntl.F_SETFL, (fl | os.O_NONBLOCK) if on else (fl & ~os.O_NONBLOCK))

    def fileno(self) -> int:
        return self.fd

    def close(self) -> None:
        """Remove the route and the device; safe to call twice."""
        dev, self._dev = getattr(self, "_dev", None), None
        if dev is None:
            return
        try:
            with IPRoute() as ipr:
                found = ipr.link_lookup(ifname=self.name)
                if found and self._route_added:
                    try:
                        ipr.route("del", dst=str(self.network), oif=found[0])
                    except Exception as e:  # already gone with the link, or removed by hand
                        log.debug("route del: %s", e)
                if found:
                    try:
                        ipr.link("del", index=found[0])
                    except Exception as e:
                        log.debug("link del: %s", e)
        finally:
            dev.close()
