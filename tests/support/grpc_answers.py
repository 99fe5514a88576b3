"""A gRPC error as an etcd member answers it (code and details), for tests of the adapter's decisions."""

import grpc


class Answer(grpc.RpcError):
    def __init__(self, code, details):
        super().__init__()
        self._code, self._details = code, details

    def code(self):
        return self._code

    def details(self):
        return self._details
