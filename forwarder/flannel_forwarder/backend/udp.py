"""The udp backend: flanneld's udp wire format, every packet moved by this process (the parts: ../udp/).

The TUN device (its route covers the whole network), the underlay UDP
socket on the config's Backend.Port (or --port), and the loops between
them, with the way of running their steps chosen once (udp/ways). Its peer
of a lease is (PublicIP, port); its table is a routes.PeerTable that the
loops read without locks. Nothing stays behind when it stops.
"""

from __future__ import annotations

import logging

from ansible_collections.overlay.flannel.plugins.module_utils import backends

from ..health import data_path_metrics
from ..routes import Peer, PeerTable
from ..stats import Stats
from . import Backend

log = logging.getLogger("flannel_forwarder")


def udp_peer_of(port):
    """The udp backend's peer of a lease: Peer(PublicIP, `port`) (every udp host listens on the network's
    port). The lease keeper has already skipped leases of another BackendType."""
    def peer_of(lease):
        return Peer(lease.public_ip, port)
    return peer_of


class UdpBackend(Backend):
    TYPE = backends.UDP

    def __init__(self, config, host, settings):
        super().__init__(config, host, settings)
        self.port = settings.port or config.backend_port
        self.peer_of = udp_peer_of(self.port)
        self.peers = PeerTable()
        self.stats = Stats()
        self._conn = self._tun = self._data_path = None

    def start(self, peers):
        from ..kernel import remove_all
        from ..udp import ways
        from ..udp.conn import UdpConn
        from ..udp.loops import DataPath
        from ..udp.tun.device import TunDevice

        gone = remove_all()  # a vxlan device or host-gw routes of an earlier backend
        if gone:
            log.info("removed the kernel state of an earlier backend: %s", ", ".join(gone))
        self.peers.replace(peers)
        way = ways.choose()
        log.info("udp data path: the %s way (%s)", way.NAME, way.DESCRIPTION)
        host = self.host
        self._conn = UdpConn(host.public_ip, self.port, offload=way.OFFLOAD)
        self._tun = TunDevice(self.settings.tun_name, network=str(self.config.network), subnet=str(host.subnet),
                              mtu=host.mtu, offload=way.OFFLOAD)
        self._data_path = DataPath(self._tun, self._conn, self.peers, self.stats, way=way)
        self._data_path.start()

    def describe(self):
        return "forwarding via %s:%d and %s" % (self.host.public_ip, self.port, self._tun.name)

    def follow_network(self, network):
        """Route the grown or moved network into the TUN."""
        self._tun.set_network(network)

    @property
    def healthy(self):
        return self._data_path is not None and self._data_path.healthy

    @property
    def failed(self):
        return self._data_path is not None and self._data_path.failed

    def metrics(self):
        return data_path_metrics(self.stats.snapshot())

    def close(self):
        """The data path's loops, then the TUN (its route goes with it), then the socket."""
        for part in (self._data_path, self._tun, self._conn):
            if part is not None:
                part.close()


BACKEND = UdpBackend
