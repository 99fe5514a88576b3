"""CPU per packet of the udp data path's steps: an older build (A) and this one (B) in one process.

Run on demand (root: SO_*BUFFORCE), not a test:

    sudo .venv/bin/python bench/datapath_steps.py STEP [--rounds 21] [--a /tmp/base/forwarder]

STEP: ``tx`` (a 64-byte UDP packet read from the TUN and sent), ``rx``
(15-datagram GRO batches of them received and written to the TUN),
``tso`` (a 64 KB TSO packet segmented and sent), ``tcprx`` (44-segment TCP
batches: checked, merged, one TUN write each), ``tcprx3`` (3-segment
batches).  The TUN is one end of a SOCK_SEQPACKET socketpair and the peer
a loopback UDP socket (as in tests/unit/forwarder/test_fuzz_datapath.py):
no namespaces.  Both builds' steps run in turn in this one process, timed
in thread CPU time, and the minimum over the rounds is printed: on a
shared machine far steadier than a throughput figure.  --a: a directory
holding build A's ``flannel_forwarder`` from before udp/ (``git archive``
of such a commit), imported under another name.
"""

from __future__ import annotations

import argparse
import importlib
import os
import socket
import struct
import sys
import time
import types

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "forwarder"))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "unit", "forwarder"))

from flannel_forwarder import routes as BR  # noqa: E402
from flannel_forwarder import stats as BS  # noqa: E402
from flannel_forwarder.udp import conn as BC  # noqa: E402
from flannel_forwarder.udp import loops as BD  # noqa: E402
from flannel_forwarder.udp.tun.io import TunIO  # noqa: E402
from fwd_packets import ipv4, tcp_segment, udp_datagram  # noqa: E402

BIG = 16 << 20
SRC, DST = 0x0A050202, 0x0A050102  # a peer's container -> ours
TS = b"\x01\x01\x08\x0a" + bytes(8)


class TunEnd(TunIO):
    """The forwarder's end of the socketpair, as both builds use a TUN (A: write/writev; B: TunIO)."""

    address_int = 0x0A050100

    def __init__(self, sock):
        self.sock = sock
        self.fd = sock.fileno()
        self.vnet_hdr = True

    def set_nonblocking(self, on=True):
        os.set_blocking(self.fd, not on)

    def write(self, data):
        return os.write(self.fd, data)

    def writev(self, bufs):
        return os.writev(self.fd, bufs)


def build_a(path: str):
    pkg = types.ModuleType("flannel_forwarder_a")
    pkg.__path__ = [os.path.join(path, "flannel_forwarder")]
    sys.modules["flannel_forwarder_a"] = pkg
    return tuple(importlib.import_module("flannel_forwarder_a." + m) for m in ("device", "conn", "routes", "stats"))


def rig(loops, conn_mod, routes, stats):
    tun, kernel = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    for s in (tun, kernel):
        s.setsockopt(socket.SOL_SOCKET, 32, BIG)
        s.setsockopt(socket.SOL_SOCKET, 33, BIG)
    kernel.setblocking(False)
    conn = conn_mod.UdpConn("127.0.0.1", 0)
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.setsockopt(socket.SOL_SOCKET, 33, BIG)
    peer.setsockopt(socket.SOL_SOCKET, 32, BIG)
    peer.bind(("127.0.0.2", 0))
    peer.setblocking(False)
    table = routes.PeerTable({"10.5.2.0/24": ("127.0.0.2", peer.getsockname()[1])})
    data_path = getattr(loops, "DataPath", None) or loops.Device  # builds before udp/ named it Device
    dev = data_path(TunEnd(tun), conn, table, stats.Stats())
    return {"kernel": kernel, "conn": conn, "peer": peer, "tx": dev._tx_step(), "rx": dev._rx_step(), "keep": (tun, dev)}


def drain(sock):
    while True:
        try:
            sock.recv(1 << 18)
        except BlockingIOError:
            return


def inputs():
    udp = ipv4(SRC, DST, 17, udp_datagram(SRC, DST, bytes(64)))
    tcp = [ipv4(SRC, DST, 6, tcp_segment(SRC, DST, bytes(1408), seq=1000 + i * 1408, flags=0x10, options=TS))
           for i in range(44)]
    out = ipv4(DST, 0x0A050203, 17, udp_datagram(DST, 0x0A050203, bytes(64)))
    big = ipv4(DST, 0x0A050203, 6, tcp_segment(DST, 0x0A050203, bytes(46 * 1420), seq=5, flags=0x18, options=TS))
    return {
        "tx": (bytes(10) + out, 1500),
        "tso": (struct.pack("<BBHHHH", 1, 1, 52, 1420, 20, 16) + big, 60),
        "rx": ([udp] * 15, 100),
        "tcprx": (tcp, 150),
        "tcprx3": (tcp[:3], 150),
    }


def once(r, step: str, what) -> float:
    """Thread CPU seconds per packet (per super packet for tso) of one batch of work."""
    data, count = what
    if step in ("tx", "tso"):
        for _i in range(count):
            r["kernel"].send(data)
        t0 = time.thread_time()
        while r["tx"](8):
            pass
        dt = time.thread_time() - t0
        drain(r["peer"])
        return dt / count
    payload = b"".join(data)
    for _i in range(count):
        r["peer"].sendmsg([payload], [(17, 103, struct.pack("=H", len(data[0])))], 0, r["conn"].local_address)
    time.sleep(0.02)
    t0 = time.thread_time()
    while r["rx"](8):
        pass
    dt = time.thread_time() - t0
    drain(r["kernel"])
    return dt / (count * len(data))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("step", choices=sorted(inputs()))
    ap.add_argument("--rounds", type=int, default=21)
    ap.add_argument("--a", default="/tmp/base/forwarder", help="build A's forwarder directory")
    args = ap.parse_args()
    what = inputs()[args.step]
    rigs = {"A": rig(*build_a(args.a)), "B": rig(BD, BC, BR, BS)}
    res = {"A": [], "B": []}
    for i in range(args.rounds):
        for name in ("A", "B") if i % 2 else ("B", "A"):
            res[name].append(once(rigs[name], args.step, what))
    a, b = min(res["A"]), min(res["B"])
    unit = "super packet" if args.step == "tso" else "packet"
    print(f"{args.step}: A {a * 1e6:.3f} us, B {b * 1e6:.3f} us per {unit}; B/A CPU {b / a:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
