# -*- coding: utf-8 -*-
# Copyright: overlay.flannel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Flannel's state in etcd: the config and the subnet leases, read and written atomically.

This is the layer the modules and the forwarder share: it knows the keys
(subnets.py), the rules (netconfig.py), the lease choice (leases.py) and the
renewal rule (renewal.py, with the decisions of a lease holder that the
forwarder's lease keeper acts on), and talks to etcd only through
etcd_client.EtcdClient.

Round trips: a snapshot (config + every lease) is one request; creating a
lease is a snapshot, a grant and one transaction, whatever the number of
existing leases. A lost race costs one more transaction, whose failure
branch already carries the fresh state.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

from ansible_collections.overlay.flannel.plugins.module_utils import etcd_client as etcd
from ansible_collections.overlay.flannel.plugins.module_utils.leases import (
    Lease,
    LeaseError,
    encode_value,
    plan_lease,
    read_leases,
)
from ansible_collections.overlay.flannel.plugins.module_utils.netconfig import ConfigError, parse
from ansible_collections.overlay.flannel.plugins.module_utils.renewal import renewal_due
from ansible_collections.overlay.flannel.plugins.module_utils.settings import DEFAULT_RENEW_MARGIN, DEFAULT_TTL
from ansible_collections.overlay.flannel.plugins.module_utils.subnets import (
    config_key,
    lease_key,
    normalize_prefix,
    subnets_prefix,
)

# flanneld gives up after 10 lost races; with hundreds of hosts starting at
# once (CI clusters) more are needed, and each costs one round trip.
MAX_ATTEMPTS = 50


class StoreError(Exception):
    """A request that the stored state does not allow (no config, subnet taken, ...)."""


class Snapshot(object):
    """The config and all leases at one etcd revision."""

    __slots__ = ("revision", "config_kv", "config", "config_error", "leases", "bad")

    def __init__(self, prefix, revision, config_kvs, lease_kvs):
        self.revision = revision
        self.config_kv = config_kvs[0] if config_kvs else None
        self.config = None
        self.config_error = None
        if self.config_kv is not None:
            try:
                self.config = parse(self.config_kv.value)
            except ConfigError as exc:
                self.config_error = str(exc)
        self.leases, self.bad = read_leases(
            prefix, [(kv.key, kv.value, kv.lease, kv.mod_revision) for kv in lease_kvs])

    def leases_of(self, public_ip):
        return [lease for lease in self.leases if lease.public_ip == public_ip]


class Outcome(object):
    """What acquire() did: `lease` is the host's lease afterwards (or the planned one in check mode)."""

    __slots__ = ("changed", "action", "lease", "before", "before_ttl", "ttl", "expires_at", "released", "config")

    def __init__(self):
        self.changed = False
        self.action = "keep"
        self.lease = None
        self.before = None
        # Seconds the host's lease had left before: None with no lease (or its etcd lease gone), 0 for a reservation.
        self.before_ttl = None
        self.ttl = 0
        self.expires_at = None
        self.released = []
        self.config = None


def lease_attrs(public_ip, backend_type="udp", backend_data=None, public_ipv6=None):
    return {"PublicIP": str(public_ip), "PublicIPv6": public_ipv6,
            "BackendType": backend_type, "BackendData": backend_data}


class FlannelStore(object):
    def __init__(self, client, prefix):
        self.client = client
        self.prefix = normalize_prefix(prefix)
        self.config_key = config_key(self.prefix)
        self.subnets_prefix = subnets_prefix(self.prefix)

    # -- reading -------------------------------------------------------------

    def _reads(self):
        return [etcd.get(self.config_key), etcd.get(self.subnets_prefix, prefix=True)]

    def snapshot(self):
        revision, (config_kvs, lease_kvs) = self.client.read(*self._reads())
        return Snapshot(self.prefix, revision, config_kvs, lease_kvs)

    def require_config(self, snap):
        if snap.config is not None:
            return snap.config
        if snap.config_error:
            raise StoreError("the network config at %s is invalid: %s" % (self.config_key, snap.config_error))
        raise StoreError("no network config at %s: create it first (overlay.flannel.network)" % self.config_key)

    def ttls(self, leases):
        """{lease_id: (remaining, granted)} for the etcd leases behind `leases`, in one round trip."""
        return self.client.time_to_live([lease.lease_id for lease in leases if lease.lease_id])

    def lease_at(self, key):
        """(found, ttl): what the lease key `key` holds now (a Lease, a BadEntry for an unreadable value,
        None for no key) and (remaining, granted) of a Lease's etcd lease ((-1, 0) when it is gone; None
        for a reservation or no lease). The inputs of renewal.check_own_lease."""
        kv = self.client.get(key)
        if kv is None:
            return None, None
        leases, bad = read_leases(self.prefix, [(kv.key, kv.value, kv.lease, kv.mod_revision)])
        if not leases:
            return bad[0], None
        found = leases[0]
        return found, (self.ttls([found]).get(found.lease_id, (-1, 0)) if found.lease_id else None)

    def keepalive(self, lease):
        """Renew the etcd lease of `lease` once: its TTL now (<= 0 when it no longer exists)."""
        return self.client.keepalive(lease.lease_id)

    # -- watching ------------------------------------------------------------

    def watch(self, start_revision):
        """An etcd_client.Watch of everything under the prefix (the config and the leases) from
        `start_revision` on."""
        return self.client.watch_prefix(self.prefix + "/", start_revision)

    def clone(self):
        """This store on connections of its own (a long-lived watch stream's: see EtcdClient.clone)."""
        return FlannelStore(self.client.clone(), self.prefix)

    @property
    def endpoint(self):
        """The URL of the etcd member that answered last."""
        return self.client.endpoint

    def close(self):
        self.client.close()

    # -- config --------------------------------------------------------------

    def write_config(self, text, snap):
        """Store the config text if nobody changed it since `snap`; False on a lost race."""
        kv = snap.config_kv
        guard = etcd.mod_revision_is(self.config_key, kv.mod_revision) if kv else etcd.version_is(self.config_key, 0)
        ok, _rev, _ranges = self.client.txn([guard], [etcd.put(self.config_key, text)])
        return ok

    def delete_config(self, snap):
        kv = snap.config_kv
        ok, _rev, _ranges = self.client.txn([etcd.mod_revision_is(self.config_key, kv.mod_revision)],
                                            [etcd.delete(self.config_key)])
        return ok

    # -- leases --------------------------------------------------------------

    def acquire(self, public_ip, ttl=DEFAULT_TTL, renew_margin=DEFAULT_RENEW_MARGIN, backend_type="udp",
                backend_data=None, requested=None, previous=None, relet=False, check_mode=False,
                rng=None, snap=None, max_attempts=MAX_ATTEMPTS, renew=False):
        """Make sure `public_ip` holds exactly one compatible lease; see plan_lease() for the order.

        A kept etcd lease is renewed (to its full TTL) when less than `renew_margin` remains, or
        whatever remains with `renew`. A lease asked with another kind (`ttl` 0, a reservation, for
        a key on an etcd lease; a TTL for a reservation; another TTL) keeps its subnet: the key is
        rewritten in one guarded transaction on the new etcd lease (none for a reservation) and
        the old etcd lease is revoked afterwards (the key no longer is attached to it).
        """
        attrs = lease_attrs(public_ip, backend_type, backend_data)
        value = encode_value(public_ip, backend_type, backend_data)
        snap = snap or self.snapshot()
        config = self.require_config(snap)
        out = Outcome()
        out.config = config
        mine = snap.leases_of(public_ip)
        out.before = mine[0] if mine else None
        avoid = set()
        granted = 0
        try:
            for _attempt in range(max_attempts):
                plan = plan_lease(config, snap.leases, snap.bad, public_ip, attrs, requested=requested,
                                  previous=previous, relet=relet, rng=rng, avoid=avoid)
                current = plan.current
                if current is not None and granted and current.lease_id == granted:
                    # A transaction that looked lost (it timed out and was sent again) did attach the
                    # etcd lease: it is the key's now, and revoking it would delete the key.
                    granted = 0
                info = self.ttls([current]).get(current.lease_id) if current is not None and current.lease_id else None
                if out.before is not None and current is not None and current.subnet == out.before.subnet:
                    out.before_ttl = 0 if not current.lease_id else (info[0] if info and info[0] > 0 else None)
                if plan.action == "keep" and not plan.release and self._lease_fits(current, info, ttl):
                    out.lease = current
                    out.ttl = 0 if not ttl else info[0]
                    if ttl and (renew or renewal_due(info[0], info[1], renew_margin)):
                        out.changed, out.action = True, "renew"
                        out.ttl = ttl if check_mode else self.client.keepalive(current.lease_id)
                    out.expires_at = _expiry(out.ttl)
                    return out
                out.changed = True
                out.action = "update" if current is not None else ("relet" if relet and mine else "create")
                released = list(plan.release)
                if check_mode:
                    out.lease = _planned(self.prefix, plan.subnet, attrs)
                    out.ttl = ttl
                    out.expires_at = _expiry(ttl)
                    out.released = released
                    return out
                # Keep the etcd lease of an updated key when its TTL already fits.
                reuse = current is not None and self._lease_fits(current, info, ttl)
                if ttl and not reuse and not granted:
                    granted = self.client.grant(ttl)
                lease_id = current.lease_id if reuse else (granted if ttl else 0)
                key = lease_key(self.prefix, plan.subnet)
                guards = [etcd.mod_revision_is(key, current.mod_revision) if current is not None
                          else etcd.version_is(key, 0)]
                guards += [etcd.mod_revision_is(lease.key, lease.mod_revision) for lease in released]
                ops = [etcd.put(key, value, lease_id)] + [etcd.delete(lease.key) for lease in released]
                ok, revision, ranges = self.client.txn(guards, ops, failure=self._reads())
                if not ok:
                    # Lost a race; the failure branch brought the fresh state.
                    snap = Snapshot(self.prefix, revision, ranges[0], ranges[1])
                    config = self.require_config(snap)
                    if current is None and requested is None:
                        avoid.add(int(plan.subnet.network_address))
                    continue
                if lease_id == granted:
                    granted = 0  # attached: no longer ours to revoke
                stale = set(lease.lease_id for lease in released if lease.lease_id)
                if current is not None and current.lease_id and current.lease_id != lease_id:
                    stale.add(current.lease_id)
                for old in stale - {lease_id}:
                    self.client.revoke(old)
                out.lease = _planned(self.prefix, plan.subnet, attrs, lease_id, 0)
                out.ttl = ttl
                out.expires_at = _expiry(ttl)
                out.released = released
                return out
            raise StoreError("could not lease a subnet for %s: lost %d races with other hosts, try again"
                             % (public_ip, max_attempts))
        finally:
            if granted:
                self.client.revoke(granted)

    @staticmethod
    def _lease_fits(lease, info, ttl):
        """Is the etcd lease behind `lease` the kind asked for (reservation or this TTL), and alive?"""
        if not ttl:
            return not lease.lease_id
        if not lease.lease_id or info is None:
            return False
        remaining, granted_ttl = info
        return remaining > 0 and granted_ttl == ttl

    def release(self, public_ip, check_mode=False, snap=None):
        """Delete every lease of `public_ip` and revoke its etcd leases. Returns the released leases."""
        for _attempt in range(MAX_ATTEMPTS):
            snap = snap or self.snapshot()
            mine = snap.leases_of(public_ip)
            if not mine or check_mode:
                return mine
            ok, _rev, _ranges = self.client.txn(
                [etcd.mod_revision_is(lease.key, lease.mod_revision) for lease in mine],
                [etcd.delete(lease.key) for lease in mine])
            if ok:
                for lease_id in set(lease.lease_id for lease in mine if lease.lease_id):
                    self.client.revoke(lease_id)
                return mine
            snap = None
        raise StoreError("could not release the lease of %s: it kept changing" % public_ip)


def _planned(prefix, subnet, attrs, lease_id=0, mod_revision=0):
    return Lease(lease_key(prefix, subnet), subnet, attrs, lease_id, mod_revision)


def _expiry(ttl):
    """ISO 8601 UTC time `ttl` seconds from now; None for a reservation."""
    if not ttl or ttl <= 0:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + ttl))


__all__ = ["FlannelStore", "Snapshot", "StoreError", "LeaseError", "DEFAULT_TTL", "DEFAULT_RENEW_MARGIN"]
