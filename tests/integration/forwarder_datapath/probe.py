"""Small network probes run inside a namespace (``python probe.py COMMAND ...``), printing JSON.

ping DST COUNT INTERVAL        ICMP echo RTTs (raw socket; no ping binary needed); ICMPv6 to an IPv6 DST
unreachable DST                send one UDP datagram to DST, report the ICMP error that comes back
sendraw SRC_IP DST_IP:PORT HEX send one datagram with the given payload from SRC_IP
serve PORT                     TCP (IPv4 and IPv6): receive everything, print byte count and sha256
send DST PORT NBYTES SEED      TCP: send NBYTES of seeded pseudo-random data, print sha256
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import select
import socket
import struct
import sys
import time


def _csum(b: bytes) -> int:
    if len(b) & 1:
        b += b"\0"
    s = sum(struct.unpack(f">{len(b) // 2}H", b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ping(dst: str, count: int, interval: float) -> dict:
    v6 = ":" in dst
    if v6:  # the kernel fills in an ICMPv6 checksum, and a raw ICMPv6 socket reads no IP header
        s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        request, reply = 128, 129
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        request, reply = 8, 0
    ident = os.getpid() & 0xFFFF
    rtts = []
    for seq in range(count):
        body = struct.pack(">d", time.perf_counter()) + bytes(48)
        hdr = struct.pack(">BBHHH", request, 0, 0, ident, seq)
        pkt = hdr[:2] + struct.pack(">H", 0 if v6 else _csum(hdr + body)) + hdr[4:] + body
        t0 = time.perf_counter()
        s.sendto(pkt, (dst, 0))
        deadline = t0 + 1.0
        while True:
            left = deadline - time.perf_counter()
            if left <= 0 or not select.select([s], [], [], left)[0]:
                break
            data = s.recv(2048)
            hl = 0 if v6 else (data[0] & 15) * 4
            t, c, _icmp_sum, i, q = struct.unpack(">BBHHH", data[hl : hl + 8])
            if t == reply and i == ident and q == seq:
                rtts.append((time.perf_counter() - t0) * 1000)
                break
        time.sleep(interval)
    rtts.sort()
    return {
        "sent": count,
        "received": len(rtts),
        "rtt_ms_min": rtts[0] if rtts else None,
        "rtt_ms_median": rtts[len(rtts) // 2] if rtts else None,
        "rtt_ms_max": rtts[-1] if rtts else None,
    }


def unreachable(dst: str) -> dict:
    r = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.sendto(b"hello?", (dst, 9999))
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        if not select.select([r], [], [], 0.2)[0]:
            continue
        data = r.recv(2048)
        hl = (data[0] & 15) * 4
        icmp = data[hl:]
        quoted_dst = socket.inet_ntoa(icmp[8 + 16 : 8 + 20]) if len(icmp) >= 28 else None
        if icmp[0] == 3 and quoted_dst == dst:
            return {
                "type": icmp[0],
                "code": icmp[1],
                "from": socket.inet_ntoa(data[12:16]),
                "icmp_checksum_ok": _csum(bytes(icmp)) == 0,
                "ip_checksum_ok": _csum(bytes(data[:hl])) == 0,
                "quoted_dst": quoted_dst,
            }
    return {"type": None}


def sendraw(src: str, dst: str, payload_hex: str) -> dict:
    host, port = dst.rsplit(":", 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((src, 0))
    s.sendto(bytes.fromhex(payload_hex), (host, int(port)))
    return {"sent": True}


def _data(n: int, seed: int):
    rnd = random.Random(seed)
    block = rnd.randbytes(1 << 20)
    sent = 0
    while sent < n:
        chunk = block[: min(len(block), n - sent)]
        sent += len(chunk)
        yield chunk


def serve(port: int) -> dict:
    try:
        ls = socket.socket(socket.AF_INET6)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # IPv4 too (as ::ffff:a.b.c.d)
        ls.bind(("::", port))
    except OSError:  # no IPv6 in this namespace
        ls = socket.socket()
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("0.0.0.0", port))
    ls.listen(1)
    print(json.dumps({"listening": port}), flush=True)
    ls.settimeout(60)
    c, _addr = ls.accept()
    h = hashlib.sha256()
    n = 0
    while True:
        d = c.recv(1 << 20)
        if not d:
            break
        h.update(d)
        n += len(d)
    return {"bytes": n, "sha256": h.hexdigest()}


def send(dst: str, port: int, nbytes: int, seed: int) -> dict:
    s = socket.create_connection((dst, port), timeout=30)
    h = hashlib.sha256()
    t0 = time.monotonic()
    for chunk in _data(nbytes, seed):
        h.update(chunk)
        s.sendall(chunk)
    s.shutdown(socket.SHUT_WR)
    s.recv(1)  # wait for the peer to close
    return {"bytes": nbytes, "sha256": h.hexdigest(), "seconds": time.monotonic() - t0}


def main(argv: list[str]) -> None:
    cmd, args = argv[0], argv[1:]
    if cmd == "ping":
        out = ping(args[0], int(args[1]), float(args[2]))
    elif cmd == "unreachable":
        out = unreachable(args[0])
    elif cmd == "sendraw":
        out = sendraw(args[0], args[1], args[2])
    elif cmd == "serve":
        out = serve(int(args[0]))
    elif cmd == "send":
        out = send(args[0], int(args[1]), int(args[2]), int(args[3]))
    else:
        raise SystemExit(__doc__)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
