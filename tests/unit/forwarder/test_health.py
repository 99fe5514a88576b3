"""The health server (flannel_forwarder/health.py) on the loopback: its endpoints as HTTP clients see them (urllib,
as the lab and Ansible's uri module ask; raw sockets for what a client may get wrong), and that it does not load
http.server and email, which it exists to avoid."""

import email.utils
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from flannel_forwarder import __version__
from flannel_forwarder.health import HealthServer, http_date


class State:
    def __init__(self):
        self.is_healthy, self.is_ready, self.text = True, False, "flannel_forwarder_ready 0\n"

    def healthy(self):
        return self.is_healthy

    def ready(self):
        return self.is_ready

    def metrics(self):
        return self.text


@pytest.fixture
def server():
    state = State()
    health = HealthServer("127.0.0.1", 0, state).start()
    yield health, state
    health.stop()


def get(health, path):
    """(status, headers, body) of GET `path`, as urllib sees it."""
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (health.port, path), timeout=10) as r:
            return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, dict(err.headers), err.read().decode()


def raw(health, data):
    """Everything the server answers to the bytes `data` (it closes the connection after one answer)."""
    with socket.create_connection(("127.0.0.1", health.port), timeout=10) as conn:
        conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)
        out = b""
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                return out
            out += chunk


def test_the_endpoints(server):
    health, state = server
    assert get(health, "/healthz")[0::2] == (200, "ok\n")
    assert get(health, "/readyz")[0::2] == (503, "not ready\n")
    state.is_ready, state.is_healthy = True, False
    assert get(health, "/readyz")[0::2] == (200, "ready\n")
    assert get(health, "/healthz")[0::2] == (503, "unhealthy\n")
    state.text = "flannel_forwarder_ready 1\nflannel_forwarder_peers 3\n"
    status, headers, body = get(health, "/metrics?name[]=x")  # Prometheus may add a query: ignored
    assert (status, body) == (200, state.text)
    assert headers["Content-Type"] == "text/plain; version=0.0.4"
    assert headers["Content-Length"] == str(len(state.text.encode()))
    assert headers["Server"] == "flannel-forwarder/%s" % __version__
    assert email.utils.parsedate_to_datetime(headers["Date"]).year >= 2024
    assert get(health, "/")[0::2] == (404, "not found\n")
    assert get(health, "/healthz/more")[0] == 404


def test_what_a_client_may_get_wrong(server):
    health, _state = server
    answer = raw(health, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n")
    assert answer.startswith(b"HTTP/1.0 200 OK\r\n") and answer.endswith(b"\r\n\r\nok\n")  # one answer, then closed
    assert raw(health, b"HEAD /healthz HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.0 501 Not Implemented\r\n")
    assert raw(health, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n").startswith(b"HTTP/1.0 501 ")
    assert raw(health, b"nonsense\r\n\r\n").startswith(b"HTTP/1.0 400 Bad Request\r\n")
    assert raw(health, b"GET /healthz SPDY/3\r\n\r\n").startswith(b"HTTP/1.0 400 ")
    assert raw(health, b"GET /healthz\r\n\r\n").startswith(b"HTTP/1.0 400 ")  # HTTP/0.9
    assert raw(health, b"GET /healthz HTTP/2.0\r\n\r\n").startswith(b"HTTP/1.0 505 HTTP Version Not Supported\r\n")
    assert raw(health, b"GET /healthz HTTP/1.0\r\nX: " + b"a" * 70000 + b"\r\n\r\n").startswith(b"HTTP/1.0 431 ")
    assert raw(health, b"GET /healthz HTTP/1.0\r\n" + b"X: y\r\n" * 101 + b"\r\n").startswith(b"HTTP/1.0 431 ")
    assert raw(health, b"") == b""  # a connection closed at once gets nothing, and the server serves on
    assert raw(health, b"GET /healthz HTTP/1.0\n\n").endswith(b"\r\n\r\nok\n")  # bare LF line ends too
    assert get(health, "/healthz")[0] == 200


def test_the_dates_are_http_dates():
    for seconds in (0, 951782400, 1733600000.7, 4102444799):  # 1970, a leap day, a fraction, 2099's last second
        assert http_date(seconds) == email.utils.formatdate(seconds, usegmt=True)


def test_a_stopped_server_frees_its_port():
    health = HealthServer("127.0.0.1", 0, State()).start()
    assert get(health, "/healthz")[0] == 200
    health.stop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", health.port), timeout=5).close()
    again = HealthServer("127.0.0.1", health.port, State()).start()  # the same port at once, as on a restart
    try:
        assert get(again, "/healthz")[0] == 200
    finally:
        again.stop()


def test_the_health_server_does_not_load_http_server():
    forwarder = os.path.join(os.path.dirname(__file__), "..", "..", "..", "forwarder")
    out = subprocess.run([sys.executable, "-c", "import sys\nimport flannel_forwarder.health\n"
                          "print(sorted(m for m in sys.modules if m.split('.')[0] in ('http', 'email', 'html', "
                          "'mimetypes')))"], env=dict(os.environ, PYTHONPATH=forwarder), capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "[]"
