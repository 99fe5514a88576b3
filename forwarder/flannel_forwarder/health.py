"""/healthz, /readyz and /metrics (Prometheus text format) over HTTP."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DIRECTIONS = {"tx": "tun_to_udp", "rx": "udp_to_tun"}


def render_metrics(stats=None, keeper=None, ready=False, backend=None):
    """Prometheus exposition text from the running backend's metrics and the lease keeper's state.

    `backend`: (type, [(name, kind, help, samples)]), the running backend's type and its metrics
    (Backend.metrics); `stats`: the udp data path's counters (stats.Stats), rendered as the udp
    backend renders them (for a data path run without a backend: tests, udp.debug).
    """
    lines = []

    def metric(name, kind, help_text, samples):
        lines.append("# HELP flannel_forwarder_%s %s" % (name, help_text))
        lines.append("# TYPE flannel_forwarder_%s %s" % (name, kind))
        for labels, value in samples:
            label = "{%s}" % ",".join('%s="%s"' % kv for kv in labels) if labels else ""
            lines.append("flannel_forwarder_%s%s %s" % (name, label, value))

    if backend is not None:
        metric("backend_info", "gauge", "The backend this host runs (the network config's Backend.Type).",
               [((("type", backend[0]),), 1)])
        for name, kind, help_text, samples in backend[1]:
            metric(name, kind, help_text, samples)
    if stats is not None:
        for name, kind, help_text, samples in data_path_metrics(stats.snapshot()):
            metric(name, kind, help_text, samples)
    metric("ready", "gauge", "1 when the data path, its routes and the peers are in place.",
           [((), 1 if ready else 0)])
    if keeper is not None:
        peers = keeper.peers.snapshot() if keeper.peers is not None else {}
        metric("peers", "gauge", "Known peer hosts.", [((), len(peers))])
        left = keeper.seconds_left()
        metric("lease_seconds_remaining", "gauge", "Seconds the own lease has left (-1 for a reservation).",
               [((), -1 if left is None else int(left))])
        metric("etcd_watch_reconnects_total", "counter", "Times the etcd watch was re-established.",
               [((), keeper.watch_reconnects)])
        metric("etcd_connected", "gauge", "1 when the last etcd request succeeded.",
               [((), 1 if keeper.etcd_connected else 0)])
        used = [((("use", use), ("endpoint", url)), 1) for use, url in
                (("watch", keeper.watch_endpoint()), ("lease", keeper.lease_endpoint())) if url]
        metric("etcd_endpoint_info", "gauge", "The etcd endpoint the peer watch and the lease renewal use now.",
               used)
    return "\n".join(lines) + "\n"


def data_path_metrics(snap):
    """The udp data path's counters (a stats.Stats snapshot), and the way it runs its steps:
    [(name, kind, help, samples)]."""
    out = []
    if snap.get("way"):
        out.append(("datapath_way_info", "gauge", "The way the udp data path runs its steps (numpy, python, single).",
                    [((("way", snap["way"]),), 1)]))
    out.append(("packets_total", "counter", "IP packets forwarded, by direction.",
                [((("direction", DIRECTIONS[d]),), snap[d]["packets"]) for d in ("tx", "rx")]))
    out.append(("bytes_total", "counter", "Bytes of forwarded IP packets, by direction.",
                [((("direction", DIRECTIONS[d]),), snap[d]["bytes"]) for d in ("tx", "rx")]))
    drops = []
    for d in ("tx", "rx"):
        for reason, count in sorted(snap[d]["drops"].items()):
            drops.append(((("direction", DIRECTIONS[d]), ("reason", reason)), count))
    out.append(("dropped_packets_total", "counter", "Packets dropped, by direction and reason.", drops))
    out.append(("icmp_unreachable_total", "counter", "ICMP net unreachable replies for destinations with no peer.",
                [((), snap["icmp_unreachable"])]))
    return out


class HealthServer:
    """Serves the state of a running daemon; `state` has .healthy(), .ready() and .metrics()."""

    def __init__(self, ip, port, state):
        handler = self._handler(state)
        self.httpd = ThreadingHTTPServer((ip, port), handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="healthz", daemon=True)

    @staticmethod
    def _handler(state):
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                path = self.path.split("?", 1)[0]
                if path == "/healthz":
                    ok = state.healthy()
                    self._send(200 if ok else 503, "ok\n" if ok else "unhealthy\n")
                elif path == "/readyz":
                    ok = state.ready()
                    self._send(200 if ok else 503, "ready\n" if ok else "not ready\n")
                elif path == "/metrics":
                    self._send(200, state.metrics(), "text/plain; version=0.0.4")
                else:
                    self._send(404, "not found\n")

            def _send(self, code, body, ctype="text/plain"):
                data = body.encode("utf-8")
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        return Handler

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
