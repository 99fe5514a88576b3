import ipaddress
import json
import random

import pytest

from ansible_collections.overlay.flannel.plugins.module_utils import leases as L
from ansible_collections.overlay.flannel.plugins.module_utils.netconfig import from_dict

PREFIX = "/coreos.com/network"
CFG = from_dict({"Network": "10.5.0.0/16"})


def attrs(ip):
    return {"PublicIP": ip, "PublicIPv6": None, "BackendType": "udp", "BackendData": None}


def lease(subnet, ip, lease_id=1):
    net = ipaddress.IPv4Network(subnet)
    return L.Lease("%s/subnets/%s-%d" % (PREFIX, net.network_address, net.prefixlen), net, attrs(ip), lease_id, 5)


def test_value_is_flannels_format():
    assert L.encode_value("10.8.65.53") == \
        '{"PublicIP":"10.8.65.53","PublicIPv6":null,"BackendType":"udp","BackendData":null}'
    assert L.decode_value(b'{"PublicIP":"10.8.65.53","BackendType":"udp"}') == attrs("10.8.65.53")


@pytest.mark.parametrize("value, words", [
    (b"{", "not valid JSON"), (b"[]", "not a JSON object"), (b'{"PublicIP": "x"}', "not an IPv4 address"),
    (b'{"PublicIP": "1.2.3.4", "BackendType": 5}', "BackendType must be a string"), (b"\xff", "UTF-8"),
])
def test_bad_values(value, words):
    with pytest.raises(L.LeaseError, match=words):
        L.decode_value(value)


def test_read_leases_sorts_and_reports_garbage():
    kvs = [
        (PREFIX + "/subnets/10.5.9.0-24", L.encode_value("192.0.2.9"), 1, 3),
        (PREFIX + "/subnets/10.5.2.0-24", L.encode_value("192.0.2.2"), 0, 4),
        (PREFIX + "/subnets/garbage", b"{}", 0, 5),
        (PREFIX + "/subnets/10.5.3.0-24", b"not json", 0, 6),
    ]
    leases, bad = L.read_leases(PREFIX, kvs)
    assert [str(x.subnet) for x in leases] == ["10.5.2.0/24", "10.5.9.0/24"]
    assert leases[0].reservation and not leases[1].reservation
    assert sorted(b.key.rsplit("/", 1)[1] for b in bad) == ["10.5.3.0-24", "garbage"]
    # The key with a garbage value still holds its subnet.
    assert int(ipaddress.IPv4Address("10.5.3.0")) in L.taken_networks(leases, bad)


def test_plan_order_existing_then_previous_then_random():
    rng = random.Random(1)
    mine = lease("10.5.7.0/24", "192.0.2.1")
    other = lease("10.5.8.0/24", "192.0.2.2")
    keep = L.plan_lease(CFG, [mine, other], [], "192.0.2.1", attrs("192.0.2.1"), previous=ipaddress.IPv4Network("10.5.9.0/24"))
    assert (keep.action, str(keep.subnet)) == ("keep", "10.5.7.0/24")
    prev = L.plan_lease(CFG, [other], [], "192.0.2.1", attrs("192.0.2.1"), previous=ipaddress.IPv4Network("10.5.9.0/24"))
    assert (prev.action, str(prev.subnet), prev.reason) == ("create", "10.5.9.0/24", "previous subnet")
    taken = L.plan_lease(CFG, [other], [], "192.0.2.1", attrs("192.0.2.1"), previous=ipaddress.IPv4Network("10.5.8.0/24"), rng=rng)
    assert taken.reason == "new subnet" and taken.subnet != other.subnet
    assert CFG.contains_lease(taken.subnet)


def test_plan_random_pool_is_the_first_100_free():
    seen = set()
    for seed in range(300):
        plan = L.plan_lease(CFG, [], [], "192.0.2.1", attrs("192.0.2.1"), rng=random.Random(seed))
        seen.add(int(plan.subnet.network_address))
    first, last = min(seen), max(seen)
    assert ipaddress.IPv4Address(first) == ipaddress.IPv4Address("10.5.1.0")
    assert ipaddress.IPv4Address(last) <= ipaddress.IPv4Address("10.5.100.0")
    assert len(seen) > 50


def test_plan_update_when_attributes_differ_and_incompatible_replaced():
    mine = lease("10.5.7.0/24", "192.0.2.1")
    changed = dict(attrs("192.0.2.1"), BackendData={"x": 1})
    assert L.plan_lease(CFG, [mine], [], "192.0.2.1", changed).action == "update"
    small = from_dict({"Network": "10.5.0.0/16", "SubnetMax": "10.5.5.0"})
    plan = L.plan_lease(small, [mine], [], "192.0.2.1", attrs("192.0.2.1"), rng=random.Random(0))
    assert plan.action == "create" and plan.release == [mine] and small.contains_lease(plan.subnet)


def test_plan_requested_and_relet():
    mine = lease("10.5.7.0/24", "192.0.2.1")
    other = lease("10.5.8.0/24", "192.0.2.2")
    with pytest.raises(L.LeaseError, match="10.5.8.0/24 is leased to 192.0.2.2"):
        L.plan_lease(CFG, [mine, other], [], "192.0.2.1", attrs("192.0.2.1"), requested=other.subnet)
    with pytest.raises(L.LeaseError, match="not a leasable subnet"):
        L.plan_lease(CFG, [], [], "192.0.2.1", attrs("192.0.2.1"), requested=ipaddress.IPv4Network("10.5.0.0/24"))
    move = L.plan_lease(CFG, [mine, other], [], "192.0.2.1", attrs("192.0.2.1"), requested=ipaddress.IPv4Network("10.5.20.0/24"))
    assert move.action == "create" and move.release == [mine]
    relet = L.plan_lease(CFG, [mine, other], [], "192.0.2.1", attrs("192.0.2.1"), relet=True,
                         previous=mine.subnet, rng=random.Random(3))
    assert relet.action == "create" and relet.subnet not in (mine.subnet, other.subnet) and relet.release == [mine]


def test_plan_exhaustion_message():
    tiny = from_dict({"Network": "10.5.0.0/28"})  # /30 subnets: .4, .8, .12 leasable
    held = [lease("10.5.0.4/30", "192.0.2.1"), lease("10.5.0.8/30", "192.0.2.2"), lease("10.5.0.12/30", "192.0.2.3")]
    with pytest.raises(L.ExhaustedError) as err:
        L.plan_lease(tiny, held, [], "192.0.2.4", attrs("192.0.2.4"))
    assert str(err.value) == "no free subnet in 10.5.0.4/30..10.5.0.12/30 (3 leased)"


def test_json_value_key_order():
    assert list(json.loads(L.encode_value("1.2.3.4"))) == ["PublicIP", "PublicIPv6", "BackendType", "BackendData"]


def test_lease_entries_as_subnet_info_returns_them():
    held, reserved, gone = lease("10.5.3.0/24", "192.0.2.3", 7), lease("10.5.4.0/24", "192.0.2.4", 0), \
        lease("10.5.5.0/24", "192.0.2.5", 9)
    # lease 9 expired between the listing and the TTL request: etcd answers -1
    got = L.lease_entries([held, reserved, gone], {7: (120, 86400), 9: (-1, 0)}, 1700000000)
    assert got[0] == dict(subnet="10.5.3.0/24", public_ip="192.0.2.3", backend_type="udp",
                          key="/coreos.com/network/subnets/10.5.3.0-24", reservation=False,
                          expires_at="2023-11-14T22:15:20Z", ttl_remaining=120)
    assert (got[1]["reservation"], got[1]["expires_at"], got[1]["ttl_remaining"]) == (True, None, None)
    assert (got[2]["ttl_remaining"], got[2]["expires_at"]) == (0, "2023-11-14T22:13:20Z")
