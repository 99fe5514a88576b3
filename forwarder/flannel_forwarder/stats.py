"""Data path counters, cheap to bump from the hot loops.

Each direction has its own ``DirectionStats`` written by exactly one thread
(the loop of that direction), so plain ``+=`` on attributes is safe without
locks; readers in other threads only ever see a slightly stale value.
"""

from __future__ import annotations

import threading

TX = "tx"  # TUN -> UDP
RX = "rx"  # UDP -> TUN


class DirectionStats:
    """Counters of one direction.  ``packets``/``bytes`` count wire packets (MTU-sized)."""

    __slots__ = ("packets", "bytes", "batches", "tun_packets", "drops")

    def __init__(self) -> None:
        self.packets = 0  # IP packets forwarded (as on the wire, after segmentation)
        self.bytes = 0  # bytes of those packets
        self.batches = 0  # syscalls that moved them (reads on TX, receives on RX)
        self.tun_packets = 0  # TUN reads (TX) or TUN writes (RX), super packets counted once
        self.drops: dict[str, int] = {}

    def drop(self, reason: str, n: int = 1) -> None:
        d = self.drops
        d[reason] = d.get(reason, 0) + n


class Stats:
    """All forwarder counters.  ``snapshot()`` returns plain dicts for rendering elsewhere."""

    def __init__(self) -> None:
        self.tx = DirectionStats()
        self.rx = DirectionStats()
        self.icmp_unreachable = 0  # ICMP net unreachable written back into the TUN
        self.way = None  # the name of the data path's way (udp/ways), set by the loops
        self._lock = threading.Lock()

    def snapshot(self) -> dict:
        with self._lock:
            out = {}
            for name, d in ((TX, self.tx), (RX, self.rx)):
                out[name] = {
                    "packets": d.packets,
                    "bytes": d.bytes,
                    "batches": d.batches,
                    "tun_packets": d.tun_packets,
                    "drops": dict(d.drops),
                }
            out["icmp_unreachable"] = self.icmp_unreachable
            out["way"] = self.way
            return out
