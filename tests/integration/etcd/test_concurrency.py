"""Many hosts leasing at once against a real etcd: never two hosts on one subnet."""

from ansible_collections.overlay.flannel.plugins.module_utils.leases import ExhaustedError
from support.modules import run_module
from support.racing import acquire_all


def lease_count(server):
    out = server.etcdctl("lease", "list")
    # "found N leases" on the first line
    return int(out.split()[1])


def test_200_hosts_at_once_get_200_distinct_subnets(etcd, etcd_server, prefix, client):
    assert run_module("network", dict(etcd, network="10.5.0.0/16"))["changed"]
    leases_before = lease_count(etcd_server)
    ips = ["192.0.%d.%d" % (2 + i // 200, 1 + i % 200) for i in range(200)]
    results = acquire_all(etcd_server, prefix, ips)
    errors = {ip: r for ip, r in results.items() if isinstance(r, Exception)}
    assert not errors, list(errors.items())[:3]
    subnets = [str(r.lease.subnet) for r in results.values()]
    assert len(subnets) == 200 and len(set(subnets)) == 200
    _rev, kvs = client.get_prefix(prefix + "/subnets/")
    assert len(kvs) == 200
    # Every key holds the lease of the host that was told it won it.
    stored = {kv.key.rsplit("/", 1)[1]: kv.value for kv in kvs}
    for ip, r in results.items():
        assert ('"PublicIP":"%s"' % ip).encode() in stored[r.lease.key.rsplit("/", 1)[1]]
    # No etcd lease was left behind by a lost race: one per key.
    assert lease_count(etcd_server) - leases_before == 200


def test_small_network_runs_out_cleanly(etcd, etcd_server, prefix, client):
    # /28 with flannel's default /30 subnets: .4, .8 and .12 are leasable.
    assert run_module("network", dict(etcd, network="10.9.0.0/28"))["changed"]
    leases_before = lease_count(etcd_server)
    ips = ["192.0.2.%d" % i for i in range(1, 11)]
    results = acquire_all(etcd_server, prefix, ips)
    won = [r for r in results.values() if not isinstance(r, Exception)]
    lost = [r for r in results.values() if isinstance(r, Exception)]
    assert len(won) == 3 and len(set(str(r.lease.subnet) for r in won)) == 3
    assert len(lost) == 7
    for exc in lost:
        assert isinstance(exc, ExhaustedError), exc
        assert str(exc) == "no free subnet in 10.9.0.4/30..10.9.0.12/30 (3 leased)"
    _rev, kvs = client.get_prefix(prefix + "/subnets/")
    assert sorted(kv.key.rsplit("/", 1)[1] for kv in kvs) == ["10.9.0.12-30", "10.9.0.4-30", "10.9.0.8-30"]
    assert lease_count(etcd_server) - leases_before == 3
    # Through the module, the same message.
    res = run_module("subnet", dict(etcd, public_ip="192.0.2.99"))
    assert res["failed"] and res["msg"] == "no free subnet in 10.9.0.4/30..10.9.0.12/30 (3 leased)"
