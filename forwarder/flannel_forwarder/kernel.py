"""The vxlan and host-gw backends' common part: the kernel moves every packet, this keeps its state equal to the leases.

``KernelBackend`` (the base of backend/vxlan.py and backend/host_gw.py)
gives the lease keeper a ``KernelPeers`` table (the same
``replace``/``apply`` interface as the udp backend's PeerTable).  Every change
wakes a sync thread that reads the kernel's entries, compares them with
``kernel_state.desired()`` and applies ``kernel_state.plan()`` with pyroute2;
the same thread also syncs every `interval` seconds, so an entry removed by
hand (``ip neigh del``, ``bridge fdb del``, ``ip route del``) is back within
about a second.

The entries it owns: routes in the main table with protocol FLANNEL_PROTO
(so a route of anybody else is never removed), IPv4 and IPv6, and the
permanent neighbour and FDB entries of its own VXLAN devices
``flannel.<VNI>`` and, on a dual-stack network, ``flannel-v6.<VNI>``.

On SIGTERM the kernel state stays in place (a documented choice): the kernel
forwards on its own, so containers keep talking while the daemon restarts or
is upgraded, and the next start takes the entries over and corrects them.
``remove_all()`` (``flannel-forwarder --remove-kernel-state``, run by
retire.yml, and at every start for the state of a backend not in use) takes
it away.
"""

from __future__ import annotations

import errno
import logging
import socket
import threading

from . import kernel_state as ks
from .backend import Backend

log = logging.getLogger("flannel_forwarder.kernel")

FLANNEL_PROTO = 0x46  # rtnetlink protocol of our routes (70; not one of /etc/iproute2/rt_protos's)
NUD_PERMANENT = 0x80
NTF_SELF = 0x02
RTNH_F_ONLINK = 0x04
DEVICE_PREFIXES = ("flannel.", "flannel-v6.")  # flannel.<VNI>, and flannel-v6.<VNI> of a dual-stack network


def _ipr():
    from .iproute import IPRoute
    return IPRoute()


def link_index(ipr, name):
    found = ipr.link_lookup(ifname=name)
    return found[0] if found else None


def vxlan_devices(ipr):
    """{name: index} of every VXLAN device called flannel.<n> or flannel-v6.<n>."""
    out = {}
    for link in ipr.get_links():
        name = link.get_attr("IFLA_IFNAME") or ""
        info = link.get_attr("IFLA_LINKINFO")
        if name.startswith(DEVICE_PREFIXES) and info is not None and info.get_attr("IFLA_INFO_KIND") == "vxlan":
            out[name] = link["index"]
    return out


def our_routes(ipr):
    """The routes of the main table with our protocol, IPv4 then IPv6: [(dst/len, message)]."""
    out = []
    for family, default in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        for route in ipr.get_routes(family=family, table=254):
            if route["proto"] != FLANNEL_PROTO:
                continue
            out.append(("%s/%d" % (route.get_attr("RTA_DST") or default, route["dst_len"]), route))
    return out


def remove_all(keep_device=None, keep_routes=False, keep_devices=()):
    """Remove the kernel state of these backends: every flannel.<n> and flannel-v6.<n> VXLAN device but
    `keep_device` and `keep_devices`,
    and our routes unless `keep_routes` (a starting backend keeps them: its first sync corrects
    them, so a restart does not cut the traffic its routes carry). Returns what was removed, as
    text lines (for the log, or --remove-kernel-state)."""
    removed = []
    with _ipr() as ipr:
        for dst, route in ([] if keep_routes else our_routes(ipr)):
            try:
                ipr.route("del", dst=dst, table=254, proto=FLANNEL_PROTO, oif=route.get_attr("RTA_OIF"),
                          gateway=route.get_attr("RTA_GATEWAY"), family=route["family"])
                removed.append("route %s" % dst)
            except Exception as exc:  # pyroute2's NetlinkError; a route gone meanwhile is fine
                if getattr(exc, "code", None) != errno.ESRCH:
                    raise
        for name, index in sorted(vxlan_devices(ipr).items()):
            if name != keep_device and name not in keep_devices:
                ipr.link("del", index=index)
                removed.append("device %s" % name)
    return removed


class KernelPeers:
    """The peer table of a kernel backend: {subnet: peer}, each change wakes the sync (`on_change`)."""

    def __init__(self, on_change):
        self._peers = {}
        self._lock = threading.Lock()
        self._changed = True
        self._on_change = on_change

    def snapshot(self):
        return dict(self._peers)

    def __len__(self):
        return len(self._peers)

    def __contains__(self, subnet):
        return subnet in self._peers

    def replace(self, peers):
        with self._lock:
            self._peers = dict(peers)
            self._changed = True
        self._on_change()

    def apply(self, changes):
        with self._lock:
            peers = dict(self._peers)
            for subnet, peer in changes.items():
                if peer is None:
                    peers.pop(subnet, None)
                else:
                    peers[subnet] = peer
            self._peers = peers
            self._changed = True
        self._on_change()
        return list(changes)

    def take(self):
        """(peers, changed since the last take) for a sync."""
        with self._lock:
            peers, changed, self._changed = self._peers, self._changed, False
        return peers, changed


class KernelBackend(Backend):
    """A backend whose state is kernel entries kept equal to the peers by a sync thread. A subclass
    names its `device` (the VXLAN device it programs; None: routes on the underlay only) and sets it up
    in `_setup_device`, reads its entries in `_read_device` and checks it is still there in
    `_check_device`."""

    KEEPS_KERNEL_STATE = True
    device = None
    device6 = None  # vxlan on a dual-stack network: the IPv6 VXLAN device

    def __init__(self, config, host, settings=None, interval=1.0):
        super().__init__(config, host, settings)
        self.backend = config.backend  # the network config's Backend object, normalised
        self.public_ip = host.public_ip
        self.underlay = host.underlay  # interface name
        self.subnet = host.subnet  # own subnet (IPv4Network)
        self.mtu = host.mtu
        # The IPv6 side (a dual-stack network): the host's PublicIPv6 and IPv6 subnet, else None.
        self.dual = bool(config.dual_stack and host.public_ipv6 and host.subnet6 is not None)
        self.public_ipv6 = host.public_ipv6 if self.dual else None
        self.subnet6 = host.subnet6 if self.dual else None
        self.mtu6 = host.mtu6
        self.interval = interval
        self._wake = threading.Event()
        self.peers = KernelPeers(self._wake.set)
        self._stop = threading.Event()
        self._thread = None
        self._ipr = None
        self._healthy = False
        # metrics
        self.programmed = ks.EMPTY.count()
        self.syncs = 0
        self.repairs = 0  # entries that had to be set or removed although the peers had not changed
        self.sync_errors = 0
        self.unreachable = []
        self._warned = set()

    def peer_of(self, lease):
        return ks.peer_of(self.backend, lease)

    def peer6_of(self, lease):
        return ks.peer6_of(self.backend, lease)

    @property
    def healthy(self):
        return self._healthy

    # -- set-up --------------------------------------------------------------

    def start(self, peers):
        """Set up the device (vxlan), take over or remove what a previous run left, program `peers`."""
        self._ipr = _ipr()
        self.peers.replace(peers)
        gone = remove_all(keep_device=self.device, keep_routes=True, keep_devices=(self.device6,))
        if gone:
            log.info("removed kernel state not of this backend: %s", ", ".join(gone))
        self._setup_device()
        self.sync()
        self._healthy = True
        self._thread = threading.Thread(target=self._loop, name="kernel-sync", daemon=True)
        self._thread.start()
        return self

    def _underlay_index(self):
        index = link_index(self._ipr, self.underlay)
        if index is None:
            raise RuntimeError("the underlay interface %s is gone" % self.underlay)
        return index

    def _setup_device(self):
        """Create or correct the backend's device (vxlan); nothing for routes on the underlay."""

    def _check_device(self):
        """Before each sync: re-create the device if it went."""

    def _read_device(self, ipr):
        """(neighbour entries, FDB entries) of the backend's devices that are ours."""
        return set(), set()

    # -- sync ----------------------------------------------------------------

    def _direct(self):
        index = self._underlay_index()
        nets = ["%s/%d" % (a.get_attr("IFA_ADDRESS"), a["prefixlen"])
                for family in (socket.AF_INET, socket.AF_INET6) for a in self._ipr.get_addr(family=family, index=index)]
        return ks.on_link(nets)

    def read(self):
        """The entries the kernel holds that are ours (kernel_state.State)."""
        ipr = self._ipr
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
        neighs, fdbs = self._read_device(ipr)
        routes = set()
        for dst, route in our_routes(ipr):
            routes.add(ks.Route(dst, route.get_attr("RTA_GATEWAY"), names.get(route.get_attr("RTA_OIF")),
                                bool(route["flags"] & RTNH_F_ONLINK)))
        return ks.State(frozenset(neighs), frozenset(fdbs), frozenset(routes))

    def sync(self):
        """Make the kernel hold exactly the desired entries; returns the number of changes made."""
        peers, changed = self.peers.take()
        want, unreachable = ks.desired(self.backend, peers, self.device, self.underlay, self._direct(), self.device6)
        for subnet, ip in unreachable:
            if (subnet, ip) not in self._warned:
                log.error("peer %s at %s is not on a network of %s: host-gw needs the hosts on one L2 network "
                          "(use the vxlan backend, or DirectRouting with vxlan); not routed", subnet, ip,
                          self.underlay)
                self._warned.add((subnet, ip))
        self.unreachable = unreachable
        ops = ks.plan(want, self.read())
        errors = 0
        for op, entry in ops:
            try:
                self._do(op, entry)
                log.info("%s %s", "set" if op == "set" else "removed", _show(entry))
            except Exception as exc:  # a netlink error on one entry must not stop the others
                errors += 1
                log.warning("could not %s %s: %s", op, _show(entry), exc)
        self.syncs += 1
        self.sync_errors += errors
        if ops and not changed:
            self.repairs += len(ops) - errors
            log.warning("repaired %d kernel entries changed by someone else", len(ops) - errors)
        self.programmed = want.count()
        return len(ops)

    def _do(self, op, entry):
        ipr = self._ipr
        if isinstance(entry, ks.Neigh):
            v6 = ks.is_ipv6(entry.dst)
            index = link_index(ipr, self.device6 if v6 else self.device)
            family = socket.AF_INET6 if v6 else socket.AF_INET
            if op == "set":
                ipr.neigh("replace", ifindex=index, dst=entry.dst, lladdr=entry.mac, state=NUD_PERMANENT,
                          family=family)
            else:
                ipr.neigh("del", ifindex=index, dst=entry.dst, lladdr=entry.mac, family=family)
        elif isinstance(entry, ks.Fdb):
            index = link_index(ipr, self.device6 if ks.is_ipv6(entry.dst) else self.device)
            if op == "set":
                ipr.fdb("replace", ifindex=index, lladdr=entry.mac, dst=entry.dst, state=NUD_PERMANENT,
                        flags=NTF_SELF)
            else:
                ipr.fdb("del", ifindex=index, lladdr=entry.mac, dst=entry.dst)
        else:
            oif = link_index(ipr, entry.dev)
            args = dict(dst=entry.dst, gateway=entry.gateway, oif=oif, table=254, proto=FLANNEL_PROTO,
                        family=socket.AF_INET6 if ks.is_ipv6(entry.dst) else socket.AF_INET)
            if entry.onlink:
                args["flags"] = RTNH_F_ONLINK
            if op == "set":
                ipr.route("replace", **args)
            else:
                ipr.route("del", **args)

    def _loop(self):
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self._check_device()
                self.sync()
                self._healthy = True
            except Exception as exc:  # keep syncing: the next round may succeed
                self.sync_errors += 1
                self._healthy = False
                log.error("kernel sync failed: %s", exc)

    def follow_network(self, network):
        """A grown network needs nothing here: every peer has its own route."""

    def close(self):
        """Stop syncing; the kernel state stays (see the module's doc)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._ipr is not None:
            self._ipr.close()
            self._ipr = None

    def metrics(self):
        """[(name, kind, help, samples)]: the entries programmed, the syncs and repairs, unreachable peers."""
        return [
            ("kernel_entries", "gauge", "Kernel entries programmed for the peers, by kind.",
             [((("kind", kind),), n) for kind, n in sorted(self.programmed.items())]),
            ("kernel_syncs_total", "counter", "Comparisons of the kernel state with the leases.", [((), self.syncs)]),
            ("kernel_repairs_total", "counter", "Kernel entries restored or removed after someone else changed them.",
             [((), self.repairs)]),
            ("kernel_sync_errors_total", "counter", "Kernel entries that could not be set or removed.",
             [((), self.sync_errors)]),
            ("unreachable_peers", "gauge", "Peers not routed: not on the underlay's network (host-gw).",
             [((), len(self.unreachable))]),
        ]


def _show(entry):
    if isinstance(entry, ks.Neigh):
        return "neighbour %s lladdr %s" % (entry.dst, entry.mac)
    if isinstance(entry, ks.Fdb):
        return "fdb %s dst %s" % (entry.mac, entry.dst)
    return "route %s via %s dev %s%s" % (entry.dst, entry.gateway, entry.dev, " onlink" if entry.onlink else "")
