# -*- coding: utf-8 -*-
# Copyright: overlay.flannel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The underlay between the hosts: ICMP echoes with DF, the backend's port, and what they mean.

Shared by the forwarder's peer probes (the echo packets) and site.yml's
preflight (overlay.flannel.host_probe's part ``preflight``, then the
forwarder role's check): before anything changes, each host checks a few
other hosts (its ring neighbours: the next ``RING`` hosts in inventory order,
so that 500 hosts mean 1000 checks, not 250000) over the underlay:

* a DF echo at the backend's full packet size (the overlay MTU plus the
  encapsulation, backends.OVERHEAD) gets through; when it does not, the
  largest size that does is searched, so the message can say which
  ``flannel_mtu`` would work;
* udp and vxlan: a datagram reaches the backend's port (an answer from the
  peer's preflight listener, or the peer's kernel saying nothing listens
  there; where the peer's forwarder holds the port, nothing answers and the
  preflight does not fail: the running forwarders' own peer probes say
  whether they reach each other, and a peer they see is not asked, when
  they run that backend on that port: ``vouched``);
* host-gw: the peer is on the underlay's network (the routes go via it).

The pure parts (sizes, the ring, the problems) are tested in
tests/unit/core/test_underlay.py; the I/O parts (``ping_sizes``,
``PortCheck``) need a socket and run on the hosts.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import ipaddress
import os
import select
import socket
import struct
import threading
import time

from ansible_collections.overlay.flannel.plugins.module_utils import backends

RING = 2  # other hosts each host checks
MIN_SIZE = 576  # every IPv4 path carries this (RFC 791)
IP_HEADER, ICMP_HEADER = 20, 8
ECHO_REQUEST, ECHO_REPLY = 8, 0
IP_MTU_DISCOVER, IP_PMTUDISC_PROBE = 10, 3  # <linux/in.h>: DF on every packet, whatever the cached path MTU
MAGIC = b"overlay.flannel preflight "


# --- pure ---------------------------------------------------------------------------------------------------------

def ring(names, name, count=RING):
    """The hosts `name` checks: the next `count` after it in `names`, wrapping (none when alone)."""
    names = list(names)
    if name not in names or len(names) < 2:
        return []
    i = names.index(name)
    return [names[(i + k) % len(names)] for k in range(1, min(count, len(names) - 1) + 1)]


def full_size(backend, mtu, underlay_mtu):
    """The largest packet the backend puts on the underlay: the overlay MTU (flannel_mtu; 0: the underlay's
    less the encapsulation) plus the encapsulation."""
    if mtu:
        return int(mtu) + backends.OVERHEAD[backend]
    return int(underlay_mtu)


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def echo_payload(token, seq, size):
    """The data of an echo whose IP packet has `size` bytes: the token, the sequence number, then filler."""
    head = token + struct.pack("!I", seq)
    n = size - IP_HEADER - ICMP_HEADER
    if n < len(head):
        raise ValueError("an echo of %d bytes cannot carry its token" % size)
    return head + bytes(bytearray(i & 0xFF for i in range(n - len(head))))


def echo_request(ident, seq, data):
    header = struct.pack("!BBHHH", ECHO_REQUEST, 0, 0, ident & 0xFFFF, seq & 0xFFFF)
    return struct.pack("!BBHHH", ECHO_REQUEST, 0, checksum(header + data), ident & 0xFFFF, seq & 0xFFFF) + data


def parse_reply(packet, with_ip_header):
    """(sequence number, data) of an echo reply, None for anything else (a raw socket sees every ICMP packet,
    with its IP header)."""
    packet = bytes(packet)
    if with_ip_header:
        if len(packet) < IP_HEADER or packet[0] >> 4 != 4:
            return None
        packet = packet[(packet[0] & 0x0F) * 4:]
    if len(packet) < ICMP_HEADER or packet[0] != ECHO_REPLY or packet[1] != 0:
        return None
    return struct.unpack("!H", packet[6:8])[0], packet[ICMP_HEADER:]


def vouched(status, backend, port):
    """The peers (public IPs) whose port this host's running forwarder vouches for: those its peer probes see
    through the overlay (up, or an MTU black hole: small packets pass), when its status file (`status`, the
    parsed JSON) says it runs the `backend` on the `port` the preflight checks. A forwarder on another backend or
    port (site.yml switching them), or a status file without them, vouches for none."""
    status = status or {}
    if status.get("backend") != backend or status.get("port") != port:
        return set()
    return set(e.get("public_ip") for e in status.get("peers") or []
               if isinstance(e, dict) and e.get("state") in ("up", "mtu"))


def problems(name, result, backend, mtu, others):
    """What the preflight of host `name` found wrong, one message per pair and kind, naming both hosts, what
    failed and the settings that fix it. `result`: its host_probe part ``preflight``; `others`: {host name:
    that host's ``preflight`` result} (to know whose port a running forwarder holds)."""
    if not result or result.get("skipped"):
        return []
    found = []
    overhead = backends.OVERHEAD[backend]
    size = result["size"]
    for check in result.get("checks", []):
        peer, address = check["name"], check["address"]
        ping = check.get("ping") or {}
        if not ping.get("ok"):
            passes = ping.get("passes")
            if passes:
                fit = passes - overhead
                found.append(
                    "%s -> %s (%s): DF packets of %d bytes (the %s backend's full size: the overlay MTU %d%s plus %d "
                    "bytes of encapsulation) do not get through the underlay; %d bytes do. Set flannel_mtu to %d or "
                    "less, or raise the MTU of the hop between them"
                    % (name, peer, address, size, backend, size - overhead,
                       "" if mtu else " (flannel_mtu 0: the underlay's less the encapsulation)", overhead, passes, fit))
            else:
                found.append("%s -> %s (%s): no ICMP echo gets through the underlay (%s): the hosts must reach each "
                             "other; check the address, the routes and the firewall"
                             % (name, peer, address, ping.get("error") or "no answer"))
        port = check.get("port")
        # A datagram without an answer is a blocked port only when the peer's own preflight listener was open in
        # this run. Where the peer's forwarder holds the port (or the peer is not in the play) nothing answers a
        # preflight datagram, and this host's peer probes may not reach it for reasons of the overlay's own (its
        # docker0 down, its forwarder just restarted): site.yml must still run then, to repair it, and the
        # probes and report.yml show the pair as down.
        listening = (others.get(peer) or {}).get("listener") == "listening"
        if port and not port.get("ok") and listening:
            found.append("%s -> %s (%s): UDP datagrams to the %s backend's port %d get no answer: open UDP port %d "
                         "between the hosts in the firewall (or set flannel_backend_port to a port that is open)"
                         % (name, peer, address, backend, result["port"], result["port"]))
        if check.get("same_network") is False:
            found.append("%s -> %s (%s): the host-gw backend routes via each peer's public IP, which must be on the "
                         "underlay's network (%s): use the vxlan backend (flannel_backend_type) with "
                         "flannel_backend_direct_routing, or put the hosts on one network"
                         % (name, peer, address, result.get("network")))
    return found


# --- I/O (on the hosts) -------------------------------------------------------------------------------------------

def icmp_socket():
    """(socket, its packets carry the IP header): an unprivileged ICMP socket, else a raw one (root)."""
    try:
        sock, raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP), False
    except (OSError, socket.error):
        sock, raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP), True
    sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_PROBE)
    sock.setblocking(False)
    return sock, raw


def ping_sizes(sock, raw, address, sizes, timeout=1.0):
    """{size: answered} of one DF echo per size to `address`, all sent at once, waited for up to `timeout`."""
    token = os.urandom(8)
    pending, answered = {}, {}
    for seq, size in enumerate(sizes, 1):
        data = echo_payload(token, seq, size)
        try:
            sock.sendto(echo_request(os.getpid(), seq, data), (address, 0))
        except (OSError, socket.error):  # EMSGSIZE: bigger than a local MTU
            answered[size] = False
            continue
        pending[seq] = (size, data)
    deadline = time.time() + timeout
    while pending and time.time() < deadline:
        ready = select.select([sock], [], [], max(0.0, deadline - time.time()))[0]
        if not ready:
            break
        while True:
            try:
                packet, addr = sock.recvfrom(65535)
            except (OSError, socket.error):
                break
            got = parse_reply(packet, raw)
            if got is None or addr[0] != address or got[0] not in pending or pending[got[0]][1] != got[1]:
                continue
            answered[pending.pop(got[0])[0]] = True
    for size, _data in pending.values():
        answered[size] = False
    return answered


def df_check(sock, raw, address, size):
    """dict(ok, passes, error): whether a DF echo of `size` bytes gets an answer; if not, the largest size
    between MIN_SIZE and it that does (in two ladders of echoes, so at most about 2 s), None when none does."""
    if ping_sizes(sock, raw, address, [size]).get(size):
        return dict(ok=True, passes=size, error=None)
    coarse = sorted(set([MIN_SIZE] + list(range(size - 32, MIN_SIZE, -32))))
    got = ping_sizes(sock, raw, address, coarse)
    good = [s for s in coarse if got.get(s)]
    if not good:
        return dict(ok=False, passes=None, error="no answer at %d bytes either" % MIN_SIZE)
    low = max(good)
    fine = list(range(low + 1, min(low + 32, size)))
    got = ping_sizes(sock, raw, address, fine) if fine else {}
    return dict(ok=False, passes=max([low] + [s for s in fine if got.get(s)]), error=None)


class PortCheck(object):
    """The backend's UDP port between this host and its neighbours: a listener that answers the preflight's
    datagrams (where nothing holds the port yet), and a check that sends them and waits for an answer: the
    peer's listener echoing it, or its kernel's port unreachable (nothing listens: the datagram got there).

    The listener is served by a thread of its own from the moment it opens until close(), so that a neighbour
    whose check comes while this host is still busy with its DF echoes (slow where a hop drops large packets)
    gets its answer: a listener that is open but not served would look like a blocked port."""

    def __init__(self, port):
        self.port = port
        self.listener = None
        self.state = "closed"
        self._closing = threading.Event()
        self._thread = None
        try:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("0.0.0.0", port))
            s.setblocking(False)
            self.listener, self.state = s, "listening"
        except (OSError, socket.error) as exc:
            self.state = "in_use" if exc.errno == errno.EADDRINUSE else "error: %s" % exc
        if self.listener is not None:
            self._thread = threading.Thread(target=self._serve_until_closed, name="preflight-listener")
            self._thread.daemon = True
            self._thread.start()

    def _serve_until_closed(self):
        while not self._closing.is_set():
            try:
                ready = select.select([self.listener], [], [], 0.1)[0]
            except (OSError, socket.error, ValueError):
                return
            if ready:
                self._serve()

    def _serve(self):
        if self.listener is None:
            return
        while True:
            try:
                data, addr = self.listener.recvfrom(2048)
            except (OSError, socket.error):
                return
            if data.startswith(MAGIC):
                try:
                    self.listener.sendto(data, addr)
                except (OSError, socket.error):
                    pass

    def check(self, addresses, window=2.0):
        """{address: "answered" | "refused" | None (no answer in `window` seconds)}."""
        socks, result = {}, {}
        for address in addresses:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setblocking(False)
            s.connect((address, self.port))
            socks[s] = address
            result[address] = None
        token = MAGIC + os.urandom(8)
        deadline = time.time() + window
        next_send = 0.0
        while time.time() < deadline and any(v is None for v in result.values()):
            now = time.time()
            if now >= next_send:
                for s, address in socks.items():
                    if result[address] is None:
                        try:
                            s.send(token)
                        except (OSError, socket.error) as exc:
                            if exc.errno == errno.ECONNREFUSED:
                                result[address] = "refused"
                next_send = now + 0.2
            waiting = [s for s, a in socks.items() if result[a] is None]
            ready = select.select(waiting, [], [], max(0.0, min(next_send, deadline) - time.time()))[0]
            for s in ready:
                try:
                    if s.recv(2048) == token:
                        result[socks[s]] = "answered"
                except (OSError, socket.error) as exc:
                    if exc.errno == errno.ECONNREFUSED:
                        result[socks[s]] = "refused"
        for s in socks:
            s.close()
        return result

    def close(self):
        self._closing.set()
        if self._thread is not None:
            self._thread.join(1.0)
        if self.listener is not None:
            self.listener.close()


def same_network(public_ip, prefixlen, address):
    """Whether `address` is on the network of this host's public IP (host-gw's rule)."""
    try:
        net = ipaddress.ip_network(u"%s/%d" % (public_ip, prefixlen), strict=False)
        return ipaddress.ip_address(u"%s" % address) in net, str(net)
    except ValueError:
        return False, None


def interface_of(addresses, public_ip):
    """(interface name, its MTU, the public IP's prefix length) from `ip -j -4 addr show`'s parsed output;
    (None, None, None) when no interface holds `public_ip`."""
    for link in addresses or []:
        for addr in link.get("addr_info") or []:
            if addr.get("local") == public_ip:
                return link.get("ifname"), link.get("mtu"), addr.get("prefixlen")
    return None, None, None


def default_port(backend):
    """The backend's port when flannel_backend_port is 0: udp 8285, vxlan 8472 (Linux's), host-gw none."""
    return {backends.UDP: backends.DEFAULT_UDP_PORT, backends.VXLAN: backends.VXLAN_KERNEL_PORT}.get(backend)
