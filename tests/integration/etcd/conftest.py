import itertools

import pytest

from support.etcd_server import EtcdServer
from support.modules import run_module

_counter = itertools.count()


@pytest.fixture(scope="session")
def etcd_server():
    server = EtcdServer(name="modules").start()
    yield server
    server.stop()


@pytest.fixture
def prefix(request):
    """A key prefix of this test's own, so tests never see each other's keys."""
    return "/test/%d-%s/network" % (next(_counter), request.node.name[:40].replace("[", "-").replace("]", ""))


@pytest.fixture
def etcd(etcd_server, prefix):
    """Module arguments that point at the test etcd and this test's prefix."""
    return {"etcd_endpoints": [etcd_server.endpoint], "etcd_prefix": prefix}


@pytest.fixture
def client(etcd_server):
    from ansible_collections.overlay.flannel.plugins.module_utils.etcd_client import EtcdClient
    c = EtcdClient([etcd_server.endpoint])
    yield c
    c.close()


@pytest.fixture
def net(etcd):
    """`etcd` with a network config (10.5.0.0/16) stored under this test's prefix."""
    res = run_module("network", dict(etcd, network="10.5.0.0/16"))
    assert res["changed"], res
    return etcd
