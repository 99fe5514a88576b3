# -*- coding: utf-8 -*-
# Copyright: overlay.flannel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Keeping a lease: the renewal rule, and what a host does when it checks its own lease.

Pure logic: no etcd, no clock. The inputs are what etcd returned (what the
host's key holds now, the TTL of its etcd lease, the host's leases in a
fresh listing), the host's public IP and the renew margin; the output is a
Decision. The forwarder's lease keeper schedules the checks and does the
I/O through store.FlannelStore; store.acquire (the subnet module) renews by
the same rule.

A check of the own lease, in order:

    check_own_lease(own, found, ttl)   read the key and its etcd lease's TTL
      TAKEN     another host (or garbage) holds the subnet: give up
      RESERVED  a reservation: nothing to renew
      KEEP      alive, renewal not due yet
      RENEW     due: keepalive, then renewed(lease, ttl): KEEP or VANISHED
      VANISHED  the key is gone, or its etcd lease died: list the host's leases
    own_lease_gone(subnet, mine, dead)  what the listing says
      MOVED     the host holds another subnet now (re-leased): give up, restart on it
      ADOPT     the key is there again, or changed kind meanwhile: take it as it is
      RECREATE  gone: write it again on the same subnet
    seen_own_key(own, found)            a change of the own key seen by the watch
      TAKEN, or ADOPT
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.overlay.flannel.plugins.module_utils.leases import BadEntry

TAKEN = "taken"
RESERVED = "reserved"
KEEP = "keep"
RENEW = "renew"
VANISHED = "vanished"
MOVED = "moved"
ADOPT = "adopt"
RECREATE = "recreate"


def effective_margin(margin, granted):
    """The renew margin for an etcd lease granted `granted` seconds: `margin`, but half the TTL when the
    margin is not below it (a lease turned to a shorter TTL than the configured margin, renew.yml -e
    flannel_subnet_ttl=20, is renewed at half its TTL, not at every check). `granted` 0: not known."""
    if granted and margin >= granted:
        return max(1, granted // 2)
    return margin


def renewal_due(remaining, granted, margin):
    """The renewal rule: renew an etcd lease when fewer than the (effective) margin's seconds remain."""
    return remaining < effective_margin(margin, granted)


class Decision(object):
    """`action` (one of the constants above) about `lease` (the lease to hold from now on, when there is
    one); `remaining` and `granted`: its etcd lease's TTL now and as granted (KEEP, RENEW); `dead`: the
    etcd lease found dead (VANISHED; None when the key itself went); `why`: the words for a log line or
    an error."""

    __slots__ = ("action", "lease", "remaining", "granted", "dead", "why")

    def __init__(self, action, lease=None, remaining=None, granted=None, dead=None, why=""):
        self.action = action
        self.lease = lease
        self.remaining = remaining
        self.granted = granted
        self.dead = dead
        self.why = why

    def __repr__(self):
        return "Decision(%s, %r, %s)" % (self.action, self.lease, self.why)


def _holder_changed(own, found, public_ip):
    """A TAKEN Decision when `found` (a Lease or a BadEntry on the own key) is no lease of `public_ip`."""
    if isinstance(found, BadEntry):
        # Garbage over our key: no longer a lease of ours, and the subnet module treats it as taken,
        # so site.yml gives this host another subnet.
        return Decision(TAKEN, why="subnet %s: the key %s holds an unreadable value now; run playbooks/site.yml "
                                   "for this host (it leases another subnet)" % (own.subnet, own.key))
    if found.public_ip != public_ip:
        return Decision(TAKEN, found, why="subnet %s is now leased to %s" % (own.subnet, found.public_ip))
    return None


def check_own_lease(own, found, ttl, public_ip, margin):
    """What to do about the own lease `own` after reading its key.

    `found`: what the key holds now, a Lease, a BadEntry (an unreadable value) or None (no key);
    `ttl`: (remaining, granted) of the etcd lease of `found`, as store.FlannelStore.ttls gives it
    ((-1, 0) for one that is gone), None for a key without one; `margin`: the configured renew margin.
    """
    if found is None:
        return Decision(VANISHED, why="vanished")
    taken = _holder_changed(own, found, public_ip)
    if taken is not None:
        return taken
    if not found.lease_id:
        return Decision(RESERVED, found, why="a reservation (no etcd lease): not renewed")
    remaining, granted = ttl if ttl is not None else (-1, 0)
    if remaining <= 0:
        return Decision(VANISHED, found, dead=found.lease_id, why="expired")
    if renewal_due(remaining, granted, margin):
        return Decision(RENEW, found, remaining, granted, why="%ds left" % remaining)
    return Decision(KEEP, found, remaining, granted)


def renewed(lease, ttl, granted):
    """After a keepalive of `lease`'s etcd lease that answered `ttl` (<= 0: the etcd lease is gone)."""
    if ttl <= 0:
        return Decision(VANISHED, lease, dead=lease.lease_id, why="expired")
    return Decision(KEEP, lease, ttl, granted, why="renewed")


def own_lease_gone(subnet, mine, dead):
    """What to do after VANISHED, from `mine`: the host's leases in a listing made since.

    The host re-leased elsewhere (the subnet module with relet, or another subnet asked for) leaves the
    old subnet free: MOVED. The key there again (on any etcd lease, or none), or rewritten between the
    check's read and now on another etcd lease than the `dead` one (a lease turned into a reservation
    revokes the old etcd lease): ADOPT it, re-creating would overwrite it. Else RECREATE it on `subnet`.
    """
    moved = [lease for lease in mine if lease.subnet != subnet]
    if moved:
        return Decision(MOVED, moved[0], why="this host's lease moved from %s to %s; exiting to restart on it"
                                             % (subnet, moved[0].subnet))
    again = [lease for lease in mine if lease.subnet == subnet and lease.lease_id != dead]
    if again:
        lease = again[0]
        return Decision(ADOPT, lease, why="changed meanwhile (%s): kept as it is"
                                          % ("a reservation" if not lease.lease_id else "etcd lease %x" % lease.lease_id))
    return Decision(RECREATE)


def seen_own_key(own, found, public_ip):
    """A put on the own key that the watch (or a listing) saw: TAKEN when `found` is no lease of this
    host, else ADOPT it (its etcd lease, or its kind, may have changed)."""
    return _holder_changed(own, found, public_ip) or Decision(ADOPT, found)


__all__ = ["Decision", "effective_margin", "renewal_due", "check_own_lease", "renewed", "own_lease_gone",
           "seen_own_key", "TAKEN", "RESERVED", "KEEP", "RENEW", "VANISHED", "MOVED", "ADOPT", "RECREATE"]
