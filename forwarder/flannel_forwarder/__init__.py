"""flannel-forwarder: a user-space data path wire-compatible with flannel's udp backend.

Pure logic: ``checksum``, ``packet``, ``offload``, ``routes``, ``stats``.
I/O at the edges: ``tun`` (the TUN device), ``conn`` (the UDP socket),
``device`` (the two forwarding loops).
"""

__version__ = "0.1.0"
