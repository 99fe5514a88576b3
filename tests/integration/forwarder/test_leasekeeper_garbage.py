"""The forwarder's control plane against garbage in a real etcd, with real watch events.

The LeaseKeeper runs as in the daemon (claim, then its renewal and watch
threads over its own etcd connections) feeding a real PeerTable; garbage
is written with plain etcd puts while it watches, and a compaction makes
its watch loop re-list.  What must hold: every unreadable key is logged
with its name and skipped, the peer table only ever holds readable
leases, the keeper never fails (no fatal, threads alive), and a valid
change made after the garbage still arrives.
"""

import ipaddress
import logging
import time

import pytest

from ansible_collections.overlay.flannel.plugins.module_utils.etcd_client import EtcdClient, delete, put
from ansible_collections.overlay.flannel.plugins.module_utils.netconfig import dumps, from_dict
from ansible_collections.overlay.flannel.plugins.module_utils.store import FlannelStore
from support.etcd_server import EtcdServer

from flannel_forwarder.backend.udp import udp_peer_of
from flannel_forwarder.leasekeeper import LeaseKeeper
from flannel_forwarder.routes import Peer, PeerTable

OWN_IP, PEER_IP, NEW_IP = "192.0.2.1", "192.0.2.2", "192.0.2.3"
PORT = 8285


def value(ip):
    return '{"PublicIP":"%s","PublicIPv6":null,"BackendType":"udp","BackendData":null}' % ip


# key name under <prefix>/subnets/ -> value; none of them is a readable lease
GARBAGE = {
    "garbage": value("192.0.2.40"),
    "10.5.1.0-99": value("192.0.2.41"),
    "10.5.1.0-24/extra": value("192.0.2.42"),
    "10.5.4.0-24": "{not json",
    "10.5.5.0-24": '["192.0.2.44"]',
    "10.5.6.0-24": '{"PublicIP": 12, "BackendType": "udp"}',
    "10.5.7.0-24": '{"PublicIP": "192.0.2.46", "BackendType": ["udp"]}',
    "10.5.8.0-24": '{"PublicIP": "not-an-ip"}',
    "10.5.9.0-24": "\udcff".encode("utf-8", "surrogatepass"),
}


def wait_for(predicate, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting for %s" % what)


@pytest.fixture(scope="module")
def server():
    s = EtcdServer(name="keeper").start()
    yield s
    s.stop()


@pytest.fixture
def setup(server, request):
    prefix = "/keeper/%s" % request.node.name.replace("[", "-").replace("]", "")
    client = EtcdClient([server.endpoint])
    store = FlannelStore(client, prefix)
    store.write_config(dumps(from_dict({"Network": "10.5.0.0/16"}).to_dict()), store.snapshot())
    store.acquire(OWN_IP, requested=ipaddress.IPv4Network("10.5.1.0/24"))
    store.acquire(PEER_IP, requested=ipaddress.IPv4Network("10.5.2.0/24"))
    keeper = LeaseKeeper(store, OWN_IP, check_interval=0.2)
    fatals = []
    yield {"prefix": prefix, "client": client, "store": store, "keeper": keeper, "fatals": fatals}
    keeper.stop()
    client.close()


def start(s, caplog):
    caplog.set_level(logging.INFO, logger="flannel_forwarder.lease")
    k = s["keeper"]
    k.claim()
    table = PeerTable(k.initial_peers(udp_peer_of(PORT)))
    k.start(table, s["fatals"].append)
    return k, table


def put_all(s, items):
    s["client"].txn([], [put(s["prefix"] + "/subnets/" + name, v) for name, v in items])


def test_garbage_written_while_watching_is_logged_by_key_and_skipped(setup, caplog):
    s = setup
    k, table = start(s, caplog)
    assert table.snapshot() == {ipaddress.IPv4Network("10.5.2.0/24"): Peer(PEER_IP, PORT)}
    for name, v in GARBAGE.items():  # one event each
        put_all(s, [(name, v)])
    put_all(s, [("10.5.3.0-24", value(NEW_IP))])  # a valid lease after the garbage still arrives
    wait_for(lambda: ipaddress.IPv4Network("10.5.3.0/24") in table, what="the new peer")
    assert set(table.snapshot()) == {ipaddress.IPv4Network("10.5.2.0/24"), ipaddress.IPv4Network("10.5.3.0/24")}
    logged = caplog.text
    for name in GARBAGE:
        assert s["prefix"] + "/subnets/" + name in logged, name
    # deleting garbage keys is as harmless
    s["client"].txn([], [delete(s["prefix"] + "/subnets/" + name) for name in GARBAGE])
    put_all(s, [("10.5.3.0-24", value("192.0.2.33"))])
    wait_for(lambda: table.lookup_address("10.5.3.1") == ("192.0.2.33", PORT), what="the peer change")
    time.sleep(0.5)  # a renewal check or two
    assert s["fatals"] == [] and k.fatal is None and all(t.is_alive() for t in k._threads)


def test_relist_after_compaction_skips_garbage(setup, server, caplog):
    s = setup
    caplog.set_level(logging.INFO, logger="flannel_forwarder.lease")
    k = s["keeper"]
    k.claim()
    table = PeerTable(k.initial_peers(udp_peer_of(PORT)))
    # While the keeper is not watching: garbage, a new peer, a removed peer, then a compaction
    # past the keeper's revision, so that its watch loop must list everything again.
    put_all(s, list(GARBAGE.items()) + [("10.5.3.0-24", value(NEW_IP))])
    s["client"].txn([], [delete(s["prefix"] + "/subnets/10.5.2.0-24")])
    rev = s["store"].snapshot().revision
    server.etcdctl("compact", str(rev))
    k.start(table, s["fatals"].append)
    wait_for(lambda: "listing again" in caplog.text, what="the re-list")
    wait_for(lambda: table.snapshot() == {ipaddress.IPv4Network("10.5.3.0/24"): Peer(NEW_IP, PORT)},
             what="the re-listed peer table")
    put_all(s, [("10.5.10.0-24", value("192.0.2.10"))])  # and the watch goes on after it
    wait_for(lambda: ipaddress.IPv4Network("10.5.10.0/24") in table, what="a peer after the re-list")
    assert s["fatals"] == [] and k.fatal is None


def test_claim_with_garbage_present(setup, caplog):
    s = setup
    put_all(s, list(GARBAGE.items()))
    k, table = start(s, caplog)
    assert k.lease.subnet == ipaddress.IPv4Network("10.5.1.0/24")
    assert table.snapshot() == {ipaddress.IPv4Network("10.5.2.0/24"): Peer(PEER_IP, PORT)}
    assert s["fatals"] == []


# Leases whose key is readable but is no subnet of this network: outside it, or of
# another length (a /16 claims every host's subnet, and would let its holder send
# with any inner source in the network, past the anti-spoofing check).
FOREIGN = {"10.99.0.0-24": value("192.0.2.50"), "10.5.0.0-16": value("192.0.2.51"),
           "10.5.2.0-25": value("192.0.2.52"), "0.0.0.0-0": value("192.0.2.53")}


@pytest.mark.parametrize("how", ["claim", "watch", "relist"])
def test_leases_outside_the_config_are_never_peers(setup, caplog, how):
    s = setup
    if how == "claim":
        put_all(s, list(FOREIGN.items()))
    k, table = start(s, caplog)
    if how == "watch":
        put_all(s, list(FOREIGN.items()) + [("10.5.3.0-24", value(NEW_IP))])
        wait_for(lambda: ipaddress.IPv4Network("10.5.3.0/24") in table, what="the new peer")
    if how == "relist":
        put_all(s, list(FOREIGN.items()))
        k._relist()  # what the watch loop calls after a compaction or a reconnect
    assert not any(table.accepts(ip, "10.5.1.5") for ip in ("192.0.2.51", "192.0.2.53"))  # our own subnet
    assert set(table.snapshot()) <= {ipaddress.IPv4Network("10.5.2.0/24"), ipaddress.IPv4Network("10.5.3.0/24")}
    assert s["fatals"] == []
