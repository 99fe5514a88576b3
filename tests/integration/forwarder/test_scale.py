"""A forwarder's control plane with 1000 peers: a burst of 1000 lease events from a real etcd.

A real LeaseKeeper (claim, then its renewal and watch threads over their own
etcd connections) feeds a real PeerTable.  1000 new leases are written in
one burst (10 transactions of 100 puts; etcd allows 128 operations per
transaction), then the test waits until the table holds all of them and
checks every one routes to its host and passes the anti-spoofing check
for its own subnet only.  Then the same for 1000 deletions.  The times are
printed (run with -s to see them; docs/performance.md quotes them); they are not
asserted.
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

OWN_IP = "192.0.2.1"
OWN_SUBNET = ipaddress.IPv4Network("10.16.1.0/24")
PORT = 8285
PEERS = 1000
PER_TXN = 100


def value(ip):
    return '{"PublicIP":"%s","PublicIPv6":null,"BackendType":"udp","BackendData":null}' % ip


def peer_subnet(i):
    # /24s of 10.16.0.0/12 from 10.16.2.0 on (10.16.0.0 is below SubnetMin, 10.16.1.0 is ours)
    return ipaddress.IPv4Network((int(ipaddress.IPv4Address("10.16.2.0")) + (i << 8), 24))


def peer_ip(i):
    return "198.18.%d.%d" % (i // 250, 1 + i % 250)


def wait_for(predicate, timeout=60.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return time.monotonic()
        time.sleep(0.002)
    raise AssertionError("timed out waiting for %s" % what)


@pytest.fixture
def keeper():
    server = EtcdServer(name="scale").start()
    prefix = "/scale"
    client = EtcdClient([server.endpoint])
    store = FlannelStore(client, prefix)
    store.write_config(dumps(from_dict({"Network": "10.16.0.0/12", "SubnetLen": 24}).to_dict()), store.snapshot())
    store.acquire(OWN_IP, requested=OWN_SUBNET)
    k = LeaseKeeper(store, OWN_IP, check_interval=0.5)
    fatals = []
    k.claim()
    table = PeerTable(k.initial_peers(udp_peer_of(PORT)))
    k.start(table, fatals.append)
    yield {"keeper": k, "table": table, "client": client, "prefix": prefix, "fatals": fatals}
    k.stop()
    client.close()
    server.stop()


def burst(client, ops):
    for i in range(0, len(ops), PER_TXN):
        ok, _rev, _ranges = client.txn([], ops[i:i + PER_TXN])
        assert ok


def test_burst_of_1000_lease_events(keeper, caplog):
    caplog.set_level(logging.INFO, logger="flannel_forwarder.lease")  # as the daemon logs by default
    k, table, client, prefix = keeper["keeper"], keeper["table"], keeper["client"], keeper["prefix"]
    assert len(table) == 0
    keys = [prefix + "/subnets/%s-24" % peer_subnet(i).network_address for i in range(PEERS)]
    t0 = time.monotonic()
    burst(client, [put(keys[i], value(peer_ip(i))) for i in range(PEERS)])
    written = time.monotonic()
    done = wait_for(lambda: len(table) == PEERS, what="%d peers in the table (have %d)" % (PEERS, len(table)))
    print("\n%d lease puts in %d transactions: written in %.3f s, all %d in the peer table %.3f s after the first "
          "write (%.3f s after the last)" % (PEERS, PEERS // PER_TXN, written - t0, PEERS, done - t0, done - written))
    snap = table.snapshot()
    assert snap == {peer_subnet(i): Peer(peer_ip(i), PORT) for i in range(PEERS)}
    for i in range(PEERS):
        net = int(peer_subnet(i).network_address)
        assert table.lookup(net + 7) == (peer_ip(i), PORT)
        assert table.accepts(peer_ip(i), net + 9)
        assert not table.accepts(peer_ip(i), int(peer_subnet((i + 1) % PEERS).network_address) + 9)
        assert not table.accepts(peer_ip(i), int(OWN_SUBNET.network_address) + 9)
    assert table.lookup(int(OWN_SUBNET.network_address) + 1) is None  # our own subnet is never a peer

    # and a burst of 1000 deletions
    t0 = time.monotonic()
    burst(client, [delete(key) for key in keys])
    done = wait_for(lambda: len(table) == 0, what="an empty peer table (have %d)" % len(table))
    print("%d lease deletions: the peer table empty %.3f s after the first" % (PEERS, done - t0))
    assert all(table.lookup(int(peer_subnet(i).network_address) + 7) is None for i in range(PEERS))
    assert keeper["fatals"] == [] and k.fatal is None and all(t.is_alive() for t in k._threads)
