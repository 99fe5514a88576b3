"""overlay.flannel.subnet renew=true and lease <-> reservation conversions against a real etcd (renew.yml's module)."""

import time

from support.modules import lease_keys, run_module

IP = "192.0.2.10"


def only_kv(client, prefix):
    kvs = lease_keys(client, prefix)
    assert len(kvs) == 1, kvs
    return list(kvs.values())[0]


def test_renew_now_extends_to_the_full_ttl(net, client, prefix):
    made = run_module("subnet", dict(net, public_ip=IP, ttl=600, renew_margin=60))
    assert made["changed"] and made["previous_expires_at"] is None and made["previous_reservation"] is False
    lease_id = only_kv(client, prefix).lease
    time.sleep(3)
    # Outside the margin: without renew nothing happens ...
    kept = run_module("subnet", dict(net, public_ip=IP, ttl=600, renew_margin=60))
    assert kept["changed"] is False and kept["action"] == "keep" and kept["ttl"] <= 598
    # ... with renew the etcd lease is back at its full TTL now, the same etcd lease and key.
    renewed = run_module("subnet", dict(net, public_ip=IP, ttl=600, renew_margin=60, renew=True), diff=True)
    assert renewed["changed"] and renewed["action"] == "renew", renewed
    assert renewed["ttl"] == 600 and renewed["subnet"] == made["subnet"]
    assert renewed["previous_expires_at"] < renewed["expires_at"], renewed
    assert renewed["diff"]["before"]["expires_at"] == renewed["previous_expires_at"]
    assert renewed["diff"]["after"]["expires_at"] == renewed["expires_at"]
    kv = only_kv(client, prefix)
    assert kv.lease == lease_id
    remaining, granted = client.time_to_live([lease_id])[lease_id]
    assert granted == 600 and remaining >= 598
    # A renewal to the full TTL moves the expiry: a change every time.
    assert run_module("subnet", dict(net, public_ip=IP, ttl=600, renew_margin=60, renew=True))["changed"] is True


def test_renew_in_check_mode_changes_nothing(net, client, prefix):
    run_module("subnet", dict(net, public_ip=IP, ttl=600, renew_margin=60))
    lease_id = only_kv(client, prefix).lease
    time.sleep(3)
    before = client.time_to_live([lease_id])[lease_id][0]
    check = run_module("subnet", dict(net, public_ip=IP, ttl=600, renew_margin=60, renew=True), check=True, diff=True)
    assert check["changed"] and check["action"] == "renew" and check["ttl"] == 600
    assert check["diff"]["before"]["expires_at"] < check["diff"]["after"]["expires_at"]
    assert client.time_to_live([lease_id])[lease_id][0] <= before


def test_lease_reservation_lease_round_trip_keeps_the_subnet(net, client, prefix):
    made = run_module("subnet", dict(net, public_ip=IP, ttl=600, renew_margin=60))
    key = made["lease_key"].rsplit("/", 1)[1]
    old_lease = only_kv(client, prefix).lease
    assert old_lease != 0

    # --check --diff: what would change, and nothing changes.
    check = run_module("subnet", dict(net, public_ip=IP, ttl=0, renew_margin=60, subnet=made["subnet"]),
                       check=True, diff=True)
    assert check["changed"] and check["action"] == "update" and check["subnet"] == made["subnet"], check
    assert check["diff"]["before"]["reservation"] is False and check["diff"]["after"]["reservation"] is True
    assert check["diff"]["after"]["expires_at"] is None and check["diff"]["before"]["expires_at"]
    assert only_kv(client, prefix).lease == old_lease
    assert client.time_to_live([old_lease])[old_lease][0] > 0

    # lease -> reservation: same key, no etcd lease, the old one revoked (the key survives it).
    reserved = run_module("subnet", dict(net, public_ip=IP, ttl=0, renew_margin=60, renew=True), diff=True)
    assert reserved["changed"] and reserved["subnet"] == made["subnet"], reserved
    assert reserved["ttl"] == 0 and reserved["expires_at"] is None
    assert reserved["previous_expires_at"] and reserved["previous_reservation"] is False
    kv = lease_keys(client, prefix)[key]
    assert list(lease_keys(client, prefix)) == [key] and kv.lease == 0
    assert client.time_to_live([old_lease])[old_lease] == (-1, 0), "the old etcd lease was not revoked"
    info = run_module("subnet_info", net)
    assert info["leases"][0]["reservation"] is True and info["leases"][0]["subnet"] == made["subnet"]

    # A second run of the same reservation command (renew or not, check mode or not) changes nothing.
    for check_mode in (True, False):
        again = run_module("subnet", dict(net, public_ip=IP, ttl=0, renew_margin=60, renew=True), check=check_mode,
                           diff=True)
        assert again["changed"] is False and again["action"] == "keep", again
        assert again["previous_reservation"] is True and again["previous_expires_at"] is None
        assert "diff" not in again
    assert lease_keys(client, prefix)[key].mod_revision == kv.mod_revision

    # reservation -> lease: the same subnet on a new etcd lease of the full TTL.
    back = run_module("subnet", dict(net, public_ip=IP, ttl=300, renew_margin=60, renew=True), diff=True)
    assert back["changed"] and back["subnet"] == made["subnet"] and back["ttl"] == 300, back
    assert back["previous_reservation"] is True and back["previous_expires_at"] is None
    assert back["diff"]["before"]["reservation"] is True and back["diff"]["after"]["reservation"] is False
    kv = lease_keys(client, prefix)[key]
    assert list(lease_keys(client, prefix)) == [key]
    assert kv.lease not in (0, old_lease)
    remaining, granted = client.time_to_live([kv.lease])[kv.lease]
    assert granted == 300 and remaining >= 298
    assert run_module("subnet", dict(net, public_ip=IP, ttl=300, renew_margin=60))["changed"] is False


def test_reservation_outlives_any_ttl(net, client, prefix):
    made = run_module("subnet", dict(net, public_ip=IP, ttl=3, renew_margin=1))
    reserved = run_module("subnet", dict(net, public_ip=IP, ttl=0, renew_margin=1))
    assert reserved["changed"] and reserved["subnet"] == made["subnet"]
    time.sleep(5)
    assert only_kv(client, prefix).lease == 0
    other = run_module("subnet", dict(net, public_ip="192.0.2.11", subnet=made["subnet"]))
    assert other["failed"] and "leased to %s" % IP in other["msg"]


def test_another_ttl_converts_on_the_same_subnet(net, client, prefix):
    made = run_module("subnet", dict(net, public_ip=IP, ttl=600, renew_margin=60))
    old_lease = only_kv(client, prefix).lease
    longer = run_module("subnet", dict(net, public_ip=IP, ttl=900, renew_margin=60))
    assert longer["changed"] and longer["subnet"] == made["subnet"] and longer["ttl"] == 900
    kv = only_kv(client, prefix)
    assert kv.lease != old_lease and client.time_to_live([kv.lease])[kv.lease][1] == 900
    assert client.time_to_live([old_lease])[old_lease] == (-1, 0)


def test_renew_of_a_pinned_subnet_without_a_lease(net, client, prefix):
    # renew.yml pins the subnet it read: a host whose subnet was taken meanwhile fails, it is not moved.
    run_module("subnet", dict(net, public_ip="192.0.2.11", subnet="10.5.40.0/24"))
    res = run_module("subnet", dict(net, public_ip=IP, subnet="10.5.40.0/24", renew=True))
    assert res["failed"] and "10.5.40.0/24 is leased to 192.0.2.11" in res["msg"], res
    assert list(lease_keys(client, prefix)) == ["10.5.40.0-24"]


def test_renew_option_is_checked(net):
    res = run_module("subnet", dict(net, public_ip=IP, renew="sometimes"))
    assert res["failed"] and "renew" in res["msg"], res
