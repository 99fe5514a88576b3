"""The etcd adapter against real servers: failover, TLS, auth, and errors that name the endpoint."""

import socket

import pytest

from ansible_collections.overlay.flannel.plugins.module_utils.etcd_client import EtcdClient, EtcdUnavailable
from support.etcd_server import EtcdServer, free_port
from support.modules import run_module
from support.tls import make_pki


def dead_endpoint():
    return "http://127.0.0.1:%d" % free_port()


def test_first_endpoint_dead_second_alive(etcd, prefix):
    dead = dead_endpoint()
    args = dict(etcd, etcd_endpoints=[dead] + etcd["etcd_endpoints"])
    res = run_module("network", dict(args, network="10.5.0.0/16"))
    assert res["changed"], res
    lease = run_module("subnet", dict(args, public_ip="192.0.2.10"))
    assert lease["changed"] and lease["subnet"].startswith("10.5."), lease
    info = run_module("subnet_info", args)
    assert [entry["public_ip"] for entry in info["leases"]] == ["192.0.2.10"]


def test_failover_mid_session_when_the_current_endpoint_dies(tmp_path):
    first = EtcdServer(name="a").start()
    try:
        client = EtcdClient([first.endpoint, dead_endpoint()], timeout=2)
        assert client.get("/nothing") is None
        assert client.endpoint == first.endpoint
        first.pause()
        with pytest.raises(EtcdUnavailable) as err:
            client.get("/nothing")
        # Both endpoints are named, each with its cause.
        assert first.endpoint in str(err.value) and "connection refused" in str(err.value)
        first.start()
        assert client.get("/nothing") is None
    finally:
        first.stop()


def test_all_endpoints_dead_gives_one_line_naming_them():
    eps = [dead_endpoint(), dead_endpoint()]
    res = run_module("subnet", dict(etcd_endpoints=eps, public_ip="192.0.2.1", etcd_timeout=2))
    assert res["failed"]
    assert res["msg"].startswith("no etcd endpoint answered: ")
    for ep in eps:
        assert "%s (connection refused)" % ep in res["msg"]
    assert "\n" not in res["msg"]


def test_unresponsive_endpoint_times_out_with_the_timeout_named():
    # A listening socket that never speaks HTTP/2: the request must time out, not hang.
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(5)
    try:
        url = "http://127.0.0.1:%d" % sock.getsockname()[1]
        res = run_module("subnet_info", dict(etcd_endpoints=[url], etcd_timeout=1.5))
        assert res["failed"] and url in res["msg"] and "no answer within 1.5s" in res["msg"], res["msg"]
    finally:
        sock.close()


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    pki = make_pki(str(tmp_path_factory.mktemp("pki")))
    server = EtcdServer(name="tls", tls=pki).start()
    yield server, pki
    server.stop()


def test_tls_with_ca_and_client_certificate(tls_server):
    server, pki = tls_server
    args = dict(etcd_endpoints=[server.endpoint], etcd_ca_cert=pki["ca.pem"], etcd_client_cert=pki["client.pem"],
                etcd_client_key=pki["client-key.pem"])
    assert server.endpoint.startswith("https://")
    res = run_module("network", dict(args, network="10.7.0.0/16"))
    assert res["changed"], res
    assert run_module("subnet", dict(args, public_ip="192.0.2.5"))["changed"]
    assert '"Network":"10.7.0.0/16"' in server.etcdctl("get", "/coreos.com/network/config", "--print-value-only")


def test_tls_errors_are_named(tls_server):
    server, pki = tls_server
    no_client_cert = run_module("subnet_info", dict(etcd_endpoints=[server.endpoint], etcd_ca_cert=pki["ca.pem"],
                                                    etcd_timeout=3))
    assert no_client_cert["failed"] and server.endpoint in no_client_cert["msg"], no_client_cert
    assert "client certificate" in no_client_cert["msg"]
    # The hints name the modules' options (the daemon's flags: test_the_daemons_tls_errors_name_its_settings).
    assert "client certificate: etcd_client_cert and etcd_client_key" in no_client_cert["msg"], no_client_cert["msg"]
    untrusted = run_module("subnet_info", dict(etcd_endpoints=[server.endpoint], etcd_timeout=3))
    assert untrusted["failed"] and "server certificate is not trusted (check etcd_ca_cert)" in untrusted["msg"], \
        untrusted["msg"]
    plain = run_module("subnet_info", dict(etcd_endpoints=[server.endpoint.replace("https", "http")], etcd_timeout=3))
    assert plain["failed"] and server.endpoint.replace("https", "http") in plain["msg"]
    missing = run_module("subnet_info", dict(etcd_endpoints=[server.endpoint], etcd_ca_cert="/nonexistent/ca.pem"))
    assert missing["failed"] and "cannot read etcd CA certificate /nonexistent/ca.pem" in missing["msg"]
    half = run_module("subnet_info", dict(etcd_endpoints=[server.endpoint], etcd_client_cert=pki["client.pem"]))
    assert half["failed"] and "etcd_client_key" in half["msg"]


def test_the_daemons_tls_errors_name_its_settings(tls_server):
    from flannel_forwarder.config import etcd_client_options, parse

    server, pki = tls_server

    def failure(argv, environ):
        settings, _action = parse(["--etcd-endpoints", server.endpoint] + argv, environ)
        with EtcdClient(timeout=3, **etcd_client_options(settings)) as client:
            with pytest.raises(EtcdUnavailable) as err:
                client.get("/nothing")
        assert "etcd_c" not in str(err.value), str(err.value)
        return str(err.value)

    assert "server certificate is not trusted (check --etcd-cafile / FLANNELD_ETCD_CAFILE)" in failure([], {})
    assert "it may require a client certificate: --etcd-certfile / FLANNELD_ETCD_CERTFILE and --etcd-keyfile / " \
           "FLANNELD_ETCD_KEYFILE" in failure([], {"FLANNELD_ETCD_CAFILE": pki["ca.pem"]})


def test_user_password_auth():
    server = EtcdServer(name="auth").start()
    try:
        server.etcdctl("user", "add", "root:rootpw")
        server.etcdctl("user", "add", "flannel:s3cret")
        server.etcdctl("role", "add", "flannel")
        server.etcdctl("role", "grant-permission", "flannel", "--prefix=true", "readwrite", "/coreos.com/network/")
        server.etcdctl("user", "grant-role", "flannel", "flannel")
        server.etcdctl("auth", "enable")
        ok = dict(etcd_endpoints=[server.endpoint], etcd_user="flannel", etcd_password="s3cret")
        res = run_module("network", dict(ok, network="10.5.0.0/16"))
        assert res["changed"], res
        lease = run_module("subnet", dict(ok, public_ip="192.0.2.7"))
        assert lease["changed"], lease
        # The password never shows in what the module returns.
        assert "s3cret" not in repr(lease)
        wrong = run_module("subnet_info", dict(ok, etcd_password="nope"))
        assert wrong["failed"] and "authentication as 'flannel' failed" in wrong["msg"] and server.endpoint in wrong["msg"]
        none = run_module("subnet_info", dict(etcd_endpoints=[server.endpoint]))
        assert none["failed"] and server.endpoint in none["msg"]
        outside = run_module("subnet_info", dict(ok, etcd_prefix="/elsewhere/network"))
        assert outside["failed"] and "permission denied" in outside["msg"]
    finally:
        server.stop()
