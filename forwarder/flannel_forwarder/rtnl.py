"""Reading the kernel's links, addresses, routes and neighbours over rtnetlink, and its change events.

The kernel backends (kernel.py) compare the kernel's entries with the
leases after every change. pyroute2 (which makes the changes) parses each
message it receives into a general object of about 13 KB and hands a dump
over as a whole: reading 1000 routes took 40 ms of CPU and left the
process 14 MB larger for good (glibc and Python keep the peak), and a
vxlan host with 1000 peers reads 3000 entries. What the sync needs of each
entry is a handful of fields, so it reads them itself: a dump request, the
fixed header of each message and the few attributes it names, nothing
kept. The parsing is pure (bytes in, records out: ``parse``); ``Reader``
and ``Monitor`` do the I/O. Writes stay with pyroute2.

``Monitor`` is a socket in the kernel's multicast groups of link, address,
route and neighbour changes: the sync thread waits on it, so an entry
removed by hand is put back at once, and the tables are not read while
nothing changes.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from typing import NamedTuple, Optional

NETLINK_ROUTE = 0

# Message types (linux/rtnetlink.h) and flags (linux/netlink.h).
NLMSG_ERROR, NLMSG_DONE = 2, 3
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
RTM_NEWNEIGH, RTM_DELNEIGH, RTM_GETNEIGH = 28, 29, 30
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_DUMP_INTR, NLM_F_DUMP = 0x1, 0x2, 0x10, 0x300

# Legacy multicast group bits (RTMGRP_*): links, neighbours (FDB entries included), addresses, routes.
GROUPS = 0x1 | 0x4 | 0x10 | 0x40 | 0x100 | 0x400

AF_BRIDGE = 7  # the FDB's family

_HDR = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, sequence, port
_ATTR = struct.Struct("=HH")  # rtattr: length, type
_IFINFO = struct.Struct("=BxHiII")  # ifinfomsg: family, type, index, flags, change
_IFADDR = struct.Struct("=BBBBI")  # ifaddrmsg: family, prefixlen, flags, scope, index
_RTMSG = struct.Struct("=BBBBBBBBI")  # rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags
_NDMSG = struct.Struct("=BxxxiHBB")  # ndmsg: family, ifindex, state, flags, type
_ERR = struct.Struct("=i")

IFLA_IFNAME, IFLA_LINKINFO, IFLA_INFO_KIND = 3, 18, 1
IFA_ADDRESS, IFA_LOCAL = 1, 2
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_TABLE = 1, 4, 5, 15
NDA_DST, NDA_LLADDR = 1, 2
NLA_TYPE_MASK = 0x3FFF


class Link(NamedTuple):
    index: int
    name: str
    kind: Optional[str]  # IFLA_INFO_KIND ("vxlan", "veth", ...); None for a device without one


class Addr(NamedTuple):
    family: int
    index: int
    address: str
    prefixlen: int


class RouteEntry(NamedTuple):
    family: int
    dst: str  # "10.5.2.0/24", "fd00:5:0:2::/64"; the default route as "0.0.0.0/0" or "::/0"
    table: int
    proto: int
    flags: int
    gateway: Optional[str]
    oif: Optional[int]


class NeighEntry(NamedTuple):
    family: int  # AF_INET / AF_INET6: a neighbour; AF_BRIDGE: an FDB entry
    ifindex: int
    state: int
    flags: int
    dst: Optional[str]  # a neighbour's address; an FDB entry's remote (VXLAN: the peer's public IP)
    lladdr: Optional[str]  # "aa:bb:cc:dd:ee:ff"


class Event(NamedTuple):
    """A change the kernel announced: its message type and the record (Link, Addr, RouteEntry, NeighEntry)."""
    type: int
    record: object


def _attrs(data, offset, end):
    """{type: value bytes} of the attributes in data[offset:end] (the last of a type wins)."""
    out = {}
    while offset + 4 <= end:
        length, kind = _ATTR.unpack_from(data, offset)
        if length < 4:
            break
        out[kind & NLA_TYPE_MASK] = data[offset + 4:offset + length]
        offset += (length + 3) & ~3
    return out


def _ip(family, raw):
    if raw is None:
        return None
    if family == socket.AF_INET6 or len(raw) == 16:
        return socket.inet_ntop(socket.AF_INET6, bytes(raw))
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, bytes(raw))
    return None


def _mac(raw):
    return ":".join("%02x" % b for b in raw) if raw is not None and len(raw) == 6 else None


def _u32(raw):
    return struct.unpack("=I", bytes(raw))[0] if raw is not None and len(raw) == 4 else None


def _name(raw):
    return bytes(raw).split(b"\0", 1)[0].decode("utf-8", "replace") if raw is not None else None


def parse_record(msg_type, data, offset, end):
    """The record of one rtnetlink message body data[offset:end] (after its nlmsghdr); None for a type not read
    here or a body too short to hold its header."""
    if msg_type in (RTM_NEWLINK, RTM_DELLINK) and end - offset >= _IFINFO.size:
        _family, _type, index, _flags, _change = _IFINFO.unpack_from(data, offset)
        attrs = _attrs(data, offset + _IFINFO.size, end)
        info = attrs.get(IFLA_LINKINFO)
        kind = _name(_attrs(info, 0, len(info)).get(IFLA_INFO_KIND)) if info is not None else None
        return Link(index, _name(attrs.get(IFLA_IFNAME)) or "", kind)
    if msg_type in (RTM_NEWADDR, RTM_DELADDR) and end - offset >= _IFADDR.size:
        family, prefixlen, _flags, _scope, index = _IFADDR.unpack_from(data, offset)
        attrs = _attrs(data, offset + _IFADDR.size, end)
        return Addr(family, index, _ip(family, attrs.get(IFA_ADDRESS, attrs.get(IFA_LOCAL))), prefixlen)
    if msg_type in (RTM_NEWROUTE, RTM_DELROUTE) and end - offset >= _RTMSG.size:
        family, dst_len, _src_len, _tos, table, proto, _scope, _rtype, flags = _RTMSG.unpack_from(data, offset)
        attrs = _attrs(data, offset + _RTMSG.size, end)
        dst = _ip(family, attrs.get(RTA_DST)) or ("::" if family == socket.AF_INET6 else "0.0.0.0")
        table = _u32(attrs.get(RTA_TABLE)) or table
        return RouteEntry(family, "%s/%d" % (dst, dst_len), table, proto, flags,
                          _ip(family, attrs.get(RTA_GATEWAY)), _u32(attrs.get(RTA_OIF)))
    if msg_type in (RTM_NEWNEIGH, RTM_DELNEIGH) and end - offset >= _NDMSG.size:
        family, ifindex, state, flags, _ntype = _NDMSG.unpack_from(data, offset)
        attrs = _attrs(data, offset + _NDMSG.size, end)
        return NeighEntry(family, ifindex, state, flags, _ip(family, attrs.get(NDA_DST)), _mac(attrs.get(NDA_LLADDR)))
    return None


def parse(data, seq=None):
    """Yield (type, flags, sequence, record or error) for each message in `data` (one datagram from the kernel).
    For NLMSG_ERROR the last item is the error number (0: an acknowledgement); for NLMSG_DONE None."""
    view = memoryview(data)
    offset, size = 0, len(data)
    while offset + _HDR.size <= size:
        length, msg_type, flags, msg_seq, _port = _HDR.unpack_from(view, offset)
        if length < _HDR.size or offset + length > size:
            raise ValueError("a netlink message of %d bytes at %d in %d (truncated)" % (length, offset, size))
        body, end = offset + _HDR.size, offset + length
        if seq is None or msg_seq == seq:
            if msg_type == NLMSG_ERROR:
                yield msg_type, flags, msg_seq, -_ERR.unpack_from(view, body)[0]
            elif msg_type == NLMSG_DONE:
                yield msg_type, flags, msg_seq, None
            else:
                yield msg_type, flags, msg_seq, parse_record(msg_type, view, body, end)
        offset += (length + 3) & ~3


class DumpInterrupted(Exception):
    """The table changed while the kernel dumped it (NLM_F_DUMP_INTR): read it again."""


class Reader:
    """A NETLINK_ROUTE socket for dumps: links(), addresses(family), routes(family), neighbours(family)."""

    BUFFER = 65536
    RETRIES = 5

    def __init__(self):
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE)
        self._sock.bind((0, 0))
        self._buf = bytearray(self.BUFFER)
        self._seq = 0

    def close(self):
        self._sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def links(self):
        return self.dump(RTM_GETLINK, _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0))

    def addresses(self, family=socket.AF_UNSPEC):
        return self.dump(RTM_GETADDR, _IFADDR.pack(family, 0, 0, 0, 0))

    def routes(self, family):
        return self.dump(RTM_GETROUTE, _RTMSG.pack(family, 0, 0, 0, 0, 0, 0, 0, 0))

    def neighbours(self, family):
        """Neighbours (AF_INET, AF_INET6), or FDB entries (AF_BRIDGE)."""
        return self.dump(RTM_GETNEIGH, _NDMSG.pack(family, 0, 0, 0, 0))

    def dump(self, msg_type, header):
        """[record] of a whole dump; read again when the kernel says the table changed meanwhile."""
        for attempt in range(self.RETRIES):
            try:
                return self._dump_once(msg_type, header)
            except DumpInterrupted:
                if attempt == self.RETRIES - 1:
                    raise
        return []  # not reached

    def _dump_once(self, msg_type, header):
        self._seq = (self._seq + 1) & 0xFFFFFFFF or 1
        seq = self._seq
        self._sock.send(_HDR.pack(_HDR.size + len(header), msg_type, NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + header)
        out, interrupted = [], False
        while True:
            n = self._sock.recv_into(self._buf)
            for mtype, flags, _seq, item in parse(memoryview(self._buf)[:n], seq):
                if mtype == NLMSG_DONE:
                    if interrupted or flags & NLM_F_DUMP_INTR:
                        raise DumpInterrupted()
                    return out
                if mtype == NLMSG_ERROR:
                    if item:
                        raise OSError(item, "netlink dump (type %d): %s" % (msg_type, os.strerror(item)))
                    continue
                interrupted = interrupted or bool(flags & NLM_F_DUMP_INTR)
                if item is not None:
                    out.append(item)


class Monitor:
    """A socket in the kernel's groups of link, address, route and neighbour (FDB) changes."""

    BUFFER = 65536
    RCVBUF = 1 << 20  # kernel memory for bursts (1000 routes set at once); an overflow means "read everything"

    def __init__(self, groups=GROUPS):
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE)
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.RCVBUF)
        except OSError:
            pass  # the default buffer does: an overflow is reported as one
        self._sock.bind((0, groups))
        self._sock.setblocking(False)
        self._buf = bytearray(self.BUFFER)

    def fileno(self):
        return self._sock.fileno()

    def close(self):
        self._sock.close()

    def drain(self, wanted):
        """(how many of the events queued now `wanted(event)` is true for, overflowed), without blocking and
        without keeping them (a burst of thousands, the sync's own changes, is read one message at a time);
        `overflowed` when the kernel dropped some (ENOBUFS): the caller must then read the tables, as any may
        have changed."""
        count, overflowed = 0, False
        while True:
            try:
                n = self._sock.recv_into(self._buf)
            except BlockingIOError:
                return count, overflowed
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                overflowed = True
                continue
            for mtype, _flags, _seq, item in parse(memoryview(self._buf)[:n]):
                if item is not None and mtype not in (NLMSG_ERROR, NLMSG_DONE) and wanted(Event(mtype, item)):
                    count += 1
