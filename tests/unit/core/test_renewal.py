"""Keeping a lease (module_utils/renewal.py): the renewal rule and the own-lease decisions, from what etcd returned."""

import ipaddress

import pytest

from ansible_collections.overlay.flannel.plugins.module_utils import renewal as R
from ansible_collections.overlay.flannel.plugins.module_utils.leases import BadEntry, Lease

PREFIX = "/coreos.com/network"
IP, OTHER = "192.0.2.1", "192.0.2.2"
SUBNET = ipaddress.IPv4Network("10.5.7.0/24")


def lease(ip=IP, lease_id=0x64, subnet=SUBNET):
    attrs = {"PublicIP": ip, "PublicIPv6": None, "BackendType": "udp", "BackendData": None}
    return Lease("%s/subnets/%s-%d" % (PREFIX, subnet.network_address, subnet.prefixlen), subnet, attrs, lease_id, 5)


OWN = lease()


@pytest.mark.parametrize("margin, granted, effective", [
    (3600, 86400, 3600),   # the usual: the configured margin
    (60, 600, 60),
    (3600, 20, 10),        # a TTL shorter than the margin: half the TTL
    (20, 20, 10),          # not below the TTL either
    (3600, 1, 1),          # never 0 (a 1 s lease is still renewed)
    (3600, 0, 3600),       # granted not known yet
])
def test_the_margin_in_force(margin, granted, effective):
    assert R.effective_margin(margin, granted) == effective


def test_the_renewal_rule_is_strictly_fewer_seconds_than_the_margin():
    assert R.renewal_due(59, 600, 60) and not R.renewal_due(60, 600, 60)
    assert R.renewal_due(9, 20, 3600) and not R.renewal_due(10, 20, 3600)


def test_a_key_that_is_gone_vanished():
    d = R.check_own_lease(OWN, None, None, IP, 3600)
    assert (d.action, d.lease, d.dead, d.why) == (R.VANISHED, None, None, "vanished")


def test_a_key_of_another_host_is_taken():
    theirs = lease(OTHER)
    d = R.check_own_lease(OWN, theirs, (500, 600), IP, 3600)
    assert d.action == R.TAKEN and d.lease is theirs and d.why == "subnet 10.5.7.0/24 is now leased to 192.0.2.2"


def test_garbage_over_the_own_key_is_taken():
    d = R.check_own_lease(OWN, BadEntry(OWN.key, "lease value is not valid JSON", 6, 0x64), None, IP, 3600)
    assert d.action == R.TAKEN and d.lease is None
    assert "the key %s holds an unreadable value now" % OWN.key in d.why and "playbooks/site.yml" in d.why


def test_a_reservation_is_not_renewed():
    reserved = lease(lease_id=0)
    d = R.check_own_lease(OWN, reserved, None, IP, 3600)
    assert d.action == R.RESERVED and d.lease is reserved


@pytest.mark.parametrize("ttl", [(-1, 0), (0, 600), None])
def test_a_dead_etcd_lease_vanished_and_names_the_dead_lease(ttl):
    d = R.check_own_lease(OWN, OWN, ttl, IP, 60)
    assert (d.action, d.lease, d.dead, d.why) == (R.VANISHED, OWN, 0x64, "expired")


@pytest.mark.parametrize("remaining, granted, margin, action", [
    (59, 600, 60, R.RENEW),
    (60, 600, 60, R.KEEP),
    (86000, 86400, 3600, R.KEEP),
    (9, 20, 3600, R.RENEW),     # half the TTL of a short lease, not the configured margin
    (15, 20, 3600, R.KEEP),
])
def test_an_alive_lease_is_renewed_when_due_else_kept(remaining, granted, margin, action):
    d = R.check_own_lease(OWN, OWN, (remaining, granted), IP, margin)
    assert (d.action, d.lease, d.remaining, d.granted) == (action, OWN, remaining, granted)


def test_a_key_on_another_etcd_lease_is_judged_on_that_lease():
    moved_on = lease(lease_id=0x65)
    d = R.check_own_lease(OWN, moved_on, (500, 600), IP, 60)
    assert d.action == R.KEEP and d.lease is moved_on


def test_after_a_keepalive():
    kept = R.renewed(OWN, 600, 600)
    assert (kept.action, kept.lease, kept.remaining, kept.granted) == (R.KEEP, OWN, 600, 600)
    for ttl in (0, -1):
        gone = R.renewed(OWN, ttl, 600)
        assert (gone.action, gone.dead) == (R.VANISHED, 0x64)


def test_gone_and_nothing_of_this_host_listed_is_re_created():
    assert R.own_lease_gone(SUBNET, [], None).action == R.RECREATE
    assert R.own_lease_gone(SUBNET, [], 0x64).action == R.RECREATE


def test_a_lease_of_this_host_on_another_subnet_moved():
    elsewhere = lease(subnet=ipaddress.IPv4Network("10.5.8.0/24"))
    for mine in ([elsewhere], [OWN, elsewhere]):
        d = R.own_lease_gone(SUBNET, mine, None)
        assert d.action == R.MOVED and d.lease is elsewhere
        assert d.why == "this host's lease moved from 10.5.7.0/24 to 10.5.8.0/24; exiting to restart on it"


def test_the_dead_etcd_lease_listed_still_is_re_created():
    # (its key not deleted yet: etcd removes it with the lease, moments later)
    assert R.own_lease_gone(SUBNET, [OWN], 0x64).action == R.RECREATE


@pytest.mark.parametrize("again, dead", [
    (lease(lease_id=0), 0x64),     # turned into a reservation between the read and the renewal
    (lease(lease_id=0x65), 0x64),  # put on a new etcd lease meanwhile
    (lease(lease_id=0), None),     # a vanished key back as a reservation
    (lease(lease_id=0x64), None),  # a vanished key back on its etcd lease
])
def test_the_key_back_or_changed_meanwhile_is_adopted_not_overwritten(again, dead):
    d = R.own_lease_gone(SUBNET, [again], dead)
    assert d.action == R.ADOPT and d.lease is again
    assert ("a reservation" if not again.lease_id else "etcd lease %x" % again.lease_id) in d.why


def test_a_watched_change_of_the_own_key():
    theirs = lease(OTHER, lease_id=0)
    taken = R.seen_own_key(OWN, theirs, IP)
    assert taken.action == R.TAKEN and taken.why == "subnet 10.5.7.0/24 is now leased to 192.0.2.2"
    reserved = lease(lease_id=0)
    adopt = R.seen_own_key(OWN, reserved, IP)
    assert adopt.action == R.ADOPT and adopt.lease is reserved
