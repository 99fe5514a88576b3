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
    ipv6_half_of_key_name,
    iter_free,
    parse_ipv4,
    parse_lease_key_pair,
    parse_subnet_key_name,
)

# flanneld picks at random among the first this-many free subnets, so that
# hosts starting together rarely race for the same one.
RANDOM_POOL = 100


class LeaseError(ValueError):
    """A stored lease that cannot be read, or a request that cannot be met."""


class ExhaustedError(LeaseError):
    pass


def encode_value(public_ip, backend_type="udp", backend_data=None, public_ipv6=None, backend_v6_data=None):
    """The lease value flanneld writes, with its key order and compact JSON.

    BackendV6Data (a dual-stack vxlan lease's IPv6 VTEP) is written only when there is one, so that an
    IPv4-only lease stays byte for byte what it always was.
    """
    # json.dumps keeps insertion order: PublicIP, PublicIPv6, BackendType, BackendData, BackendV6Data.
    value = {
        "PublicIP": str(public_ip),
        "PublicIPv6": None if public_ipv6 is None else str(public_ipv6),
        "BackendType": backend_type,
        "BackendData": backend_data,
    }
    if backend_v6_data is not None:
        value["BackendV6Data"] = backend_v6_data
    return json.dumps(value, separators=(",", ":"))


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
    attrs = {
        "PublicIP": public_ip,
        "PublicIPv6": raw.get("PublicIPv6"),
        "BackendType": btype,
        "BackendData": raw.get("BackendData"),
    }
    if raw.get("BackendV6Data") is not None:
        attrs["BackendV6Data"] = raw["BackendV6Data"]
    return attrs


class Lease(object):
    """One stored lease: the key, its subnet (and the IPv6 half of a dual-stack key, else None), its attributes
    and etcd metadata."""

    __slots__ = ("key", "subnet", "attrs", "lease_id", "mod_revision", "subnet6")

    def __init__(self, key, subnet, attrs, lease_id=0, mod_revision=0, subnet6=None):
        self.key = key
        self.subnet = subnet
        self.attrs = attrs
        self.lease_id = lease_id
        self.mod_revision = mod_revision
        self.subnet6 = subnet6

    @property
    def public_ip(self):
        return self.attrs["PublicIP"]

    @property
    def public_ipv6(self):
        return self.attrs.get("PublicIPv6")

    @property
    def reservation(self):
        """A key with no etcd lease never expires."""
        return not self.lease_id

    def __repr__(self):
        if self.subnet6 is not None:
            return "Lease(%s&%s, %s)" % (self.subnet, self.subnet6, self.public_ip)
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
    """(key, value, lease_id, mod_revision) tuples -> ([Lease], [BadEntry]), leases sorted by subnet.

    A dual-stack key whose IPv6 half cannot be read is a BadEntry naming the key (flanneld skips it too).
    """
    leases, bad = [], []
    for key, value, lease_id, mod_revision in kvs:
        try:
            subnet, subnet6 = parse_lease_key_pair(prefix, key)
            attrs = decode_value(value)
        except (SubnetError, LeaseError) as exc:
            bad.append(BadEntry(key, str(exc), mod_revision, lease_id))
            continue
        leases.append(Lease(key, subnet, attrs, lease_id, mod_revision, subnet6))
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
        if lease.subnet6 is not None:  # a dual-stack lease shows its IPv6 half (IPv4-only entries as ever)
            entry.update(ipv6_subnet=str(lease.subnet6), public_ipv6=lease.public_ipv6)
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


def taken_networks6(leases, bad=()):
    """IPv6 halves (network addresses as ints) that nobody else may lease: those of `leases`, and those
    that can be read from the keys of unreadable entries (a garbage value still holds its key's halves)."""
    taken = set(int(lease.subnet6.network_address) for lease in leases if lease.subnet6 is not None)
    for entry in bad:
        half = ipv6_half_of_key_name(entry.key.rsplit("/", 1)[-1])
        if half is not None:
            taken.add(int(half.network_address))
    return taken


class Plan(object):
    """What to do for a host: keep its lease, or write one on `subnet` (and `subnet6`, the IPv6 half of a
    dual-stack key; None for an IPv4-only one).

    action: 'keep' (the current lease stays as it is, maybe renewed),
    'update' (same key, attributes rewritten), 'rekey' (the host's lease
    `current` keeps its IPv4 subnet under another key: its IPv6 half is
    added, changed or dropped), 'create' (a subnet of its own). `release`
    lists the host's other leases to delete in the same transaction.
    `fresh` names the halves (4, 6) chosen among free subnets (not the
    host's own, not named): those an IPv4-only plan avoids after a lost race.
    """

    __slots__ = ("action", "subnet", "current", "release", "reason", "subnet6", "fresh")

    def __init__(self, action, subnet, current=None, release=(), reason="", subnet6=None, fresh=()):
        self.action = action
        self.subnet = subnet
        self.current = current
        self.release = list(release)
        self.reason = reason
        self.subnet6 = subnet6
        self.fresh = frozenset(fresh)

    def __repr__(self):
        return "Plan(%s, %s, %s, %s)" % (self.action, self.subnet, self.subnet6, self.reason)


def _net(subnet):
    return int(subnet.network_address)


def _check_named(config, others, taken, subnet, family):
    """A named half (`subnet`, `ipv6_subnet`): leasable under `config`, and nobody else's."""
    if family == 4:
        fits, what = config.contains_lease(subnet), "subnet"
        shape = "%s (/%d subnets from %s to %s)" % (config.network, config.subnet_len,
                                                    config.subnet_min.network_address,
                                                    config.subnet_max.network_address)
        holder = [lease for lease in others if lease.subnet == subnet]
    else:
        if not config.dual_stack:
            raise LeaseError("IPv6 subnet %s asked for, but the network %s is IPv4-only (no EnableIPv6)"
                             % (subnet, config.network))
        fits, what = config.contains_lease6(subnet), "IPv6 subnet"
        shape = "%s (/%d subnets from %s to %s)" % (config.ipv6_network, config.ipv6_subnet_len,
                                                    config.ipv6_subnet_min.network_address,
                                                    config.ipv6_subnet_max.network_address)
        holder = [lease for lease in others if lease.subnet6 == subnet]
    if not fits:
        raise LeaseError("%s %s is not a leasable subnet of %s" % (what, subnet, shape))
    if holder:
        raise LeaseError("%s %s is leased to %s" % (what, subnet, holder[0].public_ip))
    if _net(subnet) in taken:
        raise LeaseError("%s %s is taken (its key holds an unreadable value)" % (what, subnet))


def _choose(config, family, leases, mine, taken, previous, relet, keep, rng):
    """One half: `keep` (the host's own, when free), then `previous` when free and leasable (a relet never
    takes one of the host's current ones), then a random one of the first RANDOM_POOL free ones.
    Returns (subnet, fresh)."""
    if family == 4:
        fits, smin, smax = config.contains_lease, config.subnet_min, config.subnet_max
        halves = [lease.subnet for lease in mine]
    else:
        fits, smin, smax = config.contains_lease6, config.ipv6_subnet_min, config.ipv6_subnet_max
        halves = [lease.subnet6 for lease in mine if lease.subnet6 is not None]
    if keep is not None and fits(keep) and _net(keep) not in taken:
        return keep, False
    mine_nets = set(_net(half) for half in halves)
    if (previous is not None and fits(previous) and _net(previous) not in taken
            and not (relet and _net(previous) in mine_nets)):
        return previous, True
    # A relet must move: the host's current subnets are not candidates.
    exclude = taken | mine_nets if relet else taken
    pool = list(iter_free(smin, smax, exclude, RANDOM_POOL))
    if not pool:
        if family == 4:
            leased = len(set(_net(lease.subnet) for lease in leases))
            raise ExhaustedError("no free subnet in %s..%s (%d leased)" % (smin, smax, leased))
        leased = len(set(_net(lease.subnet6) for lease in leases if lease.subnet6 is not None))
        raise ExhaustedError("no free IPv6 subnet in %s..%s (%d leased)" % (smin, smax, leased))
    return rng.choice(pool), True


def plan_lease(config, leases, bad, public_ip, attrs, requested=None, previous=None,
               relet=False, rng=None, avoid=(), requested6=None, previous6=None):
    """Decide which subnet (and, on a dual-stack network, which IPv6 half) `public_ip` gets, in flannel's
    reuse order.

    Order: `requested` / `requested6` (a named half, an error if impossible;
    a half not named is the host's own when free, else chosen as below);
    the host's own compatible lease (unless `relet`); the host's own IPv4
    half under a new key when only its IPv6 half does not fit (the network
    turned dual-stack, or back); `previous` / `previous6` when free and
    compatible; then a random one of the first RANDOM_POOL free subnets.
    `avoid` holds IPv4 subnets (ints) that lost a race in this run and must
    not be tried again. Raises LeaseError / ExhaustedError.
    """
    rng = rng or random
    mine = [lease for lease in leases if lease.public_ip == public_ip]
    others = [lease for lease in leases if lease.public_ip != public_ip]
    taken = taken_networks(others, bad) | set(avoid)
    taken6 = taken_networks6(others, bad)
    dual = config.dual_stack

    if requested is not None or requested6 is not None:
        if requested is not None:
            _check_named(config, others, taken, requested, 4)
        if requested6 is not None:
            _check_named(config, others, taken6, requested6, 6)
        # The host's lease that a named half comes from (its other half is kept if free).
        own = [lease for lease in mine if (requested is None or lease.subnet == requested)
               and (requested6 is None or lease.subnet6 == requested6)] or \
              [lease for lease in mine if lease.subnet == requested or
               (requested6 is not None and lease.subnet6 == requested6)] or mine
        base = own[0] if own else None
        fresh = set()
        subnet = requested
        if subnet is None:
            subnet, chosen = _choose(config, 4, leases, mine, taken, previous, False,
                                     base.subnet if base else None, rng)
            fresh.update([4] if chosen else [])
        subnet6 = requested6
        if dual and subnet6 is None:
            subnet6, chosen = _choose(config, 6, leases, mine, taken6, previous6, False,
                                      base.subnet6 if base else None, rng)
            fresh.update([6] if chosen else [])
        return _plan(mine, subnet, subnet6, attrs, "requested subnet", fresh)

    compatible = [lease for lease in mine if config.fits(lease.subnet, lease.subnet6)]
    if compatible and not relet:
        keep = compatible[0]
        return _keep_or_update(keep, attrs, [m for m in mine if m is not keep], "existing lease")

    # Only the IPv6 half does not fit (missing, of another network, or one an IPv4-only network drops):
    # the host keeps its IPv4 subnet.
    half = [lease for lease in mine if config.contains_lease(lease.subnet)
            and _net(lease.subnet) not in taken] if not relet else []
    if half:
        base = half[0]
        subnet6, chosen = (None, False)
        if dual:
            subnet6, chosen = _choose(config, 6, leases, mine, taken6, previous6, False, base.subnet6, rng)
        reason = "dual-stack key" if base.subnet6 is None else ("IPv4-only key" if not dual else "new IPv6 half")
        return _plan(mine, base.subnet, subnet6, attrs, reason, [6] if chosen else [])

    subnet, _chosen = _choose(config, 4, leases, mine, taken, previous, relet, None, rng)
    fresh = {4}
    subnet6 = None
    if dual:
        keep6 = None if relet else next((m.subnet6 for m in mine if m.subnet6 is not None
                                         and config.contains_lease6(m.subnet6)), None)
        subnet6, chosen = _choose(config, 6, leases, mine, taken6, previous6, relet, keep6, rng)
        fresh.update([6] if chosen else [])
    reason = "previous subnet" if previous is not None and subnet == previous else "new subnet"
    return _plan(mine, subnet, subnet6, attrs, reason, fresh)


def _plan(mine, subnet, subnet6, attrs, reason, fresh):
    """The plan that puts the host on (subnet, subnet6): its lease on exactly that pair is kept (or updated);
    its lease on `subnet` under another key is rekeyed; else a new key is created. Its other leases go."""
    exact = [lease for lease in mine if lease.subnet == subnet and lease.subnet6 == subnet6]
    if exact:
        return _keep_or_update(exact[0], attrs, [m for m in mine if m is not exact[0]], reason)
    same4 = [lease for lease in mine if lease.subnet == subnet]
    if same4:
        return Plan("rekey", subnet, same4[0], [m for m in mine if m is not same4[0]], reason, subnet6, fresh)
    return Plan("create", subnet, None, mine, reason, subnet6, fresh)


def _keep_or_update(lease, attrs, extra, reason):
    if lease.attrs == attrs:
        return Plan("keep", lease.subnet, lease, extra, reason, lease.subnet6)
    return Plan("update", lease.subnet, lease, extra, reason, lease.subnet6)
