"""What a lease entry in etcd means to this host: one classification for listings and watch events (pure).

flannel's lease watcher turns a snapshot and the watch events after it into
one stream of events; here every entry under ``<prefix>/subnets/``, from a
listing or from a watch event, goes through ``classify`` (a key and its
value, None for a deleted key) or ``classify_lease`` (an entry a listing
already read), and comes out as one ``LeaseEvent``:

- ``PEER``: a usable lease of another host: route its subnet to ``peer``
  (the running backend's peer of the lease);
- ``GONE``: the key of another host's subnet was deleted: unroute it;
- ``OWN``: this host's own subnet's key (``lease`` is None when it was
  deleted): the lease keeper's business, never a peer;
- ``IGNORED``: never a peer, for the ``reason`` given (``why`` says it in
  words for the log); a subnet it names is unrouted, as a re-list would
  leave it.

On a dual-stack network a PEER's peer carries the IPv6 part of the lease
(its ``v6``: the IPv6 subnet, PublicIPv6 and, for vxlan, BackendV6Data's
VtepMAC) when that part is usable; a lease of an IPv4-only host (no IPv6
half in its key) is a peer over IPv4 only, and a lease whose IPv6 part is
garbage or half-written (no PublicIPv6, no BackendV6Data, an IPv6 half
outside the network) is a peer over IPv4 only too, with ``why6`` saying
why its IPv6 part is skipped (the keeper logs it with the key).

No I/O and no logging here: the lease keeper logs each event once, the
same way whichever path it came by.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Callable, NamedTuple, Optional

from ansible_collections.overlay.flannel.plugins.module_utils import backends
from ansible_collections.overlay.flannel.plugins.module_utils.backends import BackendError
from ansible_collections.overlay.flannel.plugins.module_utils.leases import read_leases
from ansible_collections.overlay.flannel.plugins.module_utils.subnets import SubnetError, parse_lease_key

PEER = "peer"
GONE = "gone"
OWN = "own"
IGNORED = "ignored"

# Why an entry is IGNORED.
GARBAGE = "garbage"  # a value (or key) that is no lease
NOT_A_LEASE_KEY = "not-a-lease-key"  # a deleted key that named no subnet (garbage going away)
STALE_OWN = "stale-own"  # a second lease of this host's public IP (the subnet module cleans those)
OUTSIDE = "outside"  # no host subnet of the network (outside it, or of another prefix length)
OTHER_BACKEND = "other-backend"  # a lease of another BackendType (flanneld skips those too)
BAD_BACKEND_DATA = "bad-backend-data"  # of this backend, but its BackendData cannot be used


class Here(NamedTuple):
    """The point of view of a classification: this host and the network it runs."""
    prefix: str  # the etcd prefix, e.g. /coreos.com/network
    subnet: ipaddress.IPv4Network  # this host's own subnet
    public_ip: Optional[str]  # this host's public IP (None: no second lease of ours is recognised)
    config: Any  # the network config (netconfig.NetworkConfig) in force
    peer_of: Callable  # lease -> the running backend's peer; raises BackendError for an unusable lease
    # lease -> the IPv6 part of its peer (raises BackendError for an unusable one); None on an IPv4-only network
    peer6_of: Optional[Callable] = None


class LeaseEvent(NamedTuple):
    kind: str  # PEER, GONE, OWN or IGNORED
    key: str
    subnet: Optional[ipaddress.IPv4Network] = None
    peer: Any = None  # PEER: the backend's peer of the lease
    lease: Any = None  # the Lease read (PEER, OWN put, IGNORED with a readable value)
    reason: Optional[str] = None  # IGNORED: one of the reasons above
    why: Optional[str] = None  # IGNORED: the reason in words
    why6: Optional[str] = None  # PEER on a dual-stack network: why the lease's IPv6 part is not used (None: it is)

    def change(self):
        """(subnet, peer or None) this event makes in the peer table, or None when it makes none."""
        if self.kind == PEER:
            return self.subnet, self.peer
        if self.kind == GONE or (self.kind == IGNORED and self.subnet is not None):
            return self.subnet, None
        return None


def _key_text(key):
    return key.decode("utf-8", "replace") if isinstance(key, bytes) else key


def _subnet_of_key(prefix, key):
    try:
        return parse_lease_key(prefix, key)
    except SubnetError:
        return None


def classify(key, value, here: Here, lease_id=0, mod_revision=0) -> LeaseEvent:
    """The event of one entry under <prefix>/subnets/: its key and value (bytes or str; None for a
    deleted key) with its etcd lease id and modification revision."""
    key = _key_text(key)
    if value is None:
        subnet = _subnet_of_key(here.prefix, key)
        if subnet is None:
            return LeaseEvent(IGNORED, key, reason=NOT_A_LEASE_KEY, why="a deleted key that names no subnet")
        return LeaseEvent(OWN if subnet == here.subnet else GONE, key, subnet)
    leases, bad = read_leases(here.prefix, [(key, value, lease_id, mod_revision)])
    if bad:
        return unreadable(key, bad[0].error, here)
    return classify_lease(leases[0], here)


def unreadable(key, error, here: Here) -> LeaseEvent:
    """The event of an entry whose key or value is no lease (`error` says why). A key that still names
    a subnet unroutes it: a peer whose value turned to garbage is no longer routed."""
    key = _key_text(key)
    return LeaseEvent(IGNORED, key, _subnet_of_key(here.prefix, key), reason=GARBAGE, why=error)


def classify_lease(lease, here: Here) -> LeaseEvent:
    """The event of a readable lease (leases.Lease)."""
    key, subnet = _key_text(lease.key), lease.subnet
    if subnet == here.subnet:
        return LeaseEvent(OWN, key, subnet, lease=lease)
    if here.public_ip is not None and lease.public_ip == here.public_ip:
        return LeaseEvent(IGNORED, key, subnet, lease=lease, reason=STALE_OWN,
                          why="a second lease of this host's public IP %s" % lease.public_ip)
    config = here.config
    if not config.contains_lease(subnet):
        # A key outside the network or of another prefix length (a /16, a /0) is no host's subnet:
        # routing it would also let its holder pass the anti-spoofing check with any inner source,
        # this host's own subnet included.
        return LeaseEvent(IGNORED, key, subnet, lease=lease, reason=OUTSIDE,
                          why="%s is no host subnet of the network %s" % (subnet, config.network))
    lease_type = lease.attrs.get("BackendType")
    if not backends.lease_type_matches(config.backend_type, lease_type):
        return LeaseEvent(IGNORED, key, subnet, lease=lease, reason=OTHER_BACKEND,
                          why="lease of a %s host under a %s network" % (lease_type or backends.UDP,
                                                                         config.backend_type))
    try:
        peer = here.peer_of(lease)
    except BackendError as exc:
        return LeaseEvent(IGNORED, key, subnet, lease=lease, reason=BAD_BACKEND_DATA, why=str(exc))
    why6 = None
    if here.peer6_of is not None and lease.subnet6 is not None:
        if not config.contains_lease6(lease.subnet6):
            why6 = "%s is no host subnet of the IPv6 network %s" % (lease.subnet6, config.ipv6_network)
        else:
            try:
                peer = peer._replace(v6=here.peer6_of(lease))
            except BackendError as exc:
                why6 = str(exc)
    return LeaseEvent(PEER, key, subnet, peer=peer, lease=lease, why6=why6)


def of_listing(snapshot, here: Here):
    """The events of a listing (store.Snapshot): its unreadable entries, then its leases."""
    return [unreadable(bad.key, bad.error, here) for bad in snapshot.bad] + \
        [classify_lease(lease, here) for lease in snapshot.leases]


def table(events):
    """{subnet: peer} of a listing's events: the peer table it gives."""
    return {event.subnet: event.peer for event in events if event.kind == PEER}


def peers_from(leases, own_subnet, config, peer_of, public_ip=None, peer6_of=None):
    """{subnet: peer} of readable leases (leases.Lease) seen from the host of `own_subnet` (and `public_ip`):
    every lease but its own that is a usable host subnet of `config`."""
    here = Here(None, own_subnet, public_ip, config, peer_of, peer6_of)
    return table(classify_lease(lease, here) for lease in leases)
