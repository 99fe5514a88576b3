"""The python way: offloads (TSO, UDP GSO/GRO), every step in plain Python, one packet at a time.

Chosen when numpy is missing or FLANNEL_FORWARDER_NO_NUMPY is set.  Its
steps are the references the other ways are tested against:
tun.segment.segment_tcp4 segments, and a received batch always takes the
per-packet path (packet.check_ipv4_rows, routes.source_allowed, then
tun.coalesce.coalesce).
"""

from __future__ import annotations

from ..tun.segment import segment_tcp4

NAME = "python"
DESCRIPTION = "offloads (TSO, UDP GSO/GRO), each packet in plain Python"
OFFLOAD = True
rx_runs = None  # no batch step: every received batch takes the per-packet path

__all__ = ["NAME", "DESCRIPTION", "OFFLOAD", "segment_tcp4", "rx_runs"]
