"""The single way: no offloads, one packet per system call (flanneld's loop; --no-offload).

The TUN without a virtio header (no super packets to cut or to make) and
the UDP socket without GSO/GRO: every TUN read, send, receive and TUN
write moves one packet, checked by the per-packet path.
"""

from __future__ import annotations

from ..tun.segment import segment_tcp4

NAME = "single"
DESCRIPTION = "no offloads: one packet per system call"
OFFLOAD = False
rx_runs = None

__all__ = ["NAME", "DESCRIPTION", "OFFLOAD", "segment_tcp4", "rx_runs"]
