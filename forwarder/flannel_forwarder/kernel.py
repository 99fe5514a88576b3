"""The vxlan and host-gw backends' common part: the kernel moves every packet, this keeps its state equal to the leases.

``KernelBackend`` (the base of backend/vxlan.py and backend/host_gw.py)
gives the lease keeper a ``KernelPeers`` table (the same
``replace``/``apply`` interface as the udp backend's PeerTable). A sync
thread reads the kernel's entries (rtnl.py's reader: a few fields of each,
nothing kept), compares them with ``kernel_state.desired()`` and applies
``kernel_state.plan()`` with pyroute2. It syncs when the peers change, when
the kernel announces a change that concerns its entries (``concerns``: an
entry of ours removed by hand with ``ip neigh del``, ``bridge fdb del`` or
``ip route del`` is back at once), and every `interval` seconds (10) in
case an announcement was lost; while nothing changes it does not read the
kernel's tables (it did once a second, which cost the pinned cores of a
busy host a few percent).

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
import os
import select
import socket
import threading
import time

from . import kernel_state as ks
from . import rtnl
from .backend import Backend

log = logging.getLogger("flannel_forwarder.kernel")

FLANNEL_PROTO = 0x46  # rtnetlink protocol of our routes (70; not one of /etc/iproute2/rt_protos's)
NUD_PERMANENT = 0x80
NTF_SELF = 0x02
RTNH_F_ONLINK = 0x04
DEVICE_PREFIXES = ("flannel.", "flannel-v6.")  # flannel.<VNI>, and flannel-v6.<VNI> of a dual-stack network
MAIN_TABLE = 254
RESYNC_INTERVAL = 10.0  # seconds between two reads of the kernel's tables when nothing announced a change


def _ipr():
    from .iproute import IPRoute
    return IPRoute()


def link_index(ipr, name):
    found = ipr.link_lookup(ifname=name)
    return found[0] if found else None


def vxlan_devices(reader):
    """{name: index} of every VXLAN device called flannel.<n> or flannel-v6.<n> (`reader`: an rtnl.Reader)."""
    return {link.name: link.index for link in reader.links()
            if link.name.startswith(DEVICE_PREFIXES) and link.kind == "vxlan"}


def our_routes(reader):
    """The routes of the main table with our protocol, IPv4 then IPv6: [rtnl.RouteEntry]."""
    return [route for family in (socket.AF_INET, socket.AF_INET6) for route in reader.routes(family)
            if route.table == MAIN_TABLE and route.proto == FLANNEL_PROTO]


def concerns(event, devices, underlay, route_dsts):
    """Does this kernel announcement (rtnl.Event) concern a kernel backend's entries? `devices`: the indexes
    of its VXLAN devices, `underlay`: the underlay's index, `route_dsts`: the destinations it routes. A link
    of ours (or named as ours) or the underlay changed, an address of the underlay (host-gw's and
    DirectRouting's test of who is on its network), a route of ours or to a destination of ours, a
    neighbour or FDB entry of our devices. Not: other devices' neighbours (ARP churn) and routes."""
    rec = event.record
    if isinstance(rec, rtnl.Link):
        return rec.index in devices or rec.index == underlay or rec.name.startswith(DEVICE_PREFIXES)
    if isinstance(rec, rtnl.Addr):
        return rec.index == underlay
    if isinstance(rec, rtnl.RouteEntry):
        return rec.table == MAIN_TABLE and (rec.proto == FLANNEL_PROTO or rec.dst in route_dsts)
    if isinstance(rec, rtnl.NeighEntry):
        return rec.ifindex in devices
    return False


def remove_all(keep_device=None, keep_routes=False, keep_devices=(), ipr=None, reader=None):
    """Remove the kernel state of these backends: every flannel.<n> and flannel-v6.<n> VXLAN device but
    `keep_device` and `keep_devices`,
    and our routes unless `keep_routes` (a starting backend keeps them: its first sync corrects
    them, so a restart does not cut the traffic its routes carry). Returns what was removed, as
    text lines (for the log, or --remove-kernel-state). `ipr`, `reader`: a pyroute2 IPRoute and an rtnl.Reader
    to use (else opened and closed here)."""
    if ipr is None or reader is None:
        with _ipr() as own_ipr, rtnl.Reader() as own_reader:
            return remove_all(keep_device, keep_routes, keep_devices, own_ipr, own_reader)
    removed = []
    for route in ([] if keep_routes else our_routes(reader)):
        try:
            ipr.route("del", dst=route.dst, table=MAIN_TABLE, proto=FLANNEL_PROTO, oif=route.oif,
                      gateway=route.gateway, family=route.family)
            removed.append("route %s" % route.dst)
        except Exception as exc:  # pyroute2's NetlinkError; a route gone meanwhile is fine
            if getattr(exc, "code", None) != errno.ESRCH:
                raise
    for name, index in sorted(vxlan_devices(reader).items()):
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

    def __init__(self, config, host, settings=None, interval=RESYNC_INTERVAL):
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
        self.interval = interval  # seconds between two syncs when nothing announced a change
        self._wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)  # a peer change, or close()
        self.peers = KernelPeers(self._poke)
        self._stop = threading.Event()
        self._thread = None
        self._ipr = None  # pyroute2, for the changes
        self._reader = None  # rtnl.Reader, for reading the kernel's entries
        self._monitor = None  # rtnl.Monitor: the kernel's announcements of changes
        self._indexes = {}  # {device name: index} as of the last read
        self._route_dsts = frozenset()  # the destinations of the routes the last sync wanted
        self._healthy = False
        # metrics
        self.programmed = ks.EMPTY.count()
        self.syncs = 0
        self.repairs = 0  # entries that had to be set or removed although the peers had not changed
        self.sync_errors = 0
        self.events = 0  # kernel announcements that concerned our entries
        self.unreachable = []
        self._warned = set()

    def _poke(self):
        if self._wake is not None:
            os.eventfd_write(self._wake, 1)

    def peer_of(self, lease):
        return ks.peer_of(self.backend, lease)

    def peer6_of(self, lease):
        return ks.peer6_of(self.backend, lease)

    @property
    def healthy(self):
        return self._healthy

    # -- set-up --------------------------------------------------------------

    def start(self, peers):
        """Set up the device (vxlan), take over or remove what a previous run left, program `peers`; returns once
        that is done (raising what failed). The sync thread does it: pyroute2 keeps an event loop and a socket
        per thread that uses an IPRoute (about 1 MiB), so one thread makes every change."""
        self._reader = rtnl.Reader()
        self._monitor = rtnl.Monitor()  # before the first sync: no change after its read goes unseen
        self.peers.replace(peers)
        started, failed = threading.Event(), []

        def run():
            try:
                self._ipr = _ipr()
                try:
                    gone = remove_all(keep_device=self.device, keep_routes=True, keep_devices=(self.device6,),
                                      ipr=self._ipr, reader=self._reader)
                    if gone:
                        log.info("removed kernel state not of this backend: %s", ", ".join(gone))
                    self._setup_device()
                    self.sync()
                    self._healthy = True
                except BaseException as exc:  # handed to start(), which raises it
                    failed.append(exc)
                    return
                finally:
                    started.set()
                self._loop()
            finally:  # closed by the thread that used it
                ipr, self._ipr = self._ipr, None
                if ipr is not None:
                    ipr.close()

        self._thread = threading.Thread(target=run, name="kernel-sync", daemon=True)
        self._thread.start()
        started.wait()
        if failed:
            raise failed[0]
        return self

    def _underlay_index(self):
        index = self._indexes.get(self.underlay) or link_index(self._ipr, self.underlay)
        if index is None:
            raise RuntimeError("the underlay interface %s is gone" % self.underlay)
        return index

    def _setup_device(self):
        """Create or correct the backend's device (vxlan); nothing for routes on the underlay."""

    def _check_device(self):
        """Before each sync: re-create the device if it went."""

    def _read_device(self, reader, indexes):
        """(neighbour entries, FDB entries) of the backend's devices that are ours; `indexes`: {name: index}."""
        return set(), set()

    def _device_indexes(self):
        return {self._indexes.get(name) for name in (self.device, self.device6) if name} - {None}

    # -- sync ----------------------------------------------------------------

    def _direct(self):
        index = self._underlay_index()
        return ks.on_link(["%s/%d" % (a.address, a.prefixlen) for a in self._reader.addresses()
                           if a.index == index and a.address])

    def read(self):
        """The entries the kernel holds that are ours (kernel_state.State)."""
        reader = self._reader
        links = reader.links()
        self._indexes = {link.name: link.index for link in links}
        names = {link.index: link.name for link in links}
        neighs, fdbs = self._read_device(reader, self._indexes)
        routes = {ks.Route(r.dst, r.gateway, names.get(r.oif), bool(r.flags & RTNH_F_ONLINK))
                  for r in our_routes(reader)}
        return ks.State(frozenset(neighs), frozenset(fdbs), frozenset(routes))

    def sync(self):
        """Make the kernel hold exactly the desired entries; returns the number of changes made."""
        peers, changed = self.peers.take()
        have = self.read()
        want, unreachable = ks.desired(self.backend, peers, self.device, self.underlay, self._direct(), self.device6)
        for subnet, ip in unreachable:
            if (subnet, ip) not in self._warned:
                log.error("peer %s at %s is not on a network of %s: host-gw needs the hosts on one L2 network "
                          "(use the vxlan backend, or DirectRouting with vxlan); not routed", subnet, ip,
                          self.underlay)
                self._warned.add((subnet, ip))
        self.unreachable = unreachable
        self._route_dsts = frozenset(route.dst for route in want.routes)
        ops = ks.plan(want, have)
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

    def _index(self, name):
        index = self._indexes.get(name)
        return index if index is not None else link_index(self._ipr, name)

    def _do(self, op, entry):
        ipr = self._ipr
        if isinstance(entry, ks.Neigh):
            v6 = ks.is_ipv6(entry.dst)
            index = self._index(self.device6 if v6 else self.device)
            family = socket.AF_INET6 if v6 else socket.AF_INET
            if op == "set":
                ipr.neigh("replace", ifindex=index, dst=entry.dst, lladdr=entry.mac, state=NUD_PERMANENT,
                          family=family)
            else:
                ipr.neigh("del", ifindex=index, dst=entry.dst, lladdr=entry.mac, family=family)
        elif isinstance(entry, ks.Fdb):
            index = self._index(self.device6 if ks.is_ipv6(entry.dst) else self.device)
            if op == "set":
                ipr.fdb("replace", ifindex=index, lladdr=entry.mac, dst=entry.dst, state=NUD_PERMANENT,
                        flags=NTF_SELF)
            else:
                ipr.fdb("del", ifindex=index, lladdr=entry.mac, dst=entry.dst)
        else:
            oif = self._index(entry.dev)
            args = dict(dst=entry.dst, gateway=entry.gateway, oif=oif, table=MAIN_TABLE, proto=FLANNEL_PROTO,
                        family=socket.AF_INET6 if ks.is_ipv6(entry.dst) else socket.AF_INET)
            if entry.onlink:
                args["flags"] = RTNH_F_ONLINK
            if op == "set":
                ipr.route("replace", **args)
            else:
                ipr.route("del", **args)

    def _needed(self, timeout):
        """Wait up to `timeout` seconds for a reason to sync: a peer change (or close()), or a kernel
        announcement that concerns our entries. True if one came."""
        ready, _w, _x = select.select([self._wake, self._monitor], [], [], timeout)
        needed = False
        if self._wake in ready:
            try:
                os.eventfd_read(self._wake)
            except BlockingIOError:
                pass
            needed = True
        if self._monitor in ready:
            devices, underlay, dsts = self._device_indexes(), self._indexes.get(self.underlay), self._route_dsts
            ours, overflowed = self._monitor.drain(lambda event: concerns(event, devices, underlay, dsts))
            if overflowed:
                log.info("kernel announcements overflowed the socket: reading the tables")
            self.events += ours
            needed = needed or overflowed or ours > 0
        return needed

    def _loop(self):
        due = time.monotonic() + self.interval
        while not self._stop.is_set():
            try:
                needed = self._needed(max(0.0, due - time.monotonic()))
            except Exception as exc:  # the monitor socket failed: fall back on the interval
                log.error("reading the kernel's announcements failed: %s", exc)
                needed = False
                self._stop.wait(self.interval)
            if self._stop.is_set():
                return
            if not needed and time.monotonic() < due:
                continue
            due = time.monotonic() + self.interval
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
        self._poke()
        if self._thread is not None:
            self._thread.join(5)
        for name in ("_reader", "_monitor"):
            handle = getattr(self, name)
            if handle is not None:
                handle.close()
                setattr(self, name, None)
        wake, self._wake = self._wake, None
        os.close(wake)

    def metrics(self):
        """[(name, kind, help, samples)]: the entries programmed, the syncs and repairs, unreachable peers."""
        return [
            ("kernel_entries", "gauge", "Kernel entries programmed for the peers, by kind.",
             [((("kind", kind),), n) for kind, n in sorted(self.programmed.items())]),
            ("kernel_syncs_total", "counter", "Comparisons of the kernel state with the leases.", [((), self.syncs)]),
            ("kernel_events_total", "counter", "Kernel announcements of changes to the entries or devices of the backend.",
             [((), self.events)]),
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
