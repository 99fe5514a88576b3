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

Dual-stack leases: a host's IPv4 and IPv6 subnets are one key
(<net>-<len>&<net6>-<len6>), written in one transaction. The guard
"version(key) == 0" cannot see a second key that holds one of the halves
beside another one (10.5.3.0-24&fd00::-64 against 10.5.3.0-24&fd00:0:0:1::-64
or 10.5.4.0-24&fd00::-64), so each half of a dual-stack key written here
also gets a claim key <prefix>/claims/<half> (its value: the lease key; on
the same etcd lease) in the same transaction, guarded by the claim's state
in the snapshot: two hosts that pick one subnet of either family at once
race on its claim and one of them loses. A claim whose lease key is gone
(deleted by hand) is stale and overwritten; flanneld writes no claims, and
the halves of its leases count as taken from their keys. IPv4-only keys
need no claims (the key is the subnet's one name) and get none.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

from ansible_collections.overlay.flannel.plugins.module_utils import backends
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
    SubnetError,
    config_key,
    claim_key,
    claims_prefix,
    lease_key,
    normalize_prefix,
    parse_claim_name,
    subnets_prefix,
)

# flanneld gives up after 10 lost races; with hundreds of hosts starting at
# once (CI clusters) more are needed, and each costs one round trip.
MAX_ATTEMPTS = 50


class StoreError(Exception):
    """A request that the stored state does not allow (no config, subnet taken, ...)."""


class Snapshot(object):
    """The config, all leases and the claims of dual-stack halves ({IPv4Network or IPv6Network: KV}) at one
    etcd revision."""

    __slots__ = ("revision", "config_kv", "config", "config_error", "leases", "bad", "claims")

    def __init__(self, prefix, revision, config_kvs, lease_kvs, claim_kvs=()):
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
        self.claims = {}
        base = claims_prefix(prefix)
        for kv in claim_kvs:
            try:
                self.claims[parse_claim_name(kv.key[len(base):])] = kv
            except SubnetError:
                pass  # not ours to read; never in the way of a claim we write (its key differs)

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


def lease_attrs(public_ip, backend_type="udp", backend_data=None, public_ipv6=None, backend_v6_data=None):
    """A lease's attributes as leases.decode_value reads them back (BackendV6Data only when there is one)."""
    attrs = {"PublicIP": str(public_ip), "PublicIPv6": None if public_ipv6 is None else str(public_ipv6),
             "BackendType": backend_type, "BackendData": backend_data}
    if backend_v6_data is not None:
        attrs["BackendV6Data"] = backend_v6_data
    return attrs


def _encode(attrs):
    return encode_value(attrs["PublicIP"], attrs["BackendType"], attrs["BackendData"], attrs["PublicIPv6"],
                        attrs.get("BackendV6Data"))


def host_attrs(config, mine, public_ip, backend_type, backend_data, public_ipv6=None):
    """The attributes of `public_ip`'s lease under `config`. A dual-stack network also needs the host's
    PublicIPv6: `public_ipv6`, else the one its lease holds (`mine`: its leases), else a LeaseError naming
    public_ipv6; a vxlan lease gets its BackendV6Data (backends.lease_data6). An IPv4-only network writes no
    IPv6 attribute, whatever `public_ipv6` is."""
    if not config.dual_stack:
        return lease_attrs(public_ip, backend_type, backend_data)
    if public_ipv6 is None:
        public_ipv6 = next((lease.public_ipv6 for lease in mine if lease.public_ipv6), None)
    if public_ipv6 is None:
        raise LeaseError("public_ipv6 is required: the network %s is dual-stack (EnableIPv6 with IPv6Network %s) "
                         "and %s has no lease that names its IPv6 address"
                         % (config.network, config.ipv6_network, public_ip))
    v6_data = backends.lease_data6(config.backend, public_ip) if backend_type == config.backend_type else None
    return lease_attrs(public_ip, backend_type, backend_data, public_ipv6, v6_data)


class FlannelStore(object):
    def __init__(self, client, prefix):
        self.client = client
        self.prefix = normalize_prefix(prefix)
        self.config_key = config_key(self.prefix)
        self.subnets_prefix = subnets_prefix(self.prefix)

    # -- reading -------------------------------------------------------------

    def _reads(self):
        return [etcd.get(self.config_key), etcd.get(self.subnets_prefix, prefix=True),
                etcd.get(claims_prefix(self.prefix), prefix=True)]

    def snapshot(self):
        revision, ranges = self.client.read(*self._reads())
        return Snapshot(self.prefix, revision, *ranges)

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
                rng=None, snap=None, max_attempts=MAX_ATTEMPTS, renew=False, public_ipv6=None,
                requested6=None, previous6=None):
        """Make sure `public_ip` holds exactly one compatible lease; see plan_lease() for the order.

        On a dual-stack network the lease is a pair (IPv4 subnet & IPv6 subnet) in one key, written with
        the claims of its halves in one transaction; `requested6` / `previous6` are the IPv6 halves asked for or held
        before, `public_ipv6` the host's IPv6 address (see host_attrs). A host whose lease keeps its IPv4
        subnet under another key (the network turned dual-stack, or back, or its IPv6 half changed) has the
        old key deleted and the new one put in the same transaction (action "update").

        A kept etcd lease is renewed (to its full TTL) when less than `renew_margin` remains, or
        whatever remains with `renew`. A lease asked with another kind (`ttl` 0, a reservation, for
        a key on an etcd lease; a TTL for a reservation; another TTL) keeps its subnet: the key is
        rewritten in one guarded transaction on the new etcd lease (none for a reservation) and
        the old etcd lease is revoked afterwards (the key no longer is attached to it).
        """
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
                attrs = host_attrs(config, snap.leases_of(public_ip), public_ip, backend_type, backend_data,
                                   public_ipv6)
                plan = plan_lease(config, snap.leases, snap.bad, public_ip, attrs, requested=requested,
                                  previous=previous, relet=relet, rng=rng, avoid=avoid, requested6=requested6,
                                  previous6=previous6)
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
                key = lease_key(self.prefix, plan.subnet, plan.subnet6)
                rekey = current is not None and current.key != key
                # A rekeyed lease's old key goes in the transaction that puts the new one.
                released = ([current] if rekey else []) + list(plan.release)
                if check_mode:
                    out.lease = _planned(self.prefix, plan.subnet, attrs, subnet6=plan.subnet6)
                    out.ttl = ttl
                    out.expires_at = _expiry(ttl)
                    out.released = released
                    return out
                # Keep the etcd lease of an updated key when its TTL already fits.
                reuse = current is not None and self._lease_fits(current, info, ttl)
                if ttl and not reuse and not granted:
                    granted = self.client.grant(ttl)
                lease_id = current.lease_id if reuse else (granted if ttl else 0)
                guards = [etcd.mod_revision_is(key, current.mod_revision) if current is not None and not rekey
                          else etcd.version_is(key, 0)]
                guards += [etcd.mod_revision_is(lease.key, lease.mod_revision) for lease in released]
                ops = [etcd.put(key, _encode(attrs), lease_id)] + [etcd.delete(lease.key) for lease in released]
                claim_guards, claim_ops = self._claims(snap, key, plan.subnet, plan.subnet6, lease_id, released)
                ok, revision, ranges = self.client.txn(guards + claim_guards, ops + claim_ops,
                                                       failure=self._reads())
                if not ok:
                    # Lost a race; the failure branch brought the fresh state.
                    snap = Snapshot(self.prefix, revision, *ranges)
                    config = self.require_config(snap)
                    if 4 in plan.fresh and plan.subnet6 is None:
                        # A dual-stack transaction can lose on either half (or a claim), so the fresh
                        # snapshot alone says what is taken: avoiding the other half would leave it free
                        # and never tried again.
                        avoid.add(int(plan.subnet.network_address))
                    continue
                if lease_id == granted:
                    granted = 0  # attached: no longer ours to revoke
                stale = set(lease.lease_id for lease in released if lease.lease_id)
                if current is not None and current.lease_id and current.lease_id != lease_id:
                    stale.add(current.lease_id)
                for old in stale - {lease_id}:
                    self.client.revoke(old)
                out.lease = _planned(self.prefix, plan.subnet, attrs, lease_id, 0, plan.subnet6)
                out.ttl = ttl
                out.expires_at = _expiry(ttl)
                out.released = released
                return out
            raise StoreError("could not lease a subnet for %s: lost %d races with other hosts, try again"
                             % (public_ip, max_attempts))
        finally:
            if granted:
                self.client.revoke(granted)

    def _claims(self, snap, key, subnet, subnet6, lease_id, released):
        """(guards, ops) of the claims in a transaction that puts `key` (halves `subnet` and `subnet6`; None
        for an IPv4-only key, which has no claims) on `lease_id` and deletes the `released` leases: each
        half of a dual-stack key is claimed, guarded by what the snapshot saw of its claim (none: version
        0); the claims of released halves that name their released key are deleted, guarded likewise."""
        guards, ops, claimed = [], [], set()
        if subnet6 is not None:
            for half in (subnet, subnet6):
                seen = snap.claims.get(half)
                ckey = claim_key(self.prefix, half)
                guards.append(etcd.mod_revision_is(ckey, seen.mod_revision) if seen is not None
                              else etcd.version_is(ckey, 0))
                ops.append(etcd.put(ckey, key, lease_id))
                claimed.add(ckey)
        for lease in released:
            if lease.subnet6 is None:
                continue
            for half in (lease.subnet, lease.subnet6):
                seen = snap.claims.get(half)
                if seen is None or seen.key in claimed or _text(seen.value) != lease.key:
                    continue
                guards.append(etcd.mod_revision_is(seen.key, seen.mod_revision))
                ops.append(etcd.delete(seen.key))
                claimed.add(seen.key)
        return guards, ops

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
            claim_guards, claim_ops = self._claims(snap, None, None, None, 0, mine)
            ok, _rev, _ranges = self.client.txn(
                [etcd.mod_revision_is(lease.key, lease.mod_revision) for lease in mine] + claim_guards,
                [etcd.delete(lease.key) for lease in mine] + claim_ops)
            if ok:
                for lease_id in set(lease.lease_id for lease in mine if lease.lease_id):
                    self.client.revoke(lease_id)
                return mine
            snap = None
        raise StoreError("could not release the lease of %s: it kept changing" % public_ip)


def _planned(prefix, subnet, attrs, lease_id=0, mod_revision=0, subnet6=None):
    return Lease(lease_key(prefix, subnet, subnet6), subnet, attrs, lease_id, mod_revision, subnet6)


def _text(value):
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _expiry(ttl):
    """ISO 8601 UTC time `ttl` seconds from now; None for a reservation."""
    if not ttl or ttl <= 0:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + ttl))


__all__ = ["FlannelStore", "Snapshot", "StoreError", "LeaseError", "DEFAULT_TTL", "DEFAULT_RENEW_MARGIN"]
