"""struct virtio_net_hdr, the 10 bytes in front of every TUN read and write with IFF_VNET_HDR (pure).

The one definition of its layout and values (<linux/virtio_net.h>).  The
TUN is little-endian on every host we run on: legacy virtio is
guest-endian, and the TUN follows the host unless TUNSETVNETBE is used.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from ...packet import SHORT, PacketError

VNET_HDR_LEN = 10  # without num_buffers

F_NEEDS_CSUM = 1  # the checksum from csum_start to the end is left to finish (CHECKSUM_PARTIAL)
F_DATA_VALID = 2

GSO_NONE = 0
GSO_TCPV4 = 1
GSO_UDP = 3  # legacy UFO: IP fragments, never produced by current kernels
GSO_TCPV6 = 4
GSO_UDP_L4 = 5  # USO: every segment is a UDP datagram of its own
GSO_ECN = 0x80

VNET = struct.Struct("<BBHHHH")  # flags, gso_type, hdr_len, gso_size, csum_start, csum_offset
ZERO_VNET_HDR = bytes(VNET_HDR_LEN)  # a plain packet, checksums complete


class VirtioNetHdr(NamedTuple):
    flags: int = 0
    gso_type: int = GSO_NONE
    hdr_len: int = 0
    gso_size: int = 0
    csum_start: int = 0
    csum_offset: int = 0

    def encode(self) -> bytes:
        return VNET.pack(*self)

    @classmethod
    def decode(cls, buf, off: int = 0) -> "VirtioNetHdr":
        if len(buf) - off < VNET_HDR_LEN:
            raise PacketError(SHORT, "virtio_net_hdr")
        return cls._make(VNET.unpack_from(buf, off))


def pack_gso_tcpv4(buf, hdr_len: int, mss: int) -> None:
    """The header of a TCP super packet we write, at the start of *buf*: the kernel cuts it at *mss* and
    finishes the TCP checksums (the field at 20 + 16: IPv4 without options)."""
    VNET.pack_into(buf, 0, F_NEEDS_CSUM, GSO_TCPV4, hdr_len, mss, 20, 16)
