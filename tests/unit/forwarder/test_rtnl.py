"""rtnl.py: the rtnetlink messages the kernel backends read, parsed from bytes as the kernel sends them, and
kernel.concerns, which says which announcements make the sync read the kernel's tables."""

import socket
import struct

import pytest

from flannel_forwarder import kernel, rtnl


def attr(kind, payload):
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * ((4 - length % 4) % 4)


def message(msg_type, body, seq=7, flags=rtnl.NLM_F_MULTI):
    return struct.pack("=IHHII", 16 + len(body), msg_type, flags, seq, 0) + body


def route(dst, dst_len, gateway=None, oif=None, proto=kernel.FLANNEL_PROTO, table=254, flags=0,
          family=socket.AF_INET, long_table=None, msg_type=rtnl.RTM_NEWROUTE, seq=7):
    body = struct.pack("=BBBBBBBBI", family, dst_len, 0, 0, table, proto, 0, 1, flags)
    if dst is not None:
        body += attr(rtnl.RTA_DST, socket.inet_pton(family, dst))
    if gateway is not None:
        body += attr(rtnl.RTA_GATEWAY, socket.inet_pton(family, gateway))
    if oif is not None:
        body += attr(rtnl.RTA_OIF, struct.pack("=I", oif))
    if long_table is not None:
        body += attr(rtnl.RTA_TABLE, struct.pack("=I", long_table))
    return message(msg_type, body, seq)


def records(data, seq=None):
    return [item for _t, _f, _s, item in rtnl.parse(data, seq)]


def test_routes_of_both_families_with_their_fields():
    data = (route("10.5.2.0", 24, "10.5.2.0", 5, flags=kernel.RTNH_F_ONLINK)
            + route("fd00:5:0:2::", 64, "fd00::2", 6, family=socket.AF_INET6)
            + route(None, 0, "192.0.2.1", 2, proto=3)
            + route("10.9.0.0", 16, table=252, long_table=1000))
    assert records(data) == [
        rtnl.RouteEntry(socket.AF_INET, "10.5.2.0/24", 254, kernel.FLANNEL_PROTO, kernel.RTNH_F_ONLINK, "10.5.2.0", 5),
        rtnl.RouteEntry(socket.AF_INET6, "fd00:5:0:2::/64", 254, kernel.FLANNEL_PROTO, 0, "fd00::2", 6),
        rtnl.RouteEntry(socket.AF_INET, "0.0.0.0/0", 254, 3, 0, "192.0.2.1", 2),
        rtnl.RouteEntry(socket.AF_INET, "10.9.0.0/16", 1000, kernel.FLANNEL_PROTO, 0, None, None),
    ]


def test_link_with_its_kind_address_and_neighbour_and_fdb_entries():
    info = attr(rtnl.IFLA_INFO_KIND, b"vxlan\0") + attr(2, b"\0" * 12)  # IFLA_INFO_DATA is skipped
    link = message(rtnl.RTM_NEWLINK, struct.pack("=BxHiII", 0, 1, 9, 0, 0)
                   + attr(rtnl.IFLA_IFNAME, b"flannel.1\0") + attr(rtnl.IFLA_LINKINFO | 0x8000, info))
    plain = message(rtnl.RTM_DELLINK, struct.pack("=BxHiII", 0, 1, 1, 0, 0) + attr(rtnl.IFLA_IFNAME, b"lo\0"))
    addr = message(rtnl.RTM_NEWADDR, struct.pack("=BBBBI", socket.AF_INET, 24, 0, 0, 2)
                   + attr(rtnl.IFA_LOCAL, socket.inet_aton("192.0.2.1")))
    mac = bytes.fromhex("0e0001020304")
    neigh = message(rtnl.RTM_NEWNEIGH, struct.pack("=BxxxiHBB", socket.AF_INET, 9, 0x80, 0, 1)
                    + attr(rtnl.NDA_DST, socket.inet_aton("10.5.2.0")) + attr(rtnl.NDA_LLADDR, mac))
    fdb = message(rtnl.RTM_DELNEIGH, struct.pack("=BxxxiHBB", rtnl.AF_BRIDGE, 9, 0x80, 2, 1)
                  + attr(rtnl.NDA_LLADDR, mac) + attr(rtnl.NDA_DST, socket.inet_pton(socket.AF_INET6, "fd00::2")))
    assert records(link + plain + addr + neigh + fdb) == [
        rtnl.Link(9, "flannel.1", "vxlan"),
        rtnl.Link(1, "lo", None),
        rtnl.Addr(socket.AF_INET, 2, "192.0.2.1", 24),
        rtnl.NeighEntry(socket.AF_INET, 9, 0x80, 0, "10.5.2.0", "0e:00:01:02:03:04"),
        rtnl.NeighEntry(rtnl.AF_BRIDGE, 9, 0x80, 2, "fd00::2", "0e:00:01:02:03:04"),
    ]


def test_done_error_other_sequences_and_truncated_data():
    done = message(rtnl.NLMSG_DONE, struct.pack("=i", 0))
    error = message(rtnl.NLMSG_ERROR, struct.pack("=i", -1) + b"\0" * 16)
    other = route("10.5.3.0", 24, seq=8)
    got = list(rtnl.parse(route("10.5.2.0", 24) + other + error + done, seq=7))
    assert [(t, item if not isinstance(item, tuple) else item.dst) for t, _f, _s, item in got] == [
        (rtnl.RTM_NEWROUTE, "10.5.2.0/24"), (rtnl.NLMSG_ERROR, 1), (rtnl.NLMSG_DONE, None)]
    with pytest.raises(ValueError, match="truncated"):
        list(rtnl.parse(route("10.5.2.0", 24)[:-4]))
    # A type the reader does not read, or a body too short for its header, is None (skipped by its callers).
    assert records(message(rtnl.RTM_NEWLINK, b"\0" * 4) + message(40, b"\0" * 20)) == [None, None]


def test_reader_reads_this_namespace():
    """The reader against the real kernel: the loopback device and its address, and every route dump ends."""
    with rtnl.Reader() as reader:
        links = reader.links()
        lo = [link for link in links if link.name == "lo"]
        assert lo and lo[0].kind is None
        assert rtnl.Addr(socket.AF_INET, lo[0].index, "127.0.0.1", 8) in reader.addresses(socket.AF_INET)
        assert all(isinstance(r, rtnl.RouteEntry) for r in reader.routes(socket.AF_INET) + reader.routes(socket.AF_INET6))


def event(msg_type, data):
    return rtnl.Event(msg_type, rtnl.parse_record(msg_type, memoryview(data), 16, len(data)))


@pytest.mark.parametrize("data,ours", [
    (route("10.5.2.0", 24, oif=2, msg_type=rtnl.RTM_DELROUTE), True),  # a route of ours removed
    (route("10.5.7.0", 24, oif=2, proto=4), True),  # somebody's route to a destination of ours
    (route("10.6.0.0", 16, oif=2, proto=4), False),  # somebody's route elsewhere
    (route("10.5.2.0", 24, oif=2, table=255), False),  # the local table
])
def test_concerns_routes(data, ours):
    assert kernel.concerns(event(struct.unpack_from("=H", data, 4)[0], data), {9}, 2, {"10.5.7.0/24"}) is ours


def test_concerns_links_addresses_and_neighbours():
    def link(index, name):
        return message(rtnl.RTM_NEWLINK, struct.pack("=BxHiII", 0, 1, index, 0, 0) + attr(rtnl.IFLA_IFNAME, name))

    def neigh(family, index):
        return message(rtnl.RTM_NEWNEIGH, struct.pack("=BxxxiHBB", family, index, 2, 0, 1))

    def addr(index):
        return message(rtnl.RTM_NEWADDR, struct.pack("=BBBBI", socket.AF_INET, 24, 0, 0, index))

    def check(data):
        return kernel.concerns(event(struct.unpack_from("=H", data, 4)[0], data), {9, 10}, 2, frozenset())

    assert check(link(9, b"flannel.1\0")) and check(link(2, b"eth0\0")) and check(link(30, b"flannel-v6.1\0"))
    assert not check(link(31, b"veth12ab\0"))
    assert check(addr(2)) and not check(addr(31))
    assert check(neigh(socket.AF_INET, 9)) and check(neigh(rtnl.AF_BRIDGE, 10))
    assert not check(neigh(socket.AF_INET, 2))  # the underlay's ARP entries come and go with traffic
