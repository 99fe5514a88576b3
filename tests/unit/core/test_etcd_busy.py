"""Which etcd answers the adapter sends again: a busy cluster (an election, an overload) vs. a failure."""

import grpc
import pytest

from ansible_collections.overlay.flannel.plugins.module_utils.etcd_client import _busy, _transport_failure


class Answer(grpc.RpcError):
    def __init__(self, code, details):
        super().__init__()
        self._code, self._details = code, details

    def code(self):
        return self._code

    def details(self):
        return self._details


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
