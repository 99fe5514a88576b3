"""The adapter's one fail-over loop as a watch meets it, and error hints in the caller's words.

Fake gRPC stubs stand for the members: each endpoint index answers a Watch
(or a Range) with a scripted error or a stream.
"""

import threading
import time

import grpc
import pytest

from ansible_collections.overlay.flannel.plugins.module_utils import etcd_client as etcd
from ansible_collections.overlay.flannel.plugins.module_utils.ansible_etcd import ETCD_SETTING_NAMES
from support.grpc_answers import Answer

ENDPOINTS = ["http://127.0.0.1:1", "http://127.0.0.1:2", "http://127.0.0.1:3"]


REFUSED = Answer(grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses; last error: connection refused")
ELECTION = Answer(grpc.StatusCode.UNAVAILABLE, "etcdserver: leader changed")
DENIED = Answer(grpc.StatusCode.PERMISSION_DENIED, "etcdserver: permission denied")
EXPIRED_TOKEN = Answer(grpc.StatusCode.UNAUTHENTICATED, "etcdserver: invalid auth token")
UNTRUSTED = Answer(grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses; last error: UNKNOWN: "
                                                "ipv4:127.0.0.1:2379: Ssl handshake failed: SSL_ERROR_SSL: "
                                                "error:1000007d:SSL routines:CERTIFICATE_VERIFY_FAILED")
NO_CLIENT_CERT = Answer(grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses; last error: UNKNOWN: "
                                                     "ipv4:127.0.0.1:2379: Socket closed: TSI_DATA_CORRUPTED")
HANDSHAKE = Answer(grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses; last error: UNKNOWN: "
                                                "ipv4:127.0.0.1:2379: Ssl handshake failed: WRONG_VERSION_NUMBER")


class Created:
    """The first response of a watch stream."""
    compact_revision = 0
    canceled = False
    created = True
    events = ()


class Stubs:
    """Every service of every member: `answers[index]` is a list of what its next calls meet
    (an exception to raise, or "ok")."""

    def __init__(self, answers):
        self.answers = {index: list(a) for index, a in answers.items()}
        self.calls = []    # (index, method)
        self.logins = []   # index of every Authenticate
        self._index = None

    def __call__(self, index, service, channel=None):
        self._index = index
        return self

    def _next(self, method):
        self.calls.append((self._index, method))
        answer = self.answers[self._index].pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def Watch(self, requests, metadata=None):  # noqa: N802  (the gRPC method's name)
        index = self._index

        def stream():
            self._index = index
            yield Created() if self._next("Watch") == "ok" else None
        return stream()

    def Range(self, request, timeout, metadata=None):  # noqa: N802
        return self._next("Range")

    def Authenticate(self, request, timeout):  # noqa: N802
        self.logins.append(self._index)
        return type("Token", (), {"token": "t%d" % len(self.logins)})()


def client_with(answers, **kw):
    client = etcd.EtcdClient(ENDPOINTS, timeout=1, retry_window=5, **kw)
    client._stub = Stubs(answers)
    return client


def open_watch(client):
    watch = client.watch_prefix("/p/subnets/", 1)
    try:
        call, first = watch._open()
    finally:
        watch._over.set()  # (ends the request generator)
    return watch, call, first


def test_a_watch_opens_on_the_next_member_when_one_is_gone_and_that_member_becomes_current():
    client = client_with({0: [REFUSED], 1: ["ok"], 2: []})
    try:
        watch, call, first = open_watch(client)
        assert first is not None and call is not None
        assert watch.endpoint == ENDPOINTS[1] and client._current == 1 and watch._index == 1
        assert client._stub.calls == [(0, "Watch"), (1, "Watch")]
        assert 0 not in client._channels  # the gone member's connection was dropped
    finally:
        client.close()


def test_a_watch_skips_a_busy_member_keeps_its_connection_and_fails_after_one_round():
    client = client_with({0: [ELECTION], 1: [ELECTION], 2: [REFUSED]})
    try:
        started = time.monotonic()
        with pytest.raises(etcd.EtcdUnavailable) as err:
            open_watch(client)
        # One round: requests would sit out the busy window (5 s here) before failing.
        assert time.monotonic() - started < 1.0
        assert client._stub.calls == [(0, "Watch"), (1, "Watch"), (2, "Watch")]
        assert "%s (unavailable: etcdserver: leader changed)" % ENDPOINTS[0] in str(err.value)
        assert "%s (connection refused)" % ENDPOINTS[2] in str(err.value)
        assert 0 in client._channels and 1 in client._channels and 2 not in client._channels
    finally:
        client.close()


def test_a_request_waits_out_a_busy_member_where_a_watch_does_not():
    client = client_with({0: [ELECTION, "range-answer"], 1: [REFUSED], 2: [REFUSED]})
    try:
        assert client._call("KV", "Range", None) == "range-answer"
        assert [index for index, _method in client._stub.calls] == [0, 1, 2, 0]
    finally:
        client.close()


def test_a_refused_watch_is_the_callers_and_says_it_was_the_watch():
    client = client_with({0: [DENIED], 1: ["ok"], 2: []})
    try:
        with pytest.raises(etcd.EtcdError) as err:
            open_watch(client)
        assert not isinstance(err.value, etcd.EtcdUnavailable)
        assert str(err.value) == "etcd %s: watch failed: permission denied: etcdserver: permission denied" % ENDPOINTS[0]
    finally:
        client.close()


def test_a_watch_with_an_expired_token_logs_in_again_on_the_same_member():
    client = client_with({0: [EXPIRED_TOKEN, "ok"], 1: [], 2: []}, user="flannel", password="pw")
    try:
        watch, _call, first = open_watch(client)
        assert first is not None and watch.endpoint == ENDPOINTS[0]
        assert client._stub.logins == [0, 0] and client._tokens[0] == "t2"
    finally:
        client.close()


def test_a_member_that_gives_up_at_its_own_deadline_is_named_busy_not_unknown():
    gave_up = Answer(grpc.StatusCode.UNKNOWN, "context deadline exceeded")
    assert etcd._busy(gave_up)
    assert etcd._cause(gave_up, 5) == "the member gave up on the request at its own deadline (no leader, or overloaded)"
    assert etcd._cause(Answer(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"), 5) == "no answer within 5s"


@pytest.mark.parametrize("answer, plain, hinted", [
    (UNTRUSTED, "TLS: the server certificate is not trusted",
     "TLS: the server certificate is not trusted (check {ca_cert})"),
    (NO_CLIENT_CERT, "TLS: the server rejected the connection (it may require a client certificate)",
     "TLS: the server rejected the connection (it may require a client certificate: {client_cert} and {client_key})"),
    (HANDSHAKE, "TLS handshake failed: UNKNOWN: ipv4:127.0.0.1:2379: Ssl handshake failed",
     "TLS handshake failed (check {ca_cert}, {client_cert} and {client_key}): UNKNOWN: ipv4:127.0.0.1:2379"),
])
@pytest.mark.parametrize("names", [ETCD_SETTING_NAMES, {"ca_cert": "--ca", "client_cert": "--cert", "client_key": "--key"}],
                         ids=["module-options", "other-words"])
def test_tls_hints_name_the_settings_as_the_caller_names_them(answer, plain, hinted, names):
    assert etcd._cause(answer, 1).startswith(plain)
    for word in names.values():
        assert word not in etcd._cause(answer, 1)
    client = client_with({0: [answer], 1: [REFUSED], 2: [REFUSED]}, setting_names=names)
    try:
        with pytest.raises(etcd.EtcdUnavailable) as err:
            client._call("KV", "Range", None)
    finally:
        client.close()
    assert "%s (%s" % (ENDPOINTS[0], hinted.format(**names)) in str(err.value), str(err.value)


class SilentCall:
    """A gRPC streaming call whose member sent "created" and then nothing: it consumes the request side
    in a thread of its own (as gRPC does), records every request, and ends with CANCELLED when cancelled."""

    def __init__(self, requests):
        self.requests = []
        self._cancelled = threading.Event()
        self._first = True
        threading.Thread(target=self._consume, args=(requests,), daemon=True).start()

    def _consume(self, requests):
        for r in requests:
            self.requests.append(r.WhichOneof("request_union") or r.SerializeToString())

    def __iter__(self):
        return self

    def __next__(self):
        if self._first:
            self._first = False
            return Created()
        self._cancelled.wait()
        raise Answer(grpc.StatusCode.CANCELLED, "Locally cancelled by application!")

    def cancel(self):
        self._cancelled.set()

    def done(self):
        return self._cancelled.is_set()


def test_a_silent_watch_asks_for_progress_then_gives_up_and_the_next_watch_starts_at_the_next_member():
    """A stream that stays open and sends nothing (a member without its leader, or one that never catches
    up) is asked for progress after an interval and given up after three: the caller lists again."""
    client = client_with({0: [], 1: [], 2: []})
    calls = []

    def watch_call(requests, metadata=None):
        calls.append((client._stub._index, dict(metadata)))
        calls[-1] += (SilentCall(requests),)
        return calls[-1][2]
    client._stub.Watch = watch_call
    try:
        watch = client.watch_prefix("/p/subnets/", 7, progress_interval=0.2)
        start = time.monotonic()
        with pytest.raises(etcd.EtcdUnavailable) as err:
            for _item in watch:
                pytest.fail("a silent stream yielded %r" % (_item,))
        took = time.monotonic() - start
        assert str(err.value).startswith("etcd %s: watch silent for " % ENDPOINTS[0]), err.value
        assert "no answer to progress requests" in str(err.value)
        assert 0.6 <= took < 3, took
        (index, metadata, call), = calls
        assert index == 0 and metadata["hasleader"] == "true"
        assert call.requests[0] == "create_request" and set(call.requests[1:]) == {b"\x1a\x00"}  # WatchRequest{progress_request: {}}
        assert len(call.requests) >= 2
        assert client._current == 1 and 0 not in client._channels
        time.sleep(0.3)
        assert not any(t.name.startswith("Thread") and t.is_alive() and "SilentCall" in str(t._target)
                       for t in threading.enumerate())
    finally:
        client.close()
