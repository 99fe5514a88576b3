"""The adapter's watch against a real etcd: events in order, resume by revision, compaction, cancel."""

import threading

import pytest

from ansible_collections.overlay.flannel.plugins.module_utils.etcd_client import EtcdClient, EtcdCompacted, delete, put
from support.etcd_server import EtcdServer


def collect(watch, n, out, done):
    try:
        for _rev, events in watch:
            out.extend((e.kind, e.kv.key, e.kv.value) for e in events)
            if len(out) >= n:
                break
    finally:
        done.set()


def test_watch_sees_puts_and_deletes_and_resumes_from_a_revision(client, prefix):
    rev = client.txn([], [put(prefix + "/subnets/a", "1")])[1]
    watch = client.watch_prefix(prefix + "/subnets/", rev)  # from the put above on
    out, done = [], threading.Event()
    t = threading.Thread(target=collect, args=(watch, 3, out, done), daemon=True)
    t.start()
    client.txn([], [put(prefix + "/subnets/b", "2"), put(prefix + "/other", "x")])
    client.txn([], [delete(prefix + "/subnets/a")])
    assert done.wait(10), out
    watch.cancel()
    assert out == [("put", prefix + "/subnets/a", b"1"), ("put", prefix + "/subnets/b", b"2"),
                   ("delete", prefix + "/subnets/a", b"")]


def test_compacted_revision_is_reported():
    server = EtcdServer(name="compact").start()
    try:
        c = EtcdClient([server.endpoint])
        first = c.txn([], [put("/w/subnets/a", "1")])[1]
        last = c.txn([], [put("/w/subnets/a", "2")])[1]
        c.txn([], [put("/w/subnets/a", "3")])
        server.etcdctl("compaction", str(last))
        with pytest.raises(EtcdCompacted) as err:
            for _event in c.watch_prefix("/w/subnets/", first):
                break
        assert err.value.compact_revision == last
    finally:
        server.stop()


def test_cancel_ends_iteration(client, prefix):
    watch = client.watch_prefix(prefix, 0)
    ended = threading.Event()

    def run():
        for _event in watch:
            pass
        ended.set()

    threading.Thread(target=run, daemon=True).start()
    watch.cancel()
    assert ended.wait(5)
