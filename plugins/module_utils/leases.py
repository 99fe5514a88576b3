# -*- coding: utf-8 -*-
# Copyright: overlay.flannel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Subnet lease values and the choice of a subnet for a host.

Pure logic: no Ansible, no etcd, no I/O. The etcd side (transactions, etcd
leases, retries) lives in store.py and calls into this file.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import random
import time

from ansible_collections.overlay.flannel.plugins.module_utils.subnets import (
    SubnetError,
    iter_free,
    parse_ipv4,
    parse_lease_key,
    parse_subnet_key_name,
)

# flanneld picks at random among the first this-many free subnets, so that
# hosts starting together rarely race for the same one.
RANDOM_POOL = 100


class LeaseError(ValueError):
    """A stored lease that cannot be read, or a request that cannot be met."""


class ExhaustedError(LeaseError):
    pass


def encode_value(public_ip, backend_type="udp", backend_data=None, public_ipv6=None):
    """The lease value flanneld writes, with its key order and compact JSON."""
    # json.dumps keeps insertion order: PublicIP, PublicIPv6, BackendType, BackendData.
    return json.dumps({
        "PublicIP": str(public_ip),
        "PublicIPv6": public_ipv6,
        "BackendType": backend_type,
        "BackendData": backend_data,
    }, separators=(",", ":"))


def decode_value(data):
    """Lease value (bytes or str) -> dict with the four attributes. Raises LeaseError."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            raise LeaseError("lease value is not UTF-8 text")
    try:
        raw = json.loads(data)
    except ValueError as exc:
        raise LeaseError("lease value is not valid JSON: %s" % exc)
    if not isinstance(raw, dict):
        raise LeaseError("lease value is not a JSON object")
    try:
        public_ip = str(parse_ipv4(raw.get("PublicIP"), "PublicIP"))
    except SubnetError as exc:
        raise LeaseError(str(exc))
    btype = raw.get("BackendType") or ""
    if not isinstance(btype, str):
        raise LeaseError("BackendType must be a string, got %r" % (btype,))
    return {
        "PublicIP": public_ip,
        "PublicIPv6": raw.get("PublicIPv6"),
        "BackendType": btype,
        "BackendData": raw.get("BackendData"),
    }


class Lease(object):
    """One stored lease: the key, its subnet, its attributes and etcd metadata."""

    __slots__ = ("key", "subnet", "attrs", "lease_id", "mod_revision")

    def __init__(self, key, subnet, attrs, lease_id=0, mod_revision=0):
        self.key = key
        self.subnet = subnet
        self.attrs = attrs
        self.lease_id = lease_id
        self.mod_revision = mod_revision

    @property
    def public_ip(self):
        return self.attrs["PublicIP"]

    @property
    def reservation(self):
        """A key with no etcd lease never expires."""
        return not self.lease_id

    def __repr__(self):
        return "Lease(%s, %s)" % (self.subnet, self.public_ip)


class BadEntry(object):
    """A key under <prefix>/subnets/ that is not a readable lease: reported, never fatal."""

    __slots__ = ("key", "error", "mod_revision", "lease_id")

    def __init__(self, key, error, mod_revision=0, lease_id=0):
        self.key = key
        self.error = error
        self.mod_revision = mod_revision
        self.lease_id = lease_id


def read_leases(prefix, kvs):
    """(key, value, lease_id, mod_revision) tuples -> ([Lease], [BadEntry]), leases sorted by subnet."""
    leases, bad = [], []
    for key, value, lease_id, mod_revision in kvs:
        try:
            subnet = parse_lease_key(prefix, key)
            attrs = decode_value(value)
        except (SubnetError, LeaseError) as exc:
            bad.append(BadEntry(key, str(exc), mod_revision, lease_id))
            continue
        leases.append(Lease(key, subnet, attrs, lease_id, mod_revision))
    leases.sort(key=lambda lease: int(lease.subnet.network_address))
    return leases, bad


def lease_entries(leases, ttls, now):
    """The leases as subnet_info returns them (and the tests read them): one dict per lease, with the time
    its etcd lease has left. `ttls` maps etcd lease IDs to (remaining seconds, granted seconds); `now` is
    the epoch time the TTLs were read at."""
    entries = []
    for lease in leases:
        entry = dict(subnet=str(lease.subnet), public_ip=lease.public_ip, backend_type=lease.attrs["BackendType"],
                     key=lease.key, reservation=lease.reservation, expires_at=None, ttl_remaining=None)
        if lease.lease_id:
            remaining = max(ttls.get(lease.lease_id, (-1, 0))[0], 0)
            entry["ttl_remaining"] = remaining
            entry["expires_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + remaining))
        entries.append(entry)
    return entries


def taken_networks(leases, bad=()):
    """Network addresses (ints) that nobody else may lease.

    A key whose value is garbage still holds its subnet: we never hand out a
    subnet whose key exists, whatever is stored in it.
    """
    taken = set(int(lease.subnet.network_address) for lease in leases)
    for entry in bad:
        try:
            # The key may be fine while the value is not.
            taken.add(int(parse_subnet_key_name(entry.key.rsplit("/", 1)[-1]).network_address))
        except SubnetError:
            pass
    return taken


class Plan(object):
    """What to do for a host: keep its lease, or write one on `subnet`.

    action: 'keep' (the current lease stays as it is, maybe renewed),
    'update' (same subnet, attributes rewritten), 'create' (a subnet of its
    own, `release` lists the host's leases to delete in the same transaction).
    """

    __slots__ = ("action", "subnet", "current", "release", "reason")

    def __init__(self, action, subnet, current=None, release=(), reason=""):
        self.action = action
        self.subnet = subnet
        self.current = current
        self.release = list(release)
        self.reason = reason

    def __repr__(self):
        return "Plan(%s, %s, %s)" % (self.action, self.subnet, self.reason)


def plan_lease(config, leases, bad, public_ip, attrs, requested=None, previous=None,
               relet=False, rng=None, avoid=()):
    """Decide which subnet `public_ip` gets, in flannel's reuse order.

    Order: `requested` (exact subnet, an error if impossible); the host's own
    compatible lease (unless `relet`); `previous` when free and compatible;
    then a random one of the first RANDOM_POOL free subnets. `avoid` holds
    subnets (ints) that lost a race in this run and must not be tried again.
    Raises LeaseError / ExhaustedError.
    """
    rng = rng or random
    mine = [lease for lease in leases if lease.public_ip == public_ip]
    others = [lease for lease in leases if lease.public_ip != public_ip]
    taken = taken_networks(others, bad) | set(avoid)

    if requested is not None:
        if not config.contains_lease(requested):
            raise LeaseError("subnet %s is not a leasable subnet of %s (/%d subnets from %s to %s)" % (
                requested, config.network, config.subnet_len,
                config.subnet_min.network_address, config.subnet_max.network_address))
        holder = [lease for lease in others if lease.subnet == requested]
        if holder:
            raise LeaseError("subnet %s is leased to %s" % (requested, holder[0].public_ip))
        if int(requested.network_address) in taken:
            raise LeaseError("subnet %s is taken (its key holds an unreadable value)" % requested)
        for lease in mine:
            if lease.subnet == requested:
                return _keep_or_update(lease, attrs, [m for m in mine if m is not lease], "requested subnet")
        return Plan("create", requested, None, mine, "requested subnet")

    compatible = [lease for lease in mine if config.contains_lease(lease.subnet)]
    if compatible and not relet:
        keep = compatible[0]
        return _keep_or_update(keep, attrs, [m for m in mine if m is not keep], "existing lease")

    mine_nets = set(int(lease.subnet.network_address) for lease in mine)
    if (previous is not None and config.contains_lease(previous)
            and int(previous.network_address) not in taken
            and not (relet and int(previous.network_address) in mine_nets)):
        return Plan("create", previous, None, mine, "previous subnet")

    # A relet must move: the host's current subnets are not candidates.
    exclude = taken | mine_nets if relet else taken
    pool = list(iter_free(config.subnet_min, config.subnet_max, exclude, RANDOM_POOL))
    if not pool:
        leased = len(set(int(lease.subnet.network_address) for lease in leases))
        raise ExhaustedError("no free subnet in %s..%s (%d leased)" % (
            config.subnet_min, config.subnet_max, leased))
    return Plan("create", rng.choice(pool), None, mine, "new subnet")


def _keep_or_update(lease, attrs, extra, reason):
    if lease.attrs == attrs:
        return Plan("keep", lease.subnet, lease, extra, reason)
    return Plan("update", lease.subnet, lease, extra, reason)
