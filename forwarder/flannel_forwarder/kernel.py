"""The vxlan and host-gw backends: the kernel moves every packet, this keeps its state equal to the leases.

``KernelBackend`` is the peer table the lease keeper writes into (the same
``replace``/``apply`` interface as the udp backend's PeerTable).  Every change
wakes a sync thread that reads the kernel's entries, compares them with
``kernel_state.desired()`` and applies ``kernel_state.plan()`` with pyroute2;
the same thread also syncs every `interval` seconds, so an entry removed by
hand (``ip neigh del``, ``bridge fdb del``, ``ip route del``) is back within
about a second.

The entries it owns: routes in the main table with protocol FLANNEL_PROTO
(so a route of anybody else is never removed), and the permanent neighbour
and FDB entries of its own VXLAN device ``flannel.<VNI>``.

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

from ansible_collections.overlay.flannel.plugins.module_utils import backends

from . import kernel_state as ks

log = logging.getLogger("flannel_forwarder.kernel")

FLANNEL_PROTO = 0x46  # rtnetlink protocol of our routes (70; not one of /etc/iproute2/rt_protos's)
NUD_PERMANENT = 0x80
NTF_SELF = 0x02
RTNH_F_ONLINK = 0x04
DEVICE_PREFIX = "flannel."


def _ipr():
    from pyroute2 import IPRoute
    return IPRoute()


def _link_index(ipr, name):
    found = ipr.link_lookup(ifname=name)
    return found[0] if found else None


def vxlan_devices(ipr):
    """{name: index} of every VXLAN device called flannel.<n>."""
    out = {}
    for link in ipr.get_links():
        name = link.get_attr("IFLA_IFNAME") or ""
        info = link.get_attr("IFLA_LINKINFO")
        if name.startswith(DEVICE_PREFIX) and info is not None and info.get_attr("IFLA_INFO_KIND") == "vxlan":
            out[name] = link["index"]
    return out


def our_routes(ipr):
    """The routes of the main table with our protocol: [(dst/len, message)]."""
    out = []
    for route in ipr.get_routes(family=socket.AF_INET, table=254):
        if route["proto"] != FLANNEL_PROTO:
            continue
        out.append(("%s/%d" % (route.get_attr("RTA_DST") or "0.0.0.0", route["dst_len"]), route))
    return out


def remove_all(keep_device=None, keep_routes=False):
    """Remove the kernel state of these backends: every flannel.<n> VXLAN device but `keep_device`,
    and our routes unless `keep_routes` (a starting backend keeps them: its first sync corrects
    them, so a restart does not cut the traffic its routes carry). Returns what was removed, as
    text lines (for the log, or --remove-kernel-state)."""
    removed = []
    with _ipr() as ipr:
        for dst, route in ([] if keep_routes else our_routes(ipr)):
            try:
                ipr.route("del", dst=dst, table=254, proto=FLANNEL_PROTO, oif=route.get_attr("RTA_OIF"),
                          gateway=route.get_attr("RTA_GATEWAY"))
                removed.append("route %s" % dst)
            except Exception as exc:  # pyroute2's NetlinkError; a route gone meanwhile is fine
                if getattr(exc, "code", None) != errno.ESRCH:
                    raise
        for name, index in sorted(vxlan_devices(ipr).items()):
            if name != keep_device:
                ipr.link("del", index=index)
                removed.append("device %s" % name)
    return removed


class KernelBackend:
    """The peer table of the vxlan and host-gw backends, kept in the kernel by a sync thread."""

    def __init__(self, backend, public_ip, underlay, subnet, mtu, interval=1.0):
        self.backend = backend  # the network config's Backend object, normalised
        self.public_ip = public_ip
        self.underlay = underlay  # interface name
        self.subnet = subnet  # own subnet (IPv4Network)
        self.mtu = mtu
        self.interval = interval
        self.device = backends.device_name(backend)
        self._peers = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = None
        self._ipr = None
        self.failed = False
        self.healthy = False
        # metrics
        self.programmed = ks.EMPTY.count()
        self.syncs = 0
        self.repairs = 0  # entries that had to be set or removed although the peers had not changed
        self.sync_errors = 0
        self.unreachable = []
        self._warned = set()
        self._changed = True

    # -- the peer table interface of the lease keeper ------------------------

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
        self._wake.set()

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
        self._wake.set()
        return list(changes)

    # -- set-up --------------------------------------------------------------

    def start(self, peers):
        """Set up the device (vxlan), take over or remove what a previous run left, program `peers`."""
        self._ipr = _ipr()
        self._peers = dict(peers)
        gone = remove_all(keep_device=self.device, keep_routes=True)
        if gone:
            log.info("removed kernel state not of this backend: %s", ", ".join(gone))
        if self.device is not None:
            self._setup_device()
        self.sync()
        self.healthy = True
        self._thread = threading.Thread(target=self._loop, name="kernel-sync", daemon=True)
        self._thread.start()
        return self

    def _underlay_index(self):
        index = _link_index(self._ipr, self.underlay)
        if index is None:
            raise RuntimeError("the underlay interface %s is gone" % self.underlay)
        return index

    def _setup_device(self):
        """flannel.<VNI>: on the underlay, local = the public IP, the derived VtepMAC, learning as
        configured (off by default), MTU, the own subnet's network address as /32, up. A device of
        the same name that differs in what cannot be changed in place is re-created."""
        ipr, b = self._ipr, self.backend
        link = self._underlay_index()
        mac = backends.vtep_mac(self.public_ip, b["VNI"])
        want = {"IFLA_VXLAN_ID": b["VNI"], "IFLA_VXLAN_LOCAL": self.public_ip, "IFLA_VXLAN_LINK": link,
                "IFLA_VXLAN_PORT": backends.port(b), "IFLA_VXLAN_LEARNING": 1 if b["Learning"] else 0}
        index = _link_index(ipr, self.device)
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
            index = _link_index(ipr, self.device)
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
        self.vtep_mac = mac

    # -- sync ----------------------------------------------------------------

    def _direct(self):
        nets = ["%s/%d" % (a.get_attr("IFA_ADDRESS"), a["prefixlen"])
                for a in self._ipr.get_addr(family=socket.AF_INET, index=self._underlay_index())]
        return ks.on_link(nets)

    def read(self):
        """The entries the kernel holds that are ours (kernel_state.State)."""
        ipr = self._ipr
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
        neighs, fdbs, routes = set(), set(), set()
        if self.device is not None:
            index = _link_index(ipr, self.device)
            if index is None:
                raise RuntimeError("the VXLAN device %s is gone" % self.device)
            for n in ipr.get_neighbours(family=socket.AF_INET, ifindex=index):
                if n["state"] & NUD_PERMANENT and n.get_attr("NDA_LLADDR"):
                    neighs.add(ks.Neigh(n.get_attr("NDA_DST"), n.get_attr("NDA_LLADDR").lower()))
            for n in ipr.fdb("dump", ifindex=index):
                if n["ifindex"] == index and n.get_attr("NDA_DST") and n["state"] & NUD_PERMANENT:
                    fdbs.add(ks.Fdb(n.get_attr("NDA_LLADDR").lower(), n.get_attr("NDA_DST")))
        for dst, route in our_routes(ipr):
            routes.add(ks.Route(dst, route.get_attr("RTA_GATEWAY"), names.get(route.get_attr("RTA_OIF")),
                                bool(route["flags"] & RTNH_F_ONLINK)))
        return ks.State(frozenset(neighs), frozenset(fdbs), frozenset(routes))

    def sync(self):
        """Make the kernel hold exactly the desired entries; returns the number of changes made."""
        with self._lock:
            peers, changed, self._changed = self._peers, self._changed, False
        want, unreachable = ks.desired(self.backend, peers, self.device, self.underlay, self._direct())
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
            index = _link_index(ipr, self.device)
            if op == "set":
                ipr.neigh("replace", ifindex=index, dst=entry.dst, lladdr=entry.mac, state=NUD_PERMANENT)
            else:
                ipr.neigh("del", ifindex=index, dst=entry.dst, lladdr=entry.mac)
        elif isinstance(entry, ks.Fdb):
            index = _link_index(ipr, self.device)
            if op == "set":
                ipr.fdb("replace", ifindex=index, lladdr=entry.mac, dst=entry.dst, state=NUD_PERMANENT,
                        flags=NTF_SELF)
            else:
                ipr.fdb("del", ifindex=index, lladdr=entry.mac, dst=entry.dst)
        else:
            oif = _link_index(ipr, entry.dev)
            args = dict(dst=entry.dst, gateway=entry.gateway, oif=oif, table=254, proto=FLANNEL_PROTO)
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
                if self.device is not None and _link_index(self._ipr, self.device) is None:
                    log.warning("the VXLAN device %s is gone: re-creating it", self.device)
                    self._setup_device()
                self.sync()
                self.healthy = True
            except Exception as exc:  # keep syncing: the next round may succeed
                self.sync_errors += 1
                self.healthy = False
                log.error("kernel sync failed: %s", exc)

    def set_network(self, network):
        """A grown network needs nothing here: every peer has its own route."""
        return False

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
        """(name, kind, help, samples) for health.render_metrics."""
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
