"""The forwarder's control plane: its own lease and the peer table, kept from etcd.

- At start: find this host's lease by its public IP; if there is none,
  re-claim the subnet named in subnet.env when it is free, atomically. It
  never picks a random subnet: that is the subnet module's job.
- Own lease: renewed when less than the renew margin remains; re-created on
  the same subnet if it vanished; if another host took the subnet, the
  keeper reports a fatal error and the daemon stops forwarding. Those
  decisions are module_utils/renewal.py's (pure, unit-tested); the keeper
  schedules the checks and reads and writes etcd through the store.
- The kind of the own lease follows etcd: a key turned into a reservation
  (renew.yml -e flannel_subnet_ttl=0) is no longer renewed, a reservation
  turned back into a lease is renewed on its new etcd lease, and a key that
  changed under a renewal (its old etcd lease revoked) is taken as it is now,
  never overwritten. A vanished key is re-created in the kind last seen (a
  reservation, or an etcd lease of the TTL it was granted); the configured
  TTL only applies when none was seen.
- Peers: a watch on <prefix>/ (the leases and the config) from the
  snapshot's revision, re-listed after a compaction, reconnected with backoff
  across endpoints. While etcd is unreachable the last peer table keeps
  forwarding. Every lease entry, listed or watched, is classified by
  lease_events (pure) and taken by one method (_take) with one set of log
  lines; the peers are the running backend's (its peer_of), and the table
  they go into is the backend's too.
- The network config is followed while running (see config_change): a grown
  or moved network that still holds this host's subnet is applied at once
  (the daemon moves the TUN's route and rewrites subnet.env; peers in the new
  part are routed); a changed backend type or port makes the daemon exit to
  restart on it; a network that no longer holds this host's subnet is not
  applied (the host must be re-leased) and is logged.

All etcd access goes through the collection's store (one source of truth).
"""

from __future__ import annotations

import logging
import random
import threading
import time

from ansible_collections.overlay.flannel.plugins.module_utils import backends
from ansible_collections.overlay.flannel.plugins.module_utils import etcd_client as etcd
from ansible_collections.overlay.flannel.plugins.module_utils import renewal
from ansible_collections.overlay.flannel.plugins.module_utils.leases import LeaseError
from ansible_collections.overlay.flannel.plugins.module_utils.netconfig import ConfigError, dumps
from ansible_collections.overlay.flannel.plugins.module_utils.netconfig import parse as parse_config
from ansible_collections.overlay.flannel.plugins.module_utils.store import (
    DEFAULT_RENEW_MARGIN,
    DEFAULT_TTL,
    StoreError,
    host_attrs,
)

from . import lease_events as ev

log = logging.getLogger("flannel_forwarder.lease")


class NoLease(Exception):
    """This host has no lease and none can be re-claimed: the playbook must run first."""


class NoPublicIPv6(NoLease):
    """The network is dual-stack and this host has no IPv6 address to lease its IPv6 half with."""


class LeaseLost(Exception):
    """Another host holds our subnet now."""


class ConfigChanged(Exception):
    """The network config changed in a way the running daemon cannot follow (its backend)."""


def config_change(old, new, own_subnet, own_subnet6=None):
    """What a running forwarder does about a changed network config: (action, why).

    "keep": nothing it uses changed; "follow": apply `new` now (the network,
    SubnetMin/SubnetMax changed, the own subnet is still a host subnet of
    it); "restart": the Backend object changed (its type or an option: the
    data path is chosen at start), or the network turned dual-stack or
    back to IPv4-only (the lease's key changes: the subnet module re-keys
    it, the restarted daemon takes the new key and sets up or removes its
    IPv6 side); "refuse": the own subnet (or, `own_subnet6` given, its IPv6
    half) is no host subnet of `new` (this host needs a new lease first:
    relet.yml). The IPv6 network growing or its range changing is followed
    as the IPv4 one is.
    """
    if new == old:
        return "keep", "unchanged"
    if new.backend != old.backend:
        return "restart", "backend %s -> %s" % (_describe(old.backend), _describe(new.backend))
    if new.dual_stack != old.dual_stack:
        return "restart", ("network turned dual-stack (IPv6Network %s)" % new.ipv6_network if new.dual_stack
                           else "network turned IPv4-only (IPv6Network %s dropped)" % old.ipv6_network)
    if not new.contains_lease(own_subnet):
        return "refuse", "this host's subnet %s is no host subnet of the new network %s" % (own_subnet, new.network)
    if new.dual_stack and own_subnet6 is not None and not new.contains_lease6(own_subnet6):
        return "refuse", "this host's IPv6 subnet %s is no host subnet of the new IPv6 network %s" % (
            own_subnet6, new.ipv6_network)
    moves = ["network %s -> %s" % (old.network, new.network)] if new.network != old.network else []
    if new.ipv6_network != old.ipv6_network:
        moves.append("IPv6 network %s -> %s" % (old.ipv6_network, new.ipv6_network))
    return "follow", ", ".join(moves) or "subnet range changed within %s" % new.network


def _describe(backend):
    """'vxlan VNI=1 Port=0 ...': a Backend object for a log line."""
    return " ".join([backend["Type"]] + ["%s=%s" % (k, dumps(v)) for k, v in sorted(backend.items()) if k != "Type"])


class LeaseKeeper:
    def __init__(self, store, public_ip, renew_margin=DEFAULT_RENEW_MARGIN, ttl=DEFAULT_TTL, check_interval=10.0,
                 rng=None, public_ipv6=None):
        self.store = store
        self.public_ip = public_ip
        self.public_ipv6 = public_ipv6  # this host's IPv6 address, for a dual-stack network's lease (None: none)
        self.renew_margin = renew_margin
        self.ttl = ttl  # of a lease re-created here (the playbook's flannel_subnet_ttl)
        self.check_interval = check_interval
        self.rng = rng or random.Random()
        self.config = None
        self.lease = None
        self.peers = None
        self.peer_of = None  # lease -> the running backend's peer (initial_peers)
        self.peer6_of = None  # lease -> the IPv6 part of its peer on a dual-stack network (initial_peers)
        self.subnet6 = None  # the IPv6 half of the own lease the daemon runs with
        # {subnet: the key of its peer's lease}: a re-keyed lease (a network turning dual-stack or back, a new
        # IPv6 half) puts its new key before deleting the old one, and the old key's deletion is no removal
        self.peer_keys = {}
        self.revision = 0
        self.expires_at = None  # monotonic deadline of our etcd lease; None for a reservation
        self.seen_ttl = None  # granted TTL of the own lease last seen in etcd, 0 for a reservation; None: not yet
        self.fatal = None
        self.watch_reconnects = 0
        self._claim_snapshot = None
        self.etcd_connected = False
        self._stop = threading.Event()
        # Wakes the renewal before its time: stop(), or the own key seen on a new etcd lease (renew.yml).
        self._recheck = threading.Event()
        self._on_config = None
        self._watch = None
        self._threads = []
        self._lock = threading.Lock()

    # -- start ---------------------------------------------------------------

    def claim(self, previous=None, previous6=None):
        """Find (or re-claim `previous`, with the IPv6 half `previous6` on a dual-stack network) the lease of
        this host. Returns the Lease. Raises NoLease (NoPublicIPv6: a dual-stack network, no IPv6 address)."""
        snap = self.store.snapshot()
        self.config = self.store.require_config(snap)
        if self.config.dual_stack and self.public_ipv6 is None:
            raise NoPublicIPv6("the network %s is dual-stack (EnableIPv6, IPv6Network %s) and this host has no IPv6 "
                               "address: give --public-ipv6 / FLANNELD_PUBLIC_IPV6 (default: the global IPv6 address "
                               "of the underlay interface, which has none)" % (self.config.network,
                                                                               self.config.ipv6_network))
        mine = [lease for lease in snap.leases_of(self.public_ip) if self.config.contains_lease(lease.subnet)]
        if mine:
            lease = mine[0]
            log.info("lease found subnet=%s key=%s", lease.subnet, lease.key)
        elif previous is not None:
            try:
                out = self.store.acquire(self.public_ip, requested=previous, snap=snap, ttl=self.ttl,
                                         previous6=previous6, **self.backend_attrs())
            except LeaseError as exc:
                raise NoLease("no lease for %s in etcd and the subnet %s of the subnet file cannot be re-claimed (%s): "
                              "run playbooks/site.yml (or playbooks/relet.yml) for this host"
                              % (self.public_ip, previous, exc)) from None
            lease = out.lease
            snap = self.store.snapshot()
            log.info("lease re-claimed subnet=%s from the subnet file", lease.subnet)
        else:
            raise NoLease("no lease for %s in etcd under %s and no previous subnet to re-claim: "
                          "run playbooks/site.yml for this host (it leases the subnet)"
                          % (self.public_ip, self.store.subnets_prefix))
        self.lease = self._find(snap.leases, lease.subnet) or lease
        self.revision = snap.revision
        self._claim_snapshot = snap
        self.etcd_connected = True
        self._update_expiry()
        self._own_attrs(previous6)
        self.subnet6 = self.lease.subnet6
        return self.lease

    def backend_attrs(self):
        """BackendType and BackendData of this host's lease under the current config (the subnet module
        computes the same, backends.lease_data, so neither rewrites what the other wrote), and on a dual-stack
        network this host's PublicIPv6 (the store adds BackendV6Data, backends.lease_data6)."""
        attrs = {"backend_type": self.config.backend_type,
                 "backend_data": backends.lease_data(self.config.backend, self.public_ip)}
        if self.public_ipv6 is not None:
            attrs["public_ipv6"] = self.public_ipv6
        elif self.lease is not None and self.lease.attrs.get("PublicIPv6"):
            attrs["public_ipv6"] = self.lease.attrs["PublicIPv6"]
        return attrs

    def _own_attrs(self, previous6=None):
        """A lease written for another backend (the config changed since) is rewritten in place: same key,
        same etcd lease, this backend's type and data, so that peers program this host right. On a
        dual-stack network the same goes for PublicIPv6 and BackendV6Data, and a lease without its IPv6
        half (or with one the network does not hold) is re-keyed onto the pair (the store keeps its IPv4
        subnet and its IPv6 half when free, else takes `previous6` when free, else a free one) in one
        transaction, as the subnet module does; on an IPv4-only network a pair loses its IPv6 half."""
        want = self.backend_attrs()
        attrs, lease, config = self.lease.attrs, self.lease, self.config
        wanted = host_attrs(config, [lease], self.public_ip, want["backend_type"], want["backend_data"],
                            want.get("public_ipv6"))
        if attrs == wanted and config.fits(lease.subnet, lease.subnet6):
            return
        if (attrs.get("BackendType"), attrs.get("BackendData")) != (want["backend_type"], want["backend_data"]):
            log.info("own lease on %s is for backend %s: rewriting it for %s", lease.subnet,
                     attrs.get("BackendType") or "udp", want["backend_type"])
        else:
            log.info("own lease %s: rewriting it for the %s network (IPv6 half %s, PublicIPv6 %s)", lease.key,
                     "dual-stack" if config.dual_stack else "IPv4-only", lease.subnet6, want.get("public_ipv6"))
        try:
            out = self.store.acquire(self.public_ip, requested=self.lease.subnet, ttl=self.recreate_ttl(),
                                     previous6=lease.subnet6 or previous6, **want)
        except LeaseError as exc:
            raise NoLease("the lease on %s cannot be rewritten for the %s backend: %s"
                          % (self.lease.subnet, want["backend_type"], exc)) from None
        self.lease = self._find(self.store.snapshot().leases, out.lease.subnet) or out.lease
        self._update_expiry()

    def initial_peers(self, peer_of, peer6_of=None):
        """The peer table from the listing claim() read; the watch starts right after its revision.
        `peer_of(lease)` makes the running backend's peer of a lease (raises BackendError to skip it);
        `peer6_of(lease)` the IPv6 part of it on a dual-stack network (raises BackendError to use the lease
        over IPv4 only)."""
        self.peer_of = peer_of
        self.peer6_of = peer6_of
        return self._listed(self._claim_snapshot, {})

    @staticmethod
    def _find(leases, subnet):
        for lease in leases:
            if lease.subnet == subnet:
                return lease
        return None

    def _update_expiry(self):
        lease = self.lease
        if not lease.lease_id:
            self.expires_at = None
            self.seen_ttl = 0
            return
        remaining, granted = self.store.ttls([lease]).get(lease.lease_id, (-1, 0))
        self.expires_at = time.monotonic() + remaining if remaining > 0 else time.monotonic()
        if remaining > 0 and granted > 0:
            self.seen_ttl = granted

    def margin(self):
        """The renew margin in force for the own etcd lease (renewal.effective_margin)."""
        return renewal.effective_margin(self.renew_margin, self.seen_ttl)

    def recreate_ttl(self):
        """The TTL of a lease re-created here: the kind last seen in etcd, else the configured one."""
        return self.ttl if self.seen_ttl is None else self.seen_ttl

    def watch_endpoint(self):
        """The URL of the etcd member the peer watch is on (None before it opened)."""
        watch = self._watch
        return watch.endpoint if watch is not None else None

    def lease_endpoint(self):
        """The URL of the etcd member that answered the last lease request."""
        try:
            return self.store.endpoint
        except AttributeError:
            return None

    def seconds_left(self):
        """Seconds our lease has left; None for a reservation."""
        if self.expires_at is None:
            return None
        return max(0.0, self.expires_at - time.monotonic())

    # -- running -------------------------------------------------------------

    def start(self, peer_table, on_fatal, on_config=None):
        """Run the renewal and the watch in background threads.  on_config(config) is called (from the watch
        thread) after a changed network config was taken over (see config_change)."""
        self.peers = peer_table
        self._on_fatal = on_fatal
        self._on_config = on_config
        # The watch stream gets connections of its own (see EtcdClient.clone).
        self._watch_store = self.store.clone()
        for target, name in ((self._renew_loop, "lease-renew"), (self._watch_loop, "peer-watch")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self):
        self._stop.set()
        self._recheck.set()
        watch = self._watch
        if watch is not None:
            watch.cancel()
        for thread in self._threads:
            thread.join(5)
        if self._threads:
            self._watch_store.close()

    def _fail(self, exc):
        if self.fatal is None:
            self.fatal = str(exc)
            log.error("fatal: %s", exc)
            self._on_fatal(exc)

    def _renew_loop(self):
        failures = 0
        while not self._sleep(self._renew_wait() if not failures else min(self.check_interval, 2.0 ** failures)):
            try:
                self.check_own_lease()
                self.etcd_connected = True
                if failures:
                    log.info("lease check works again after %d failures", failures)
                failures = 0
            except LeaseLost as exc:
                self._fail(exc)
                return
            except etcd.EtcdError as exc:
                self.etcd_connected = False
                failures += 1
                # Once per outage at warning level; the retries (backing off up to the check interval) at debug.
                (log.warning if failures == 1 else log.debug)("lease check failed, will retry: %s", exc)

    def _sleep(self, seconds):
        """Wait `seconds`, or less when woken (see _recheck); True when stopping."""
        self._recheck.wait(seconds)
        self._recheck.clear()
        return self._stop.is_set()

    def _renew_wait(self):
        left = self.seconds_left()
        if left is None:
            return self.check_interval
        # Wake up when renewal becomes due, and never sleep past it.
        return max(1.0, min(self.check_interval, left - self.margin() + 1.0))

    def check_own_lease(self):
        """Renew when due; re-create when gone; LeaseLost when another host holds the subnet (see renewal)."""
        with self._lock:
            own = self.lease
            found, ttl = self.store.lease_at(own.key)
            decision = renewal.check_own_lease(own, found, ttl, self.public_ip, self.renew_margin)
            if decision.action == renewal.TAKEN:
                raise LeaseLost(decision.why)
            if decision.action == renewal.VANISHED:
                self._recreate(decision)
                return
            lease = decision.lease
            if lease.lease_id != own.lease_id:
                log.info("own lease on %s is %s now", own.subnet, decision.why if decision.action == renewal.RESERVED
                         else "on etcd lease %x" % lease.lease_id)
            self.lease = lease
            if decision.action == renewal.RESERVED:
                self.expires_at = None
                self.seen_ttl = 0
                return
            self.seen_ttl = decision.granted
            if decision.action == renewal.RENEW:
                decision = renewal.renewed(lease, self.store.keepalive(lease), decision.granted)
                if decision.action == renewal.VANISHED:
                    self._recreate(decision)
                    return
                log.info("lease renewed subnet=%s ttl=%d", own.subnet, decision.remaining)
            self.expires_at = time.monotonic() + decision.remaining

    def _recreate(self, vanished):
        """After a VANISHED decision: a fresh listing decides (renewal.own_lease_gone)."""
        subnet = self.lease.subnet
        decision = renewal.own_lease_gone(subnet, self.store.snapshot().leases_of(self.public_ip), vanished.dead)
        if decision.action == renewal.MOVED:
            raise LeaseLost(decision.why)
        if decision.action == renewal.ADOPT:
            self._same_pair(decision.lease)
            self.lease = decision.lease
            self._update_expiry()
            log.info("own lease on %s %s", subnet, decision.why)
            return
        ttl = self.recreate_ttl()
        log.warning("own lease %s on %s: re-creating it (%s)", vanished.why, subnet,
                    "a reservation" if not ttl else "ttl %ds" % ttl)
        try:
            out = self.store.acquire(self.public_ip, requested=subnet, ttl=ttl, previous6=self.lease.subnet6,
                                     **self.backend_attrs())
        except LeaseError as exc:
            raise LeaseLost("subnet %s cannot be re-created: %s" % (subnet, exc)) from None
        except StoreError as exc:
            raise LeaseLost(str(exc)) from None
        self._same_pair(out.lease)
        self.lease = out.lease
        self._update_expiry()

    def _same_pair(self, lease):
        """The own lease as found now keeps the IPv6 half the daemon runs with; else (re-keyed onto another
        IPv6 half, or with its half added or dropped) LeaseLost: the daemon exits and restarts on it, as
        for an IPv4 subnet that moved."""
        if lease.subnet6 != self.subnet6:
            raise LeaseLost("this host's IPv6 subnet changed from %s to %s (key %s); exiting to restart on it"
                            % (self.subnet6, lease.subnet6, lease.key))

    def _watch_loop(self):
        backoff = 0.5
        while not self._stop.is_set():
            try:
                self._watch = self._watch_store.watch(self.revision + 1)
                for revision, events in self._watch:
                    backoff = 0.5
                    self.etcd_connected = True
                    self._apply(events)
                    self.revision = max(self.revision, revision)
                    if self.fatal:
                        return
                if self._stop.is_set():
                    return
            except etcd.EtcdCompacted as exc:
                log.warning("watch: %s; listing again", exc)
                try:
                    self._relist()
                    continue
                except etcd.EtcdError as relist_exc:
                    # Never let the watch thread die: back off and list again below.
                    self.etcd_connected = False
                    log.warning("watch: listing again failed: %s; retrying in %.1fs", relist_exc, backoff)
            except etcd.EtcdError as exc:
                self.etcd_connected = False
                log.warning("watch: %s; reconnecting in %.1fs", exc, backoff)
            self.watch_reconnects += 1
            if self._stop.wait(backoff * (0.5 + self.rng.random())):
                return
            backoff = min(backoff * 2, 5.0)
            if self.etcd_connected is False:
                try:
                    self._relist()
                except etcd.EtcdError:
                    pass

    def _relist(self):
        snap = self.store.snapshot()
        if snap.config is not None:
            self._follow_config(snap.config)  # (one changed while the watch was away)
        self.peers.replace(self._listed(snap, self.peers.snapshot()))
        self.revision = snap.revision
        self.etcd_connected = True
        log.info("peers listed count=%d revision=%d", len(self.peers.snapshot()), snap.revision)

    # -- the one lease-change path ---------------------------------------------
    #
    # A listing (at start, after a compaction or an outage) and a watch response are both turned into
    # lease_events (lease_events.classify / of_listing) and taken by _take, one event at a time: the same
    # rules and the same log lines whichever way a lease arrived. A listing's table replaces the peer
    # table whole (what it leaves out is gone); a watch response's changes go in one swap.

    def _here(self, prefix):
        return ev.Here(prefix, self.lease.subnet, self.public_ip, self.config, self.peer_of,
                       self.peer6_of if self.config.dual_stack else None)

    def _listed(self, snap, current):
        """The peer table of a listing `snap`, the peer table being `current` ({subnet: peer})."""
        changes = {}
        self.peer_keys = {}
        for event in ev.of_listing(snap, self._here(self.store.prefix)):
            self._take(event, changes, current.get, watched=False)
        for subnet in current:
            if subnet not in changes:  # (an entry the listing has, ignored, was logged by _take)
                log.info("peer removed subnet=%s", subnet)
        return {subnet: peer for subnet, peer in changes.items() if peer is not None}

    def _apply(self, events):
        """Apply one watch response: its peer changes go into the table in one swap (PeerTable.apply), so a
        burst of N events costs one table copy, not N.  The events are taken in order; of several events
        on one subnet the last wins, as applying them one by one would leave it."""
        prefix = self.store.prefix
        changes = {}  # subnet -> Peer, or None to remove
        current = self.peers.snapshot()

        def held(subnet):
            return current.get(subnet)

        try:
            for event in events:
                if self._apply_event(prefix, event, changes, held):
                    current = self.peers.snapshot()  # a config event applied the changes before it, or re-listed
        finally:
            if changes:
                self.peers.apply(changes)

    def _follow_config(self, new):
        """Take over a changed network config when config_change allows; True when peers need a re-list."""
        action, why = config_change(self.config, new, self.lease.subnet, self.lease.subnet6)
        if action == "keep":
            return False
        if action == "restart":
            self._fail(ConfigChanged("the network config's %s; exiting to restart on it" % why))
            return False
        if action == "refuse":
            log.error("network config changed but not applied: %s; re-lease this host (playbooks/relet.yml)", why)
            return False
        log.info("network config changed: %s", why)
        self.config = new
        if self._on_config is not None:
            self._on_config(new)
        return True

    def _config_event(self, event):
        if event.kind == "delete":
            log.warning("the network config %s was deleted; keeping %s", self.store.config_key, self.config.network)
            return
        try:
            new = parse_config(event.kv.value)
        except ConfigError as exc:
            log.warning("ignoring the network config %s: %s", self.store.config_key, exc)
            return
        if self._follow_config(new):
            # Leases the old config left out (a grown network) are peers now, and the reverse.
            try:
                self._relist()
            except etcd.EtcdError as exc:
                log.warning("listing the peers under the new config failed, the next re-list applies it: %s", exc)
                self.etcd_connected = False

    def _apply_event(self, prefix, event, changes, held):
        """One watch event: the config's key is followed, a lease key classified and taken (_take).
        `held(subnet)`: the peer the table holds for `subnet`, `changes` not counted (falsy: none).
        Returns True after a config event (the peer table may have changed under `held`)."""
        kv = event.kv
        key = kv.key.decode("utf-8", "replace") if isinstance(kv.key, bytes) else kv.key
        if key == self.store.config_key:
            if changes:  # lease events before it in this response are applied under the old config first
                self.peers.apply(dict(changes))
                changes.clear()
            self._config_event(event)
            return True
        if not key.startswith(self.store.subnets_prefix):
            return False  # another key under the prefix (flannel's subnets6/, ...)
        value = None if event.kind == "delete" else kv.value
        self._take(ev.classify(kv.key, value, self._here(prefix), kv.lease, kv.mod_revision), changes, held,
                   watched=True)
        return False

    def _take(self, event, changes, held, watched):
        """Take one lease event: its change of the peer table into `changes` ({subnet: peer or None}),
        logged once (a peer set or removed only when the table changes). `held(subnet)`: the peer the
        table holds for `subnet`, `changes` not counted. An own-key event is checked (another host holds
        our subnet: fatal); from a watch it is also taken over (a new etcd lease, a reservation) or,
        deleted, makes the key re-created now."""
        if event.kind == ev.OWN:
            self._own_key(event, watched)
            return
        if event.kind == ev.IGNORED:
            if event.reason == ev.GARBAGE:
                log.warning("ignoring unreadable lease %s: %s", event.key, event.why)
            elif event.reason in (ev.OUTSIDE, ev.OTHER_BACKEND, ev.BAD_BACKEND_DATA):
                log.warning("ignoring lease %s: %s", event.key, event.why)
            else:  # a stale second lease of ours, a deleted garbage key: nothing to say above debug
                log.debug("ignoring %s: %s", event.key, event.why)
        change = event.change()
        if change is None:
            return
        subnet, peer = change
        if event.kind == ev.PEER:
            self.peer_keys[subnet] = event.key
        elif event.kind == ev.GONE:
            if self.peer_keys.get(subnet, event.key) != event.key:
                log.debug("lease %s deleted: %s is routed by its key %s now", event.key, subnet,
                          self.peer_keys[subnet])
                return
            self.peer_keys.pop(subnet, None)
        before = changes[subnet] if subnet in changes else held(subnet)
        changes[subnet] = peer
        if peer is None:
            if before:
                log.info("peer removed subnet=%s", subnet)
        elif peer != before:
            v6 = getattr(peer, "v6", None)
            if v6 is not None:
                log.info("peer set subnet=%s public_ip=%s ipv6_subnet=%s public_ipv6=%s", subnet,
                         event.lease.public_ip, v6.subnet, v6.public_ip)
            else:
                log.info("peer set subnet=%s public_ip=%s", subnet, event.lease.public_ip)
            if event.why6:
                log.warning("lease %s: its IPv6 part is not used (%s); routed over IPv4 only", event.key, event.why6)

    def _own_key(self, event, watched):
        lease = event.lease
        if lease is None:
            # Our own key went away (expired or released): re-create it now.
            try:
                self.check_own_lease()
            except LeaseLost as exc:
                self._fail(exc)
            except etcd.EtcdError as exc:
                log.warning("own lease deleted, re-creating failed, will retry: %s", exc)
            return
        decision = renewal.seen_own_key(self.lease, lease, self.public_ip)
        if decision.action == renewal.TAKEN:
            self._fail(LeaseLost(decision.why))
            return
        if not watched:
            # A listing may be older than the own lease claim() just rewrote; the renewal reads the key.
            return
        try:
            self._same_pair(lease)
        except LeaseLost as exc:
            self._fail(exc)
            return
        if not lease.lease_id and self.lease.lease_id:
            # Now a reservation: nothing left to renew (the renewal's next check confirms it).
            self.expires_at = None
            self.seen_ttl = 0
        elif lease.lease_id and lease.lease_id != self.lease.lease_id:
            # On a new etcd lease (renew.yml), whose TTL may be shorter than what the renewal counts down
            # (or, after a reservation, counts none): the renewal reads it now, not at its next check.
            self._recheck.set()
        self.lease = lease
