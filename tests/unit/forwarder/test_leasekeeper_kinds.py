"""The lease keeper acting on its own-lease decisions when the lease changes kind under it (renew.yml's
conversions); the decisions themselves are tested in tests/unit/core/test_renewal.py.

A fake etcd in memory stands behind the store the keeper uses (the real FlannelStore's reads of one
key and its renewal, with the listing and acquire() faked): keys with an etcd lease id (0: a
reservation) and etcd leases with (remaining, granted). Hooks run a conversion at the worst moment,
between the keeper reading its key and renewing its etcd lease.
"""

import collections
import json
import threading
import time

from ansible_collections.overlay.flannel.plugins.module_utils.leases import read_leases
from ansible_collections.overlay.flannel.plugins.module_utils.netconfig import parse
from ansible_collections.overlay.flannel.plugins.module_utils.store import FlannelStore

from flannel_forwarder.leasekeeper import LeaseKeeper, LeaseLost

PREFIX = "/coreos.com/network"
IP = "192.0.2.1"
KEY = PREFIX + "/subnets/10.5.7.0-24"
KV = collections.namedtuple("KV", "key value lease mod_revision")


def value(ip):
    return json.dumps({"PublicIP": ip, "PublicIPv6": None, "BackendType": "udp", "BackendData": None},
                      separators=(",", ":")).encode()


class FakeEtcd:
    def __init__(self):
        self.keys = {}      # key -> KV
        self.leases = {}    # id -> [remaining, granted]
        self.revision = 1
        self.next_id = 100
        self.before_ttls = None   # hook: runs once inside the next ttls()
        self.acquired = []        # ttl of every acquire()
        self.keepalives = []

    def put(self, key, ip, lease_id):
        self.revision += 1
        self.keys[key] = KV(key, value(ip), lease_id, self.revision)

    def grant(self, ttl):
        self.next_id += 1
        self.leases[self.next_id] = [ttl, ttl]
        return self.next_id

    def revoke(self, lease_id):
        self.leases.pop(lease_id, None)
        for key in [k for k, kv in self.keys.items() if kv.lease == lease_id]:
            del self.keys[key]

    # what the store calls
    def get(self, key):
        return self.keys.get(key)

    def keepalive(self, lease_id):
        self.keepalives.append(lease_id)
        if lease_id not in self.leases:
            return -1
        self.leases[lease_id][0] = self.leases[lease_id][1]
        return self.leases[lease_id][1]


class Snap:
    def __init__(self, fake):
        self.revision = fake.revision
        self.leases, _bad = read_leases(PREFIX, [tuple(kv) for kv in fake.keys.values()])

    def leases_of(self, ip):
        return [lease for lease in self.leases if lease.public_ip == ip]


class Out:
    def __init__(self, lease):
        self.lease = lease


class FakeStore(FlannelStore):
    def __init__(self, fake):
        super().__init__(fake, PREFIX)
        self.fake = fake

    def snapshot(self):
        return Snap(self.fake)

    @staticmethod
    def require_config(_snap):
        return parse('{"Network": "10.5.0.0/16"}')

    def ttls(self, leases):
        hook, self.fake.before_ttls = self.fake.before_ttls, None
        if hook:
            hook()
        return {lease.lease_id: tuple(self.fake.leases.get(lease.lease_id, (-1, 0)))
                for lease in leases if lease.lease_id}

    def acquire(self, public_ip, requested=None, ttl=86400, **_kw):
        # What store.acquire does for a pinned subnet: a reservation, or the key on a new etcd lease.
        self.fake.acquired.append(ttl)
        self.fake.put(KEY, public_ip, self.fake.grant(ttl) if ttl else 0)
        return Out(self.snapshot().leases_of(public_ip)[0])


def reserve(fake):
    """lease -> reservation as store.acquire(ttl=0) does it: the key without an etcd lease, then the revoke."""
    old = fake.keys[KEY].lease
    fake.put(KEY, IP, 0)
    fake.revoke(old)


def keeper_on(fake, ttl=86400, margin=3600):
    k = LeaseKeeper(FakeStore(fake), IP, renew_margin=margin, ttl=ttl)
    k.claim()
    return k


def leased(ttl=600, remaining=None):
    fake = FakeEtcd()
    lease_id = fake.grant(ttl)
    if remaining is not None:
        fake.leases[lease_id][0] = remaining
    fake.put(KEY, IP, lease_id)
    return fake, lease_id


def test_a_lease_turned_into_a_reservation_is_no_longer_renewed():
    fake, _lease_id = leased(600, remaining=10)
    k = keeper_on(fake, margin=60)
    reserve(fake)
    k.check_own_lease()
    assert k.lease.lease_id == 0 and k.seconds_left() is None and k.seen_ttl == 0
    assert fake.keepalives == [] and fake.acquired == [] and fake.keys[KEY].lease == 0
    k.check_own_lease()
    assert fake.keepalives == [] and fake.acquired == []


def test_a_reservation_made_between_the_read_and_the_renewal_is_kept_not_overwritten():
    # The keeper read its key on etcd lease X; the conversion revokes X before the keeper asks for its TTL.
    fake, _lease_id = leased(600, remaining=10)
    k = keeper_on(fake, margin=60)
    fake.before_ttls = lambda: reserve(fake)
    k.check_own_lease()
    assert fake.acquired == [], "re-created a TTL lease over the reservation"
    assert fake.keys[KEY].lease == 0 and k.lease.lease_id == 0 and k.seconds_left() is None


def test_a_reservation_made_between_the_ttl_and_the_keepalive_is_kept():
    fake, lease_id = leased(600, remaining=10)
    k = keeper_on(fake, margin=60)
    real = fake.keepalive

    def keepalive(i):
        reserve(fake)
        return real(i)
    fake.keepalive = keepalive
    k.check_own_lease()
    assert fake.acquired == [] and fake.keys[KEY].lease == 0 and k.lease.lease_id == 0


def test_a_reservation_turned_back_into_a_lease_is_renewed_on_its_new_etcd_lease():
    fake = FakeEtcd()
    fake.put(KEY, IP, 0)
    k = keeper_on(fake, ttl=0, margin=5)
    assert k.seconds_left() is None and k.seen_ttl == 0
    new = fake.grant(20)
    fake.put(KEY, IP, new)
    k.check_own_lease()
    assert k.lease.lease_id == new and 19 < k.seconds_left() <= 20 and k.seen_ttl == 20
    fake.leases[new][0] = 3
    k.check_own_lease()
    assert fake.keepalives == [new] and k.seconds_left() > 19 and fake.acquired == []


def test_a_vanished_key_is_re_created_in_the_kind_last_seen():
    # The running forwarder was started with a TTL; its key became a reservation and was then deleted:
    # it comes back as a reservation, not as a lease of the configured TTL.
    fake, _lease_id = leased(600)
    k = keeper_on(fake, ttl=86400)
    reserve(fake)
    k.check_own_lease()
    del fake.keys[KEY]
    k.check_own_lease()
    assert fake.acquired == [0] and fake.keys[KEY].lease == 0
    # and a lease of the TTL it was granted (the inventory's may differ from the environment's)
    fake2, _lease_id = leased(20)
    k2 = keeper_on(fake2, ttl=86400)
    del fake2.keys[KEY]
    k2.check_own_lease()
    assert fake2.acquired == [20]


def test_with_nothing_seen_the_configured_ttl_applies():
    k = LeaseKeeper(FakeStore(FakeEtcd()), IP, ttl=7200)
    assert k.recreate_ttl() == 7200
    k.ttl = 0
    assert k.recreate_ttl() == 0


def test_an_expired_lease_is_still_re_created_and_a_moved_one_still_exits():
    fake, lease_id = leased(600)
    k = keeper_on(fake)
    fake.leases[lease_id][0] = -1  # expired, the key not deleted yet
    k.check_own_lease()
    assert fake.acquired == [600] and fake.keys[KEY].lease != lease_id
    fake.put(PREFIX + "/subnets/10.5.8.0-24", IP, 0)
    del fake.keys[KEY]
    try:
        k.check_own_lease()
    except LeaseLost as exc:
        assert "moved from 10.5.7.0/24 to 10.5.8.0/24" in str(exc)
    else:
        raise AssertionError("no LeaseLost")


def test_the_watch_sees_a_reservation_and_stops_the_countdown():
    fake, _lease_id = leased(600)
    k = keeper_on(fake)
    k.peers = None
    reserve(fake)
    kv = fake.keys[KEY]
    event = collections.namedtuple("Event", "kind kv")("put", kv)
    k._apply_event(PREFIX, event, {}, lambda subnet: False)
    assert k.lease.lease_id == 0 and k.seconds_left() is None and k.seen_ttl == 0


def test_a_lease_shorter_than_the_margin_is_renewed_at_half_its_ttl_not_on_every_check():
    fake, lease_id = leased(20, remaining=15)
    k = keeper_on(fake, margin=3600)  # the environment's margin of a 24 h lease
    assert k.margin() == 10
    k.check_own_lease()
    assert fake.keepalives == []
    fake.leases[lease_id][0] = 9
    k.check_own_lease()
    assert fake.keepalives == [lease_id]
    # consistent settings: the configured margin as before
    fake2, _lease_id = leased(86400)
    assert keeper_on(fake2, margin=3600).margin() == 3600
    assert LeaseKeeper(None, IP, renew_margin=3600).margin() == 3600


def test_a_key_read_as_gone_that_is_back_as_a_reservation_is_adopted_not_overwritten():
    fake, _lease_id = leased(600)
    k = keeper_on(fake)
    reserve(fake)
    real = fake.get
    fake.get = lambda key: None  # the check's read meets the moment between a delete and the new put
    k.check_own_lease()
    fake.get = real
    assert fake.acquired == [] and fake.keys[KEY].lease == 0
    assert k.lease.lease_id == 0 and k.seconds_left() is None and k.seen_ttl == 0


def test_the_watch_seeing_a_new_etcd_lease_makes_the_renewal_read_it_at_once():
    """renew.yml puts the key on a new, shorter lease: the renewal, asleep for its check interval, is woken
    and counts down the new lease, instead of finding it at its next check with little time left."""
    fake, _lease_id = leased(600)
    k = keeper_on(fake, margin=60)
    k.check_interval = 60.0
    k.peers = None
    renewing = threading.Thread(target=k._renew_loop, daemon=True)
    renewing.start()
    try:
        new = fake.grant(20)
        fake.put(KEY, IP, new)
        event = collections.namedtuple("Event", "kind kv")("put", fake.keys[KEY])
        k._apply_event(PREFIX, event, {}, lambda subnet: False)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and k.seen_ttl != 20:
            time.sleep(0.01)
        assert k.lease.lease_id == new and k.seen_ttl == 20 and 15 < k.seconds_left() <= 20
    finally:
        k.stop()
        renewing.join(5)
    assert not renewing.is_alive()
