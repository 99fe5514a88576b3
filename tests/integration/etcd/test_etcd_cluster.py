"""The 3-member TLS + auth etcd launcher (tests/support/etcd_cluster.py) on loopback, real processes.

The cluster tests provision through this launcher, so its members, its
permissions and its fault operations (kill, replace) are proven here first.
"""

import os
import time

import pytest

from support.etcd_cluster import EtcdCluster, EtcdError
from support.modules import run_module

PREFIX = "/coreos.com/network"


@pytest.fixture(scope="module")
def ec(tmp_path_factory):
    # three members on 127.0.0.1, 127.0.0.2, 127.0.0.3 (all loopback) with free ports
    base = str(tmp_path_factory.mktemp("etcd-cluster"))
    c = EtcdCluster(["127.0.0.1", "127.0.0.2", "127.0.0.3"], base, client_port=None, peer_port=None,
                    prefix=PREFIX).start()
    yield c
    assert c.destroy() == []
    assert not os.path.exists(base)


def test_three_healthy_members_over_tls(ec):
    assert ec.health() == {"etcd1": True, "etcd2": True, "etcd3": True}
    assert [m["name"] for m in sorted(ec.member_list(), key=lambda m: m["name"])] == ["etcd1", "etcd2", "etcd3"]
    assert all(url.startswith("https://127.0.0.") for url in ec.endpoints)
    assert len(set(ec.pids().values())) == 3
    peers = {url for m in ec.member_list() for url in m["peerURLs"]}
    assert len(peers) == 3 and all(u.startswith("https://") for u in peers)
    assert sum(1 for st in ec.endpoint_status().values() if st["leader"]) == 1
    # plain HTTP, no client certificate, and no credentials are all refused
    plain = ec.etcdctl("get", "x", endpoints=[ec.endpoints[0].replace("https", "http")], check=False)
    assert plain.returncode != 0
    anonymous = ec.etcdctl("get", PREFIX + "/config", user=None, check=False)
    out = anonymous.stdout + anonymous.stderr
    assert anonymous.returncode != 0 and ("user name is empty" in out or "permission denied" in out), out
    st = os.stat(ec.client_key)
    assert st.st_mode & 0o077 == 0 and os.stat(ec.state_path).st_mode & 0o077 == 0


def test_certificate_authentication_is_the_cn_user_with_its_permissions(ec):
    """etcd's certificate authentication: with no password, a client certificate whose CN is the flannel
    user is that user (the modules work under the prefix, and nowhere else); the other certificate, whose
    CN is no user, gets nothing without a password."""
    args = ec.module_args(cert_auth=True)
    assert "etcd_user" not in args and "etcd_password" not in args
    res = run_module("network", dict(args, network="10.5.0.0/16"))
    assert not res.get("failed") and res["changed"], res
    res = run_module("subnet", dict(args, public_ip="192.0.2.77"))
    assert not res.get("failed") and res["subnet"], res
    outside = run_module("network", dict(args, etcd_prefix="/elsewhere/network", network="10.5.0.0/16"))
    assert outside.get("failed") and "permission denied" in outside["msg"], outside
    nobody = dict(args, etcd_client_cert=ec.client_cert, etcd_client_key=ec.client_key)
    res = run_module("subnet_info", nobody)
    assert res.get("failed") and ("permission denied" in res["msg"] or "user name is empty" in res["msg"]), res
    assert run_module("subnet", dict(args, public_ip="192.0.2.77", state="absent"))["changed"]
    ec.etcdctl("del", PREFIX + "/config")


def test_server_certificates_cover_every_member_address(ec):
    import subprocess
    for name in ec.names:
        text = subprocess.run(["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in",
                               ec.state["pki"]["members"][name]["cert"]], capture_output=True, text=True,
                              check=True).stdout
        for addr in ("127.0.0.1", "127.0.0.2", "127.0.0.3"):
            assert "IP Address:%s" % addr in text


def test_flannel_user_reads_and_writes_under_the_prefix_only(ec):
    ec.etcdctl("put", PREFIX + "/subnets/10.5.1.0-24", "v1", user="flannel")
    assert ec.etcdctl("get", PREFIX + "/subnets/10.5.1.0-24", "--print-value-only", user="flannel").strip() == "v1"
    assert "v1" in ec.etcdctl("get", "--prefix", PREFIX + "/", user="flannel")
    ec.etcdctl("del", PREFIX + "/subnets/10.5.1.0-24", user="flannel")
    for args in (("put", "/outside", "x"), ("get", "/outside"), ("put", PREFIX + "x", "x"),
                 ("get", "--prefix", "/coreos.com/"), ("get", "--prefix", ""),
                 ("user", "list"), ("role", "grant-permission", "flannel", "readwrite", "/outside")):
        res = ec.etcdctl(*args, user="flannel", check=False)
        assert res.returncode != 0 and "permission denied" in res.stderr, (args, res.stdout, res.stderr)


def test_root_reads_and_writes_everywhere(ec):
    ec.etcdctl("put", "/outside", "r")
    ec.etcdctl("put", PREFIX + "/config", '{"Network":"10.5.0.0/16"}')
    assert ec.get_prefix("/outside") == {"/outside": "r"}
    assert ec.get_prefix()[PREFIX + "/config"] == '{"Network":"10.5.0.0/16"}'
    assert "flannel" in ec.etcdctl("user", "list")
    ec.etcdctl("del", "/outside")


def test_the_modules_work_as_the_flannel_user(ec):
    args = ec.module_args()
    assert args["etcd_user"] == "flannel" and args["etcd_password"] == ec.password
    res = run_module("network", dict(args, network="10.5.0.0/16"))
    assert not res.get("failed"), res
    res = run_module("subnet", dict(args, public_ip="192.0.2.41"))
    assert not res.get("failed"), res
    info = run_module("subnet_info", args)
    assert not info.get("failed"), info
    assert [lease["public_ip"] for lease in info["leases"]] == ["192.0.2.41"]
    wrong = run_module("subnet_info", dict(args, etcd_password="not-the-password", etcd_timeout=3))
    assert wrong.get("failed")
    assert ec.password not in str(wrong) and ec.password not in str(res)


def test_dual_stack_pairs_and_their_claims_as_the_flannel_user(ec):
    """A dual-stack lease writes its key and the claims of its halves in one transaction: all under the prefix
    the flannel user may use (its own sub-prefix here, so the other tests' keys stay as they are)."""
    args = dict(ec.module_args(), etcd_prefix=PREFIX + "/dual")
    res = run_module("network", dict(args, network="10.5.0.0/16", ipv6_network="fd00:5::/48", backend={"type": "vxlan"}))
    assert res["changed"], res
    res = run_module("subnet", dict(args, public_ip="192.0.2.41", public_ipv6="2001:db8::41", subnet="10.5.41.0/24",
                                    ipv6_subnet="fd00:5:0:41::/64"))
    assert res["changed"] and res["lease_key"] == PREFIX + "/dual/subnets/10.5.41.0-24&fd00:5:0:41::-64", res
    keys = ec.get_prefix(PREFIX + "/dual/")
    assert keys[PREFIX + "/dual/claims/10.5.41.0-24"] == keys[PREFIX + "/dual/claims/fd00:5:0:41::-64"] == \
        res["lease_key"]
    gone = run_module("subnet", dict(args, public_ip="192.0.2.41", state="absent"))
    assert gone["released_ipv6"] == ["fd00:5:0:41::/64"]
    assert sorted(ec.get_prefix(PREFIX + "/dual/")) == [PREFIX + "/dual/config"]


def test_leader_killed_a_new_one_is_elected(ec):
    old = ec.leader()
    assert old
    ec.kill(old)
    assert not ec.alive(old)
    deadline = time.monotonic() + 15
    new = None
    while time.monotonic() < deadline:
        new = ec.leader()
        if new and new != old:
            break
        time.sleep(0.2)
    assert new and new != old
    ec.etcdctl("put", PREFIX + "/after-kill", "1", user="flannel")
    ec.start(old)
    assert ec.health() == {n: True for n in ec.names}
    assert ec.etcdctl("get", PREFIX + "/after-kill", "--print-value-only", user="flannel",
                      endpoints=[ec.local_url(old)]).strip() == "1"


def test_stop_and_start_keep_the_data(ec):
    ec.etcdctl("put", PREFIX + "/kept", "k")
    ec.stop_all()
    assert ec.pids() == {}
    ec.start_all()
    assert ec.get_prefix(PREFIX + "/kept") == {PREFIX + "/kept": "k"}


def test_replace_a_member_keeps_the_endpoints_and_the_data(ec):
    endpoints = list(ec.endpoints)
    before = {m["name"]: m["id"] for m in ec.member_list()}
    ec.etcdctl("put", PREFIX + "/before-replace", "b", user="flannel")
    ec.replace("etcd2")
    assert ec.endpoints == endpoints
    assert ec.health() == {n: True for n in ec.names}
    after = {m["name"]: m["id"] for m in ec.member_list()}
    assert set(after) == {"etcd1", "etcd2", "etcd3"}
    assert after["etcd2"] != before["etcd2"] and after["etcd1"] == before["etcd1"]
    # the new member has the data (replicated from the others) and serves the flannel user
    assert ec.etcdctl("get", PREFIX + "/before-replace", "--print-value-only", user="flannel",
                      endpoints=[ec.local_url("etcd2")]).strip() == "b"


def test_compact_and_load_from_another_process(ec):
    ec.etcdctl("put", PREFIX + "/c", "1")
    ec.etcdctl("put", PREFIX + "/c", "2")
    rev = ec.compact()
    old = ec.etcdctl("get", PREFIX + "/c", "--rev", str(rev - 1), check=False)
    assert old.returncode != 0 and "compacted" in old.stderr
    again = EtcdCluster.load(ec.base_dir)
    assert again.pids() == ec.pids() and again.endpoints == ec.endpoints
    assert again.password == ec.password


def test_a_member_address_cannot_be_shared_on_a_fixed_port(tmp_path):
    with pytest.raises(ValueError):
        EtcdCluster(["127.0.0.1"] * 3, str(tmp_path))
    c = EtcdCluster(["127.0.0.1"], str(tmp_path / "one"), client_port=None, peer_port=None)
    with pytest.raises(EtcdError):
        c.replace("etcd1")
