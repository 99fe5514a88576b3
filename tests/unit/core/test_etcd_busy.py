"""Which etcd answers the adapter sends again: a busy cluster (an election, an overload) vs. a failure."""

import grpc
import pytest

from ansible_collections.overlay.flannel.plugins.module_utils.etcd_client import _busy, _transport_failure
from support.grpc_answers import Answer


@pytest.mark.parametrize("code, details", [
    (grpc.StatusCode.UNAVAILABLE, "etcdserver: leader changed"),
    (grpc.StatusCode.UNAVAILABLE, "etcdserver: no leader"),
    (grpc.StatusCode.UNAVAILABLE, "etcdserver: request timed out"),
    (grpc.StatusCode.RESOURCE_EXHAUSTED, "etcdserver: too many requests"),
    (grpc.StatusCode.UNKNOWN, "context deadline exceeded"),
])
def test_a_member_that_cannot_serve_now_is_asked_again(code, details):
    assert _busy(Answer(code, details))


@pytest.mark.parametrize("code, details", [
    (grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses; last error: connection refused"),
    (grpc.StatusCode.FAILED_PRECONDITION, "etcdserver: authentication failed, invalid user ID or password"),
    (grpc.StatusCode.PERMISSION_DENIED, "etcdserver: permission denied"),
    (grpc.StatusCode.OUT_OF_RANGE, "etcdserver: mvcc: required revision has been compacted"),
    (grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"),
])
def test_failures_and_unreachable_members_are_not_busy(code, details):
    assert not _busy(Answer(code, details))


def test_an_unreachable_member_is_still_failed_over():
    assert _transport_failure(Answer(grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses"))
    assert not _transport_failure(Answer(grpc.StatusCode.PERMISSION_DENIED, "etcdserver: permission denied"))


class _Token:
    token = "t1"


class _Stubs:
    """Auth and KV stubs of a member whose first login meets an election."""

    def __init__(self, login_answers):
        self.login_answers = list(login_answers)
        self.logins = 0

    def __call__(self, index, service, channel=None):
        return self

    def Authenticate(self, request, timeout):  # noqa: N802  (the gRPC method's name)
        self.logins += 1
        answer = self.login_answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def Range(self, request, timeout, metadata=None):  # noqa: N802
        assert metadata == (("token", "t1"),)
        return "range-answer"


def _client(stubs):
    from ansible_collections.overlay.flannel.plugins.module_utils.etcd_client import EtcdClient
    client = EtcdClient(["http://127.0.0.1:1"], user="flannel", password="pw", timeout=1, retry_window=5)
    client._stub = stubs
    return client


def test_a_login_that_meets_an_election_is_asked_again():
    stubs = _Stubs([Answer(grpc.StatusCode.UNAVAILABLE, "etcdserver: leader changed"),
                    Answer(grpc.StatusCode.UNKNOWN, "context deadline exceeded"),
                    Answer(grpc.StatusCode.RESOURCE_EXHAUSTED, "etcdserver: too many requests"), _Token()])
    client = _client(stubs)
    try:
        assert client._call("KV", "Range", None) == "range-answer"
    finally:
        client.close()
    assert stubs.logins == 4


def test_a_refused_login_is_not_asked_again():
    from ansible_collections.overlay.flannel.plugins.module_utils.etcd_client import EtcdAuthError
    stubs = _Stubs([Answer(grpc.StatusCode.FAILED_PRECONDITION,
                           "etcdserver: authentication failed, invalid user ID or password"), _Token()])
    client = _client(stubs)
    try:
        with pytest.raises(EtcdAuthError, match="authentication as 'flannel' failed"):
            client._call("KV", "Range", None)
    finally:
        client.close()
    assert stubs.logins == 1


class _SlowStubs:
    """A member that takes longer than the first timeout: every attempt records the timeout it was given."""

    def __init__(self, needed):
        self.needed = needed
        self.timeouts = []

    def __call__(self, index, service, channel=None):
        return self

    def Range(self, request, timeout, metadata=None):  # noqa: N802
        self.timeouts.append(timeout)
        if timeout < self.needed:
            raise Answer(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
        return "range-answer"


def test_a_slow_cluster_gets_more_time_each_round_instead_of_the_same_request_again(monkeypatch):
    from ansible_collections.overlay.flannel.plugins.module_utils import etcd_client
    from ansible_collections.overlay.flannel.plugins.module_utils.etcd_client import EtcdClient
    monkeypatch.setattr(etcd_client, "_connected", lambda channel: True)  # (the connection is up, the member slow)
    stubs = _SlowStubs(needed=3.5)
    client = EtcdClient(["http://127.0.0.1:1"], timeout=1, retry_window=30)
    client._stub = stubs
    try:
        assert client._call("KV", "Range", None) == "range-answer"
    finally:
        client.close()
    assert stubs.timeouts[:2] == [1, 2] and stubs.timeouts[-1] >= 3.5, stubs.timeouts
