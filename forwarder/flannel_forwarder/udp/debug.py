"""``python -m flannel_forwarder.udp.debug``: the udp data path with a static peer table (debugging, benchmarks).

No etcd and no lease: the TUN, the UDP socket and the loops of the udp
backend, exactly as the daemon runs them, between this host and the peers
given on the command line.  Prints one JSON line when ready (what was
set up: the way, the offloads the kernel granted), then forwards until
SIGTERM/SIGINT.  tests/integration/forwarder_datapath and bench/ start it.
Like the daemon, it needs the collection's module_utils on the path (as in a
release's lib/): the TUN is set up with IPRoute from ``iproute``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys

from ..routes import PeerTable, parse_peer
from ..stats import Stats
from . import ways
from .conn import UdpConn
from .loops import DataPath
from .tun.device import TunDevice

log = logging.getLogger(__name__)


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m flannel_forwarder.udp.debug",
        description="Run the flannel udp data path with a static peer table (debugging, benchmarks).",
    )
    p.add_argument("--tun-name", default="flannel0")
    p.add_argument("--network", required=True, help="the whole overlay, e.g. 10.5.0.0/16")
    p.add_argument("--subnet", required=True, help="this host's subnet, e.g. 10.5.1.0/24")
    p.add_argument("--bind", required=True, type=parse_peer, help="underlay IP[:PORT] to bind (port 8285 by default)")
    p.add_argument("--peer", action="append", default=[], metavar="SUBNET=IP[:PORT]")
    p.add_argument("--mtu", type=int, required=True, help="TUN MTU (flannel: the underlay's less 28)")
    p.add_argument("--no-offload", action="store_true", help="the single way: one packet per syscall")
    p.add_argument("--threads", action="store_true", help="one thread per direction (default: one thread)")
    p.add_argument("--stats-file", help="write counters as JSON here every second and at exit")
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


def _write_stats(path: str, stats: Stats) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(stats.snapshot(), f)
    os.replace(tmp, path)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    peers = PeerTable({subnet: hp for subnet, _eq, hp in (p.partition("=") for p in args.peer)})
    way = ways.choose(offload=not args.no_offload)
    conn = UdpConn(args.bind.public_ip, args.bind.port, offload=way.OFFLOAD)
    stats = Stats()
    try:
        tun = TunDevice(args.tun_name, network=args.network, subnet=args.subnet, mtu=args.mtu, offload=way.OFFLOAD)
    except BaseException:
        conn.close()
        raise
    data_path = DataPath(tun, conn, peers, stats, way=way, threads=args.threads)
    signal.signal(signal.SIGTERM, lambda *_: data_path.stop())
    signal.signal(signal.SIGINT, lambda *_: data_path.stop())
    print(json.dumps({"ready": True, "tun": tun.name, "mtu": args.mtu, "way": way.NAME, "vnet_hdr": tun.vnet_hdr,
                      "tun_offload_flags": tun.offload_flags, "udp_gso": conn.gso, "udp_gro": conn.gro,
                      "threads": data_path.threads, "pid": os.getpid()}), flush=True)
    try:
        data_path.start()
        while not data_path.stopped:
            if args.stats_file:
                _write_stats(args.stats_file, stats)
            data_path.wait(1.0 if args.stats_file else 0.5)
            if not data_path.healthy:
                break
    finally:
        data_path.close()
        tun.close()
        conn.close()
        if args.stats_file:
            _write_stats(args.stats_file, stats)
    return 1 if data_path.failed else 0


if __name__ == "__main__":
    sys.exit(main())
