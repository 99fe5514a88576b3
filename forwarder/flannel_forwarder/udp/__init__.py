"""The udp backend: flanneld's wire format (one IPv4 packet per UDP datagram) moved by this process.

* tun/: the TUN device with its offloads (virtio header, segmentation,
  coalescing) behind a batch read/write API;
* conn.py: the underlay UDP socket with GSO/GRO behind a batch
  send/receive API;
* loops.py: the two forwarding loops (``DataPath``) and their decisions;
  the peer table and anti-spoofing rule they use are ../routes.py, the
  IPv4 header rules ../packet.py;
* ways/: numpy, python, single: one implementation of each step, chosen
  once at start-up;
* debug.py: ``python -m flannel_forwarder.udp.debug``, the data path with
  a static peer table (integration tests, benchmarks).
"""
