"""A watch stream that stays open but delivers nothing, against real etcd (one member, and a 3-member
TLS + auth cluster on loopback).

A connection that dies is gRPC keepalive's to notice. These are the live
streams that deliver nothing: a member that lost its leader, and, guarded
by progress requests, any member that does not answer at all. What must
hold: the real etcd answers the progress requests (a quiet stream is never
taken for a silent one), a member without a leader refuses a new watch and
ends one it had, and a broken stream leaves no thread behind.
"""

import threading
import time

import pytest

from ansible_collections.overlay.flannel.plugins.module_utils import etcd_client as etcd
from ansible_collections.overlay.flannel.plugins.module_utils.etcd_client import put

from support.etcd_cluster import EtcdCluster

PREFIX = "/coreos.com/network"


class Collector:
    """Iterates a watch in a thread: what it yielded, and how it ended."""

    def __init__(self, watch):
        self.watch, self.items, self.error = watch, [], None
        self.ended = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            for revision, events in self.watch:
                self.items.append((revision, [(e.kind, e.kv.key) for e in events]))
        except etcd.EtcdError as exc:
            self.error = exc
        finally:
            self.ended.set()


def test_a_quiet_watch_is_answered_by_progress_and_never_taken_for_silent(client, prefix):
    rev = client.txn([], [put(prefix + "/subnets/a", "1")])[1]
    # An interval of a second: a shorter one makes a stall of the loaded test
    # machine itself (the collector thread not scheduled) look like silence.
    watch = client.watch_prefix(prefix + "/subnets/", rev + 1, progress_interval=1.0)
    c = Collector(watch)
    try:
        time.sleep(6)  # six progress intervals, twice the bound after which a silent stream is given up
        assert not c.ended.is_set(), c.error
        assert watch.silent is None
        # the answers: no events, at the current revision (which a put elsewhere moves on)
        assert len(c.items) >= 3, c.items
        assert all(events == [] for _rev, events in c.items)
        now = client.txn([], [put("/elsewhere/x", "1")])[1]
        deadline = time.monotonic() + 5  # the next progress answer carries it
        while time.monotonic() < deadline and c.items[-1][0] != now:
            time.sleep(0.05)
        assert c.items[-1][0] == now, (c.items[-3:], now)
        rev2 = client.txn([], [put(prefix + "/subnets/b", "2")])[1]
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and (rev2, [("put", prefix + "/subnets/b")]) not in c.items:
            time.sleep(0.05)
        assert (rev2, [("put", prefix + "/subnets/b")]) in c.items
    finally:
        watch.cancel()
    assert c.ended.wait(5) and c.error is None


@pytest.fixture(scope="module")
def ec(tmp_path_factory):
    base = str(tmp_path_factory.mktemp("etcd-liveness"))
    c = EtcdCluster(["127.0.0.1", "127.0.0.2", "127.0.0.3"], base, client_port=None, peer_port=None,
                    prefix=PREFIX).start()
    yield c
    assert c.destroy() == []


def test_a_member_without_a_leader_ends_its_watch_and_refuses_a_new_one(ec):
    lone = ec.names[0]
    client = ec.client(only=lone)
    try:
        watch = client.watch_prefix(PREFIX + "/subnets/", client.get_prefix(PREFIX + "/none")[0] + 1)
        c = Collector(watch)
        time.sleep(1)
        assert not c.ended.is_set(), c.error
        for name in ec.names[1:]:
            ec.stop(name)
        lost = time.monotonic()
        # etcd ends a "hasleader" stream after about three election timeouts without a leader
        assert c.ended.wait(20), "the watch on the member without a leader stayed open"
        print("the watch ended %.1fs after the member lost its peers: %s" % (time.monotonic() - lost, c.error))
        assert isinstance(c.error, etcd.EtcdUnavailable), c.error
        start = time.monotonic()
        with pytest.raises(etcd.EtcdUnavailable) as err:
            for _item in client.watch_prefix(PREFIX + "/subnets/", 1):
                break
        # (the login it needs first is a raft proposal, which times out, on our deadline or on the member's own,
        # which names "no leader" as the likely cause; with a token, "no leader")
        assert "no leader" in str(err.value) or "no answer within" in str(err.value), err.value
        assert time.monotonic() - start < 15
    finally:
        client.close()
        ec.start_all(timeout=60)


def test_broken_streams_leave_no_thread_behind(ec):
    client = ec.client()
    try:
        base = threading.active_count()
        for _round in range(4):
            watch = client.watch_prefix(PREFIX + "/subnets/", client.get_prefix(PREFIX + "/none")[0] + 1)
            c = Collector(watch)
            deadline = time.monotonic() + 10
            while watch.endpoint is None and time.monotonic() < deadline:
                time.sleep(0.05)
            name = ec.names[[client.endpoints[i].url for i in range(3)].index(watch.endpoint)]
            ec.kill(name)
            assert c.ended.wait(20), "the watch on a killed member did not end"
            assert isinstance(c.error, etcd.EtcdUnavailable), c.error
            ec.start(name)
        deadline = time.monotonic() + 10
        while threading.active_count() > base and time.monotonic() < deadline:
            time.sleep(0.1)
        assert threading.active_count() <= base, [t.name for t in threading.enumerate()]
    finally:
        client.close()
