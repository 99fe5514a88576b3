"""Start and stop a real etcd server (Debian's etcd-server) for tests.

The server listens on the given host with free ports, keeps its data in a
temporary directory, and is stopped by the PID this object recorded.
"""

import os
import shutil
import socket
import subprocess
import tempfile
import time

from . import claims
from .procs import stop_process


def free_port(host="127.0.0.1"):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class EtcdServer:
    """One etcd member on `host`; `endpoint` is its client URL."""

    def __init__(self, host="127.0.0.1", binary="etcd", name="test", extra_args=(), tls=None):
        """`tls`: paths from support.tls.make_pki() to serve https with client certificates."""
        self.tls = tls
        self.host = host
        self.binary = binary
        self.name = name
        self.extra_args = list(extra_args)
        self.client_port = None
        self.peer_port = None
        self.data_dir = None
        self.proc = None
        self.log_path = None

    @property
    def endpoint(self):
        return "%s://%s:%d" % ("https" if self.tls else "http", self.host, self.client_port)

    def _tls_args(self):
        if not self.tls:
            return []
        return ["--cert-file", self.tls["server.pem"], "--key-file", self.tls["server-key.pem"],
                "--trusted-ca-file", self.tls["ca.pem"], "--client-cert-auth"]

    def _etcdctl_args(self):
        base = ["etcdctl", "--endpoints", self.endpoint]
        if self.tls:
            base += ["--cacert", self.tls["ca.pem"], "--cert", self.tls["client.pem"], "--key", self.tls["client-key.pem"]]
        return base

    def start(self, timeout=20.0):
        if self.data_dir is None:
            self.data_dir = tempfile.mkdtemp(prefix="etcd-%s-" % self.name)
        if self.client_port is None:
            self.client_port = free_port(self.host)
            self.peer_port = free_port(self.host)
        self.log_path = os.path.join(self.data_dir, "etcd.log")
        peer_url = "http://%s:%d" % (self.host, self.peer_port)
        args = [
            self.binary,
            "--name", self.name,
            "--data-dir", os.path.join(self.data_dir, "data"),
            "--listen-client-urls", self.endpoint,
            "--advertise-client-urls", self.endpoint,
            "--listen-peer-urls", peer_url,
            "--initial-advertise-peer-urls", peer_url,
            "--initial-cluster", "%s=%s" % (self.name, peer_url),
            "--log-level", "warn",
        ] + self._tls_args() + self.extra_args
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        claims.record(pids=[self.proc.pid])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("etcd exited with %s; log:\n%s" % (self.proc.returncode, self.log()))
            try:
                with socket.create_connection((self.host, self.client_port), timeout=0.5):
                    pass
                if self._healthy():
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("etcd did not become ready in %.0fs; log:\n%s" % (timeout, self.log()))

    def _healthy(self):
        res = subprocess.run(
            self._etcdctl_args() + ["--command-timeout=2s", "endpoint", "health"],
            env=dict(os.environ, ETCDCTL_API="3"), capture_output=True, text=True, check=False)
        return res.returncode == 0

    def log(self):
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as fh:
                return fh.read()[-4000:]
        except (OSError, TypeError):
            return ""

    def pause(self):
        """Stop the process without losing its data (it can be start()ed again on the same ports)."""
        self._kill()

    def _kill(self):
        if self.proc is not None:
            stop_process(self.proc)
            claims.forget(pids=[self.proc.pid])
        self.proc = None

    def stop(self):
        self._kill()
        if self.data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.data_dir = None

    def etcdctl(self, *args, user=None):
        extra = ["--user", user] if user else []
        res = subprocess.run(self._etcdctl_args() + extra + list(args),
                             env=dict(os.environ, ETCDCTL_API="3"),
                             capture_output=True, text=True, check=True)
        return res.stdout

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
