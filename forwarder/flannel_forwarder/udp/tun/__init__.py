"""The TUN with its offloads, behind a batch read/write API (see io.py).

* device.py: ``TunDevice``, the configured device (python-pytun, offload
  ioctls, address, MTU and route with pyroute2);
* io.py: ``TunReader`` / ``TunWriter``, reads that hand over plain IPv4
  packets and writes that take them;
* virtio.py: the virtio_net_hdr in front of each read and write;
* segment.py: TSO super packets cut into MTU-sized packets (reads);
* coalesce.py: TCP segments merged into super packets (writes).

Only device.py needs python-pytun and pyroute2; the rest is pure and is
imported without them.
"""
