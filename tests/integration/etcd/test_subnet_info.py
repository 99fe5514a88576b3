"""overlay.flannel.subnet_info against a real etcd."""

from ansible_collections.overlay.flannel.plugins.module_utils.etcd_client import EtcdClient, put
from ansible_collections.overlay.flannel.plugins.module_utils.store import FlannelStore
from support.modules import run_module


def test_lists_sorted_with_ttls_and_filters(etcd):
    run_module("network", dict(etcd, network="10.5.0.0/16"))
    for ip, subnet, ttl in (("192.0.2.3", "10.5.30.0/24", 86400), ("192.0.2.1", "10.5.10.0/24", 600),
                            ("192.0.2.2", "10.5.20.0/24", 0)):
        res = run_module("subnet", dict(etcd, public_ip=ip, subnet=subnet, ttl=ttl, renew_margin=60))
        assert res["changed"], res
    info = run_module("subnet_info", etcd, check=True)
    assert info["changed"] is False
    assert info["config"]["Network"] == "10.5.0.0/16" and info["config_error"] is None
    assert [(e["subnet"], e["public_ip"]) for e in info["leases"]] == [
        ("10.5.10.0/24", "192.0.2.1"), ("10.5.20.0/24", "192.0.2.2"), ("10.5.30.0/24", "192.0.2.3")]
    by_ip = {e["public_ip"]: e for e in info["leases"]}
    assert 590 <= by_ip["192.0.2.1"]["ttl_remaining"] <= 600 and by_ip["192.0.2.1"]["reservation"] is False
    assert by_ip["192.0.2.2"]["reservation"] is True and by_ip["192.0.2.2"]["ttl_remaining"] is None
    assert 86390 <= by_ip["192.0.2.3"]["ttl_remaining"] <= 86400
    assert by_ip["192.0.2.3"]["expires_at"].endswith("Z") and by_ip["192.0.2.3"]["backend_type"] == "udp"
    assert by_ip["192.0.2.3"]["key"] == etcd["etcd_prefix"] + "/subnets/10.5.30.0-24"
    only = run_module("subnet_info", dict(etcd, public_ip="192.0.2.2"))
    assert [e["subnet"] for e in only["leases"]] == ["10.5.20.0/24"]
    inside = run_module("subnet_info", dict(etcd, subnet="10.5.16.0/21"))
    assert [e["subnet"] for e in inside["leases"]] == ["10.5.20.0/24"]
    bad = run_module("subnet_info", dict(etcd, public_ip="nope"))
    assert bad["failed"] and "public_ip 'nope' is not an IPv4 address" in bad["msg"]


def test_garbage_keys_are_reported_not_fatal(etcd, client):
    prefix = etcd["etcd_prefix"]
    run_module("network", dict(etcd, network="10.5.0.0/16"))
    run_module("subnet", dict(etcd, public_ip="192.0.2.1", subnet="10.5.1.0/24"))
    client.txn([], [put(prefix + "/subnets/garbage", "x"), put(prefix + "/subnets/10.5.2.0-24", "{oops"),
                    put(prefix + "/subnets/10.5.3.0-24", '{"PublicIP": 12}')])
    info = run_module("subnet_info", etcd)
    assert [e["subnet"] for e in info["leases"]] == ["10.5.1.0/24"]
    errors = {e["key"].rsplit("/", 1)[1]: e["error"] for e in info["invalid"]}
    assert set(errors) == {"garbage", "10.5.2.0-24", "10.5.3.0-24"}
    assert "not of the form" in errors["garbage"] and "not valid JSON" in errors["10.5.2.0-24"]
    assert "PublicIP" in errors["10.5.3.0-24"]
    # A subnet whose key holds garbage is never handed to another host.
    res = run_module("subnet", dict(etcd, public_ip="192.0.2.9", previous_subnet="10.5.2.0/24"))
    assert res["changed"] and res["subnet"] != "10.5.2.0/24"
    req = run_module("subnet", dict(etcd, public_ip="192.0.2.9", subnet="10.5.3.0/24"))
    assert req["failed"] and "unreadable" in req["msg"]


def test_listing_costs_two_round_trips_whatever_the_number_of_leases(etcd_server, etcd):
    run_module("network", dict(etcd, network="10.5.0.0/16"))
    client = EtcdClient([etcd_server.endpoint])
    store = FlannelStore(client, etcd["etcd_prefix"])
    for i in range(60):
        store.acquire("192.0.2.%d" % (i + 1), ttl=3600 + i, renew_margin=60)
    reader = EtcdClient([etcd_server.endpoint])
    rstore = FlannelStore(reader, etcd["etcd_prefix"])
    snap = rstore.snapshot()
    ttls = rstore.ttls(snap.leases)
    assert len(snap.leases) == 60 and len(ttls) == 60
    assert reader.round_trips == 2
    assert sorted(granted for _remaining, granted in ttls.values()) == [3600 + i for i in range(60)]
