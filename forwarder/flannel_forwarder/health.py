"""/healthz, /readyz and /metrics (Prometheus text format) over HTTP.

The server is a small HTTP/1.0 one on socketserver, not http.server: http.server
imports http.client, email (for the request headers and the Date header),
html and mimetypes, about 1.3 MiB resident that the daemon would keep for
three fixed GET endpoints. It answers as http.server's ThreadingHTTPServer did:
HTTP/1.0, one request per connection, a thread per connection, Content-Type,
Content-Length, Date and Server headers; 404 for another path, 501 for
another method, 505 for another HTTP version than 1.0 and 1.1, 400 for a
request it cannot parse (an HTTP/0.9 one included); the query string ignored.
"""

from __future__ import annotations

import socketserver
import threading
import time

from . import __version__

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


REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 431: "Request Header Fields Too Large",
           501: "Not Implemented", 503: "Service Unavailable", 505: "HTTP Version Not Supported"}
MAX_LINE = 65536  # the longest request or header line read (http.server's limit)
MAX_HEADERS = 100  # the most header lines read (http.server's limit)
REQUEST_TIMEOUT = 10.0  # seconds a client has to send its request (http.server waited for ever)
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def http_date(seconds):
    """RFC 9110's HTTP-date of the epoch time `seconds` (as email.utils.formatdate(usegmt=True) writes it)."""
    t = time.gmtime(seconds)
    return "%s, %02d %s %04d %02d:%02d:%02d GMT" % (DAYS[t.tm_wday], t.tm_mday, MONTHS[t.tm_mon - 1], t.tm_year,
                                                    t.tm_hour, t.tm_min, t.tm_sec)


class _Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True  # as http.server's HTTPServer: a restart binds the port while old connections linger
    daemon_threads = True


class HealthServer:
    """Serves the state of a running daemon; `state` has .healthy(), .ready() and .metrics()."""

    def __init__(self, ip, port, state):
        self.httpd = _Server((ip, port), self._handler(state))
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="healthz", daemon=True)

    @staticmethod
    def _handler(state):
        class Handler(socketserver.StreamRequestHandler):
            timeout = REQUEST_TIMEOUT

            def handle(self):
                try:
                    request = self._read_request()
                except OSError:  # the client went away or sent nothing in time: nobody to answer
                    return
                if isinstance(request, int):
                    self._send(request, "%s\n" % REASONS[request].lower())
                elif request[0] != "GET":
                    self._send(501, "unsupported method\n")
                else:
                    self._get(request[1].split("?", 1)[0])

            def _read_request(self):
                """(method, target), having read the whole request head (a client whose data is left unread
                gets a reset instead of the answer); a status code for a request it cannot be."""
                line = self.rfile.readline(MAX_LINE + 1)
                if not line:
                    raise ConnectionError("no request")
                words = line.decode("iso-8859-1").rstrip("\r\n").split()
                bad = len(line) > MAX_LINE or len(words) != 3 or not words[2].startswith("HTTP/")
                for _count in range(MAX_HEADERS + 1):
                    header = self.rfile.readline(MAX_LINE + 1)
                    if header in (b"\r\n", b"\n", b""):
                        break
                    if len(header) > MAX_LINE:
                        return 431
                else:
                    return 431
                if bad:
                    return 400
                return (words[0], words[1]) if words[2] in ("HTTP/1.0", "HTTP/1.1") else 505

            def _get(self, path):
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
                head = ("HTTP/1.0 %d %s\r\nServer: flannel-forwarder/%s\r\nDate: %s\r\nContent-Type: %s\r\n"
                        "Content-Length: %d\r\nConnection: close\r\n\r\n"
                        % (code, REASONS[code], __version__, http_date(time.time()), ctype, len(data)))
                try:
                    self.wfile.write(head.encode("ascii") + data)
                except OSError:  # the client went away
                    pass

        return Handler

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
