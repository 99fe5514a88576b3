"""The backends of the daemon: one interface, one implementation per Backend.Type, chosen once by name.

As flannel's ``pkg/backend`` (a Backend registered by name, its Network run
for the lease) and sshuttle's ``methods/`` (a BaseMethod, one file per
method), and as ``udp/ways`` chooses its way: ``get(btype)`` gives the
class of the network config's ``Backend.Type``, from the module named in
``MODULES``:

* ``udp``: udp.py, the TUN, the UDP socket and the loops of ../udp/ in
  this process (flanneld's udp wire format);
* ``vxlan``: vxlan.py, the VXLAN device ``flannel.<VNI>`` and its
  neighbour, FDB and route entries, kept by ../kernel.py;
* ``host-gw``: host_gw.py, a route via each peer's public IP, kept by
  ../kernel.py.

What the daemon does with a backend, in this order: ``peer_of`` (and
``peer6_of`` on a dual-stack network) for the lease keeper's listing, ``start(peers)``, then ``peers`` (the table the
lease keeper writes every change into), ``follow_network`` when the config
grows or moves, ``healthy``/``failed``, ``describe()`` for the status line,
``metrics()`` for /metrics, and ``close()`` at the end. Nothing in the
daemon asks which backend it runs.

The second address family (a dual-stack network: vxlan and host-gw; udp
has none) is in the data, not in new branches: the ``Host`` (its
public_ipv6, subnet6 and mtu6), the peer a backend makes of a lease (its
``v6`` part from PublicIPv6 and BackendV6Data, peer6_of, which lease_events
calls where it reads the lease), and the entries a kernel backend keeps
(the second VXLAN device ``flannel-v6.<VNI>``, IPv6 neighbours, FDB
entries and routes, from kernel_state.desired).

Words: a *device* is a kernel network interface (the TUN ``flannel0``, the
VXLAN device ``flannel.<VNI>``); the *underlay* is the interface the public
IP is on; a *peer* is what a backend needs of another host's lease.
"""

from __future__ import annotations

import importlib
import ipaddress
from typing import NamedTuple, Optional

from ansible_collections.overlay.flannel.plugins.module_utils import backends

# Backend.Type -> the module of this package that implements it (its class is BACKEND).
MODULES = {backends.UDP: "udp", backends.VXLAN: "vxlan", backends.HOST_GW: "host_gw"}


class Host(NamedTuple):
    """This host as a backend sees it; the IPv6 fields are set on a dual-stack network only."""
    public_ip: str
    underlay: str  # the underlay interface's name
    subnet: ipaddress.IPv4Network  # the own lease's subnet
    mtu: int  # of the data path's device, and FLANNEL_MTU (choose_mtu)
    public_ipv6: Optional[str] = None  # the lease's PublicIPv6 (--public-ipv6, else the underlay's global address)
    subnet6: Optional[ipaddress.IPv6Network] = None  # the own lease's IPv6 half
    mtu6: Optional[int] = None  # of the IPv6 VXLAN device (the underlay's less 70, or --mtu if smaller)


class Backend:
    """The interface every backend implements; `config` is the network config (netconfig.NetworkConfig),
    `settings` the daemon's (config.Settings)."""

    TYPE = None  # the Backend.Type it runs
    KEEPS_KERNEL_STATE = False  # True: what it set up stays when the daemon stops (see kernel.py)

    def __init__(self, config, host: Host, settings):
        self.config = config
        self.host = host
        self.settings = settings
        # The peer table the lease keeper writes into: replace(), apply(), snapshot(), `in`, len().
        self.peers = None

    def peer_of(self, lease):
        """This backend's peer of another host's lease of this backend's type; raises
        backends.BackendError for a lease whose BackendData it cannot use (the lease is skipped)."""
        raise NotImplementedError

    def peer6_of(self, lease):
        """The IPv6 part of the peer of a dual-stack lease (one with an IPv6 half), for a dual-stack network;
        raises backends.BackendError for one it cannot use (the lease is a peer over IPv4 only)."""
        raise NotImplementedError

    def start(self, peers):
        """Set up (taking over or removing what an earlier run left) and serve `peers` ({subnet: peer})."""
        raise NotImplementedError

    def describe(self):
        """A few words for the status line and the ready log line, after start()."""
        raise NotImplementedError

    def follow_network(self, network):
        """The network config's Network grew or moved (the own subnet still in it)."""

    @property
    def healthy(self):
        """Serving now (for /healthz)."""
        raise NotImplementedError

    @property
    def failed(self):
        """Stopped for good (a bug): the daemon exits."""
        return False

    def metrics(self):
        """[(name, kind, help, samples)] of this backend, for health.render_metrics."""
        return []

    def close(self):
        """Stop; free what start() took (also after a start() that failed half way)."""


def get(btype):
    """The Backend class of the Backend.Type `btype`."""
    if btype not in MODULES:
        raise ValueError("no such backend: %s (one of %s)" % (btype, ", ".join(MODULES)))
    return importlib.import_module("%s.%s" % (__name__, MODULES[btype])).BACKEND
