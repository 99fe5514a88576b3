"""overlay.flannel.subnet against a real etcd: reuse, check mode, diff, reservations, expiry, bad input."""

import json
import time

import pytest

from support.modules import lease_keys, run_module


def test_lease_then_reuse_and_return_values(net, client, prefix):
    first = run_module("subnet", dict(net, public_ip="192.0.2.10"))
    assert first["changed"] and first["action"] == "create", first
    subnet = first["subnet"]
    base = subnet.split("/")[0]
    assert first["subnet_gateway"] == base.rsplit(".", 1)[0] + ".1/24"
    assert first["network"] == "10.5.0.0/16"
    assert first["lease_key"] == "%s/subnets/%s-24" % (prefix, base)
    assert first["ttl"] == 86400 and first["expires_at"].endswith("Z")
    kvs = lease_keys(client, prefix)
    assert list(kvs) == ["%s-24" % base]
    value = kvs["%s-24" % base].value
    assert value == b'{"PublicIP":"192.0.2.10","PublicIPv6":null,"BackendType":"udp","BackendData":null}'
    assert kvs["%s-24" % base].lease != 0
    second = run_module("subnet", dict(net, public_ip="192.0.2.10"))
    assert second["changed"] is False and second["action"] == "keep"
    assert second["subnet"] == subnet
    assert 86390 < second["ttl"] <= 86400


def test_check_mode_writes_nothing_and_diff(net, client, prefix):
    res = run_module("subnet", dict(net, public_ip="192.0.2.10"), check=True, diff=True)
    assert res["changed"] and res["action"] == "create"
    assert res["diff"]["before"] == {} and res["diff"]["after"]["public_ip"] == "192.0.2.10"
    assert lease_keys(client, prefix) == {}
    made = run_module("subnet", dict(net, public_ip="192.0.2.10"), diff=True)
    assert made["diff"]["after"]["subnet"] == made["subnet"]
    again = run_module("subnet", dict(net, public_ip="192.0.2.10", backend_data={"k": 1}), check=True, diff=True)
    assert again["changed"] and again["action"] == "update"
    assert again["diff"]["before"]["backend_data"] is None and again["diff"]["after"]["backend_data"] == {"k": 1}
    assert json.loads(lease_keys(client, prefix)[made["lease_key"].rsplit("/", 1)[1]].value)["BackendData"] is None


def test_attribute_change_rewrites_same_subnet(net, client, prefix):
    made = run_module("subnet", dict(net, public_ip="192.0.2.10"))
    upd = run_module("subnet", dict(net, public_ip="192.0.2.10", backend_data={"k": 1}))
    assert upd["changed"] and upd["action"] == "update" and upd["subnet"] == made["subnet"]
    kvs = lease_keys(client, prefix)
    assert len(kvs) == 1
    assert json.loads(list(kvs.values())[0].value)["BackendData"] == {"k": 1}
    assert run_module("subnet", dict(net, public_ip="192.0.2.10", backend_data={"k": 1}))["changed"] is False


def test_renewal_only_inside_the_margin(net, client, prefix):
    first = run_module("subnet", dict(net, public_ip="192.0.2.10", ttl=600, renew_margin=300))
    assert first["changed"], first
    assert run_module("subnet", dict(net, public_ip="192.0.2.10", ttl=600, renew_margin=300))["changed"] is False
    time.sleep(2)
    kv = list(lease_keys(client, prefix).values())[0]
    aged, _granted = client.time_to_live([kv.lease])[kv.lease]
    assert aged <= 598, aged  # the lease has aged (two module runs and 2 s), so a renewal shows as more time left
    renewed = run_module("subnet", dict(net, public_ip="192.0.2.10", ttl=600, renew_margin=599), diff=True)
    assert renewed["changed"] and renewed["action"] == "renew"
    assert renewed["ttl"] == 600
    kv = list(lease_keys(client, prefix).values())[0]
    remaining, granted = client.time_to_live([kv.lease])[kv.lease]
    # more time left than before the renewal (no fixed bound: the module run's own time varies with the load)
    assert granted == 600 and remaining > aged, (aged, remaining)


def test_previous_subnet_honoured_when_free_refused_when_taken(net, client, prefix):
    res = run_module("subnet", dict(net, public_ip="192.0.2.10", previous_subnet="10.5.77.1/24"))
    assert res["subnet"] == "10.5.77.0/24", res
    other = run_module("subnet", dict(net, public_ip="192.0.2.11", previous_subnet="10.5.77.1/24"))
    assert other["changed"] and other["subnet"] != "10.5.77.0/24"
    assert len(lease_keys(client, prefix)) == 2


def test_requested_subnet_and_conflicts(net, client, prefix):
    a = run_module("subnet", dict(net, public_ip="192.0.2.10", subnet="10.5.50.0/24"))
    assert a["subnet"] == "10.5.50.0/24"
    b = run_module("subnet", dict(net, public_ip="192.0.2.11", subnet="10.5.50.0/24"))
    assert b["failed"] and "10.5.50.0/24 is leased to 192.0.2.10" in b["msg"]
    moved = run_module("subnet", dict(net, public_ip="192.0.2.10", subnet="10.5.51.0/24"))
    assert moved["changed"] and moved["released"] == ["10.5.50.0/24"]
    assert sorted(lease_keys(client, prefix)) == ["10.5.51.0-24"]
    out = run_module("subnet", dict(net, public_ip="192.0.2.10", subnet="10.6.0.0/24"))
    assert out["failed"] and "not a leasable subnet of 10.5.0.0/16" in out["msg"]


def test_relet_moves_to_another_subnet_atomically(net, client, prefix):
    a = run_module("subnet", dict(net, public_ip="192.0.2.10"))
    moved = run_module("subnet", dict(net, public_ip="192.0.2.10", relet=True, previous_subnet=a["subnet"]), diff=True)
    assert moved["changed"] and moved["action"] == "relet"
    assert moved["subnet"] != a["subnet"] and moved["released"] == [a["subnet"]]
    assert moved["diff"]["before"]["subnet"] == a["subnet"]
    assert list(lease_keys(client, prefix)) == [moved["lease_key"].rsplit("/", 1)[1]]


def test_reservation_never_expires(net, client, prefix):
    res = run_module("subnet", dict(net, public_ip="192.0.2.10", ttl=0, subnet="10.5.9.0/24"))
    assert res["changed"] and res["ttl"] == 0 and res["expires_at"] is None
    kv = lease_keys(client, prefix)["10.5.9.0-24"]
    assert kv.lease == 0
    assert run_module("subnet", dict(net, public_ip="192.0.2.10", ttl=0))["changed"] is False
    info = run_module("subnet_info", net)
    assert info["leases"][0]["reservation"] is True and info["leases"][0]["expires_at"] is None
    # Turning a reservation into an expiring lease keeps the subnet.
    back = run_module("subnet", dict(net, public_ip="192.0.2.10", ttl=3600, renew_margin=60))
    assert back["changed"] and back["subnet"] == "10.5.9.0/24" and lease_keys(client, prefix)["10.5.9.0-24"].lease != 0


# Long enough that the module run asking for the held subnet surely comes before the expiry (a module run of
# the oldest ansible-core on a loaded CI machine takes a few seconds); the test waits for the expiry as an event.
SHORT_TTL = 8


def test_expired_lease_is_reclaimed(net, client, prefix):
    short = run_module("subnet", dict(net, public_ip="192.0.2.10", ttl=SHORT_TTL, renew_margin=1,
                                      subnet="10.5.3.0/24"))
    assert short["changed"]
    taken = run_module("subnet", dict(net, public_ip="192.0.2.11", subnet="10.5.3.0/24"))
    assert taken.get("failed"), taken
    deadline = time.time() + SHORT_TTL + 15
    while time.time() < deadline and lease_keys(client, prefix):
        time.sleep(0.5)
    assert lease_keys(client, prefix) == {}, "etcd did not expire the %d s lease" % SHORT_TTL
    now = run_module("subnet", dict(net, public_ip="192.0.2.11", subnet="10.5.3.0/24"))
    assert now["changed"] and now["subnet"] == "10.5.3.0/24"


def test_absent_releases_and_revokes(net, client, prefix):
    a = run_module("subnet", dict(net, public_ip="192.0.2.10"))
    lease_id = list(lease_keys(client, prefix).values())[0].lease
    check = run_module("subnet", dict(net, public_ip="192.0.2.10", state="absent"), check=True)
    assert check["changed"] and len(lease_keys(client, prefix)) == 1
    gone = run_module("subnet", dict(net, public_ip="192.0.2.10", state="absent"), diff=True)
    assert gone["changed"] and gone["released"] == [a["subnet"]] and gone["diff"]["after"] == {}
    assert lease_keys(client, prefix) == {}
    assert client.time_to_live([lease_id])[lease_id][0] == -1
    assert run_module("subnet", dict(net, public_ip="192.0.2.10", state="absent"))["changed"] is False


def test_incompatible_lease_is_replaced(net, client, prefix):
    run_module("subnet", dict(net, public_ip="192.0.2.10", subnet="10.5.200.0/24"))
    run_module("network", dict(net, network="10.5.0.0/16", subnet_max="10.5.100.0", force=True))
    res = run_module("subnet", dict(net, public_ip="192.0.2.10"))
    assert res["changed"] and res["released"] == ["10.5.200.0/24"]
    assert int(res["subnet"].split(".")[2]) <= 100
    assert len(lease_keys(client, prefix)) == 1


@pytest.mark.parametrize("args, words", [
    (dict(public_ip="not-an-ip"), "public_ip 'not-an-ip' is not an IPv4 address"),
    (dict(public_ip="192.0.2.1", subnet="10.5.1.0"), "subnet '10.5.1.0' is not an IPv4 CIDR"),
    (dict(public_ip="192.0.2.1", subnet="10.5.1.7/24"), "host bits set"),
    (dict(public_ip="192.0.2.1", previous_subnet="banana"), "previous_subnet 'banana'"),
    (dict(public_ip="192.0.2.1", ttl=-5), "ttl must be 0"),
    (dict(public_ip="192.0.2.1", ttl=100, renew_margin=100), "renew_margin (100) must be smaller than ttl (100)"),
    (dict(public_ip="192.0.2.1", ttl="soon"), "ttl"),
    (dict(public_ip="192.0.2.1", subnet="10.5.1.0/24", relet=True), "mutually exclusive"),
    (dict(public_ip="192.0.2.1", etcd_endpoints=["127.0.0.1:2379"]), "must be a URL"),
    (dict(public_ip="192.0.2.1", etcd_endpoints=["ftp://127.0.0.1:2379"]), "scheme must be http or https"),
    (dict(public_ip="192.0.2.1", etcd_user="root"), "etcd_password"),
])
def test_bad_input(net, client, prefix, args, words):
    res = run_module("subnet", dict(net, **args))
    assert res.get("failed"), res
    assert words in res["msg"], res["msg"]
    assert lease_keys(client, prefix) == {}


def test_no_config_is_a_clear_error(etcd, client):
    res = run_module("subnet", dict(etcd, public_ip="192.0.2.1"))
    assert res["failed"] and "no network config at" in res["msg"] and "overlay.flannel.network" in res["msg"]
    # In check mode (a first --check of site.yml) it reports the lease it would create, with a warning.
    check = run_module("subnet", dict(etcd, public_ip="192.0.2.1"), check=True)
    assert check["changed"] and check["action"] == "create" and check["subnet"] is None
    assert "no network config" in str(check["warnings"])
    _rev, kvs = client.get_prefix(etcd["etcd_prefix"])
    assert kvs == []


def lease_value(client, prefix, subnet):
    return json.loads(lease_keys(client, prefix)[subnet.replace("/", "-")].value)


def test_subnet_on_a_vxlan_network_carries_the_derived_vtep_mac(etcd, client, prefix):
    res = run_module("network", dict(etcd, network="10.5.0.0/16", backend={"type": "vxlan", "vni": 4097}))
    assert res["changed"], res
    first = run_module("subnet", dict(etcd, public_ip="192.0.2.10"), diff=True)
    assert first["changed"] and first["action"] == "create", first
    # The kernel's port, as the VXLAN device uses it with Port 0.
    assert first["backend_port"] == 8472
    value = lease_value(client, prefix, first["subnet"])
    # 0e, the VNI's low byte (4097 = 0x1001), then 192.0.2.10: what the forwarder on the host computes too.
    assert value == {"PublicIP": "192.0.2.10", "PublicIPv6": None, "BackendType": "vxlan",
                     "BackendData": {"VNI": 4097, "VtepMAC": "0e:01:c0:00:02:0a"}}
    assert first["diff"]["after"]["backend_type"] == "vxlan"
    assert first["diff"]["after"]["backend_data"] == value["BackendData"]
    kv = lease_keys(client, prefix)[first["subnet"].replace("/", "-")]
    second = run_module("subnet", dict(etcd, public_ip="192.0.2.10"))
    assert second["changed"] is False and second["action"] == "keep", second
    assert second["subnet"] == first["subnet"]
    assert lease_keys(client, prefix)[first["subnet"].replace("/", "-")].mod_revision == kv.mod_revision
    # Another host gets another MAC.
    other = run_module("subnet", dict(etcd, public_ip="192.0.2.11"))
    assert lease_value(client, prefix, other["subnet"])["BackendData"] == {"VNI": 4097, "VtepMAC": "0e:01:c0:00:02:0b"}


def test_subnet_on_a_host_gw_network(etcd, client, prefix):
    run_module("network", dict(etcd, network="10.5.0.0/16", backend={"type": "host-gw"}))
    res = run_module("subnet", dict(etcd, public_ip="192.0.2.10"))
    assert res["changed"] and res["backend_port"] is None, res
    value = lease_value(client, prefix, res["subnet"])
    assert value["BackendType"] == "host-gw" and value["BackendData"] is None
    assert run_module("subnet", dict(etcd, public_ip="192.0.2.10"))["changed"] is False


def test_subnet_lease_follows_the_network_from_udp_to_vxlan_in_place(net, client, prefix):
    made = run_module("subnet", dict(net, public_ip="192.0.2.10"))
    assert made["changed"] and made["backend_port"] == 8285, made
    before = lease_keys(client, prefix)[made["subnet"].replace("/", "-")]
    assert json.loads(before.value)["BackendType"] == "udp"
    # The lease still fits the new config (same range): no force needed to store it.
    res = run_module("network", dict(net, network="10.5.0.0/16", backend={"type": "vxlan"}))
    assert res["changed"] and res["stranded_leases"] == [], res
    upd = run_module("subnet", dict(net, public_ip="192.0.2.10"), diff=True)
    assert upd["changed"] and upd["action"] == "update", upd
    assert upd["subnet"] == made["subnet"] and upd["released"] == []
    assert upd["diff"]["before"]["backend_type"] == "udp" and upd["diff"]["after"]["backend_type"] == "vxlan"
    kvs = lease_keys(client, prefix)
    assert list(kvs) == [made["subnet"].replace("/", "-")]
    after = kvs[made["subnet"].replace("/", "-")]
    assert json.loads(after.value) == {"PublicIP": "192.0.2.10", "PublicIPv6": None, "BackendType": "vxlan",
                                       "BackendData": {"VNI": 1, "VtepMAC": "0e:01:c0:00:02:0a"}}
    # Same etcd lease (the TTL fits): only the value was rewritten.
    assert after.lease == before.lease and after.create_revision == before.create_revision
    again = run_module("subnet", dict(net, public_ip="192.0.2.10"))
    assert again["changed"] is False and again["action"] == "keep", again


def test_subnet_explicit_backend_data_and_type_win(etcd, client, prefix):
    run_module("network", dict(etcd, network="10.5.0.0/16", backend={"type": "vxlan"}))
    mine = {"VNI": 1, "VtepMAC": "aa:bb:cc:dd:ee:01"}
    res = run_module("subnet", dict(etcd, public_ip="192.0.2.10", backend_data=mine))
    assert lease_value(client, prefix, res["subnet"])["BackendData"]["VtepMAC"] == "aa:bb:cc:dd:ee:01"
    # A lease of another type than the config's gets no vxlan BackendData by default.
    res = run_module("subnet", dict(etcd, public_ip="192.0.2.11", backend_type="udp"))
    value = lease_value(client, prefix, res["subnet"])
    assert value["BackendType"] == "udp" and value["BackendData"] is None
