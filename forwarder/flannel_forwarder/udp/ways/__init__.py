"""Ways of running the udp data path's steps, one file each, one interface; one is chosen at start-up.

A way module has:

* ``NAME``, ``DESCRIPTION``;
* ``OFFLOAD``: whether the TUN and the UDP socket are asked for offloads
  (virtio header with TSO, UDP_SEGMENT, UDP_GRO);
* ``segment_tcp4(pkt, length, iphl, thl, mss, count, last, out) -> bytes``
  (tun.segment: cut a checked TCP super packet);
* ``rx_runs(buf, n, seg, net, mask, out, room) -> [Run] | None``, or None
  when the way has no batch step: check a received GRO batch from a
  sender with one subnet and cut it into runs at once (None: the
  per-packet path decides); ``room()`` gives the offset in *out* where the
  batch's payloads may go, asked only once the batch is taken.

``numpy`` (the default), ``python`` (when numpy is missing or
FLANNEL_FORWARDER_NO_NUMPY is set, the only place that variable is read)
and ``single`` (--no-offload).  tests/unit/forwarder/test_ways.py runs
every way against the reference over the same inputs.
"""

from __future__ import annotations

import importlib
import logging
import os

log = logging.getLogger(__name__)

NAMES = ("numpy", "python", "single")
NO_NUMPY_ENV = "FLANNEL_FORWARDER_NO_NUMPY"


def get_way(name: str):
    """The way module called *name*; ImportError when it cannot run here (numpy missing)."""
    if name not in NAMES:
        raise ValueError(f"no such way of the data path: {name} (one of {', '.join(NAMES)})")
    return importlib.import_module(f"{__name__}.{name}")


def choose(offload: bool = True, environ=None):
    """The way to run: ``single`` without offloads, else ``numpy`` unless unavailable or switched off."""
    if not offload:
        return get_way("single")
    environ = os.environ if environ is None else environ
    if environ.get(NO_NUMPY_ENV):
        log.info("%s is set: the python way", NO_NUMPY_ENV)
        return get_way("python")
    try:
        return get_way("numpy")
    except ImportError as e:
        log.warning("numpy unavailable (%s): the python way, several times slower", e)
        return get_way("python")
