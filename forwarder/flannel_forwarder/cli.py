"""flannel-forwarder: join this host to the overlay, with the backend the network config names.

Start-up: settings -> underlay address and MTU -> etcd: the config and this
host's lease (found by public IP, or re-claimed from the subnet file; its
BackendType/BackendData rewritten if the backend changed) -> the backend the
config names (backend/: chosen once by name, one interface), started with
the peers of the listed leases: udp (TUN, routes, UDP socket and the data
path in this process, wire-compatible with flanneld's udp backend) or vxlan
/ host-gw (kernel state programmed from the leases, kernel.py; no packet
passes through this process) -> subnet.env and docker's options file ->
lease renewal and peer watch -> health server -> READY=1 to systemd.

SIGTERM keeps the lease (a restart finds the same subnet). udp: the TUN and
its routes go with the process. vxlan / host-gw: the kernel state stays, so
containers keep talking while the daemon restarts; --remove-kernel-state
(retire.yml) removes it.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading

from ansible_collections.overlay.flannel.plugins.module_utils.etcd_client import EtcdClient, EtcdError
from ansible_collections.overlay.flannel.plugins.module_utils.hostfiles import (
    parse_lease_state,
    previous_subnet,
    previous_subnet6,
    render_docker_opts,
    render_lease_state,
    render_subnet_env,
)
from ansible_collections.overlay.flannel.plugins.module_utils import backends, hoststate
from ansible_collections.overlay.flannel.plugins.module_utils.backends import BackendError
from ansible_collections.overlay.flannel.plugins.module_utils.settings import MIN_MTU
from ansible_collections.overlay.flannel.plugins.module_utils.store import FlannelStore, StoreError

from . import __version__
from . import backend as backend_registry
from .config import SettingsError, etcd_client_options, parse
from .files import write_atomic
from .health import HealthServer, render_metrics
from .leasekeeper import LeaseKeeper, LeaseLost, NoLease
from .peer_probes import Prober
from .sdnotify import notify

log = logging.getLogger("flannel_forwarder")


class StartupError(Exception):
    pass


def setup_logging(level):
    logging.basicConfig(
        level=getattr(logging, level.upper()), stream=sys.stderr,
        format="%(asctime)s level=%(levelname)s logger=%(name)s %(message)s", datefmt="%Y-%m-%dT%H:%M:%S%z")
    # pyroute2 logs every netlink message at debug: our own debug lines would drown (the kernel backends
    # make a change per entry). It sets its logger's level when imported: import it first.
    from . import iproute  # noqa: F401  pylint: disable=unused-import

    logging.getLogger("pyroute2").setLevel(logging.INFO)


def underlay(settings):
    """(public_ip, iface name, iface MTU) from --public-ip / --iface / the default route."""
    from .iproute import IPRoute

    with IPRoute() as ipr:
        addrs = [(a.get_attr("IFA_ADDRESS"), a["index"]) for a in ipr.get_addr(family=socket.AF_INET)]
        names = {link["index"]: (link.get_attr("IFLA_IFNAME"), link.get_attr("IFLA_MTU")) for link in ipr.get_links()}
        if settings.public_ip:
            index = next((i for ip, i in addrs if ip == settings.public_ip), None)
            if index is None and settings.iface:
                index = next((i for i, (n, _m) in names.items() if n == settings.iface), None)
            if index is None:
                raise StartupError("--public-ip %s is not an address of this host (give --iface for its MTU)"
                                   % settings.public_ip)
            name, mtu = names[index]
            return settings.public_ip, name, mtu
        if settings.iface:
            index = next((i for i, (n, _m) in names.items() if n == settings.iface), None)
            if index is None:
                raise StartupError("--iface %s: no such interface" % settings.iface)
        else:
            routes = ipr.get_default_routes(family=socket.AF_INET)
            if not routes:
                raise StartupError("no default route: give --public-ip or --iface")
            index = routes[0].get_attr("RTA_OIF")
        ip = next((a for a, i in addrs if i == index), None)
        if ip is None:
            raise StartupError("interface %s has no IPv4 address: give --public-ip" % names[index][0])
        name, mtu = names[index]
        return ip, name, mtu


# The kernel's address flags (IFA_F_*) by the names `ip addr` prints.
IFA_FLAGS = (("temporary", 0x01), ("dadfailed", 0x08), ("deprecated", 0x20), ("tentative", 0x40))
RT_SCOPE_UNIVERSE = 0


def global_ipv6(addresses):
    """flanneld's default PublicIPv6: among `addresses` ([(address, scope, flags)] of the underlay interface, as
    the kernel lists them), the global one hoststate.choose_ipv6 takes, the roles' rule (the first usable one;
    a privacy or failed duplicate one never; one still tentative, then a deprecated one - a router
    advertisement's, past its preferred lifetime - only when there is no other). None when there is none."""
    return hoststate.choose_ipv6([(address, [name for name, bit in IFA_FLAGS if flags & bit])
                                  for address, scope, flags in addresses if scope == RT_SCOPE_UNIVERSE])


def public_ipv6(settings, iface):
    """--public-ipv6 as given, else the global IPv6 address of the underlay interface `iface` (None: none).
    Used on a dual-stack network only (the lease keeper refuses a dual-stack network without one)."""
    if settings.public_ipv6:
        return settings.public_ipv6
    from .iproute import IPRoute

    with IPRoute() as ipr:
        index = ipr.link_lookup(ifname=iface)
        if not index:
            return None
        return global_ipv6([(a.get_attr("IFA_ADDRESS"), a["scope"], a.get_attr("IFA_FLAGS") or a["flags"])
                            for a in ipr.get_addr(family=socket.AF_INET6, index=index[0])])


def read_previous(subnet_file, state_file):
    """(subnet, IPv6 subnet) this host held before: subnet.env first, else the state file kept across reboots
    (hostfiles.render_lease_state; None for a half neither names)."""
    found, found6 = None, None
    for path in (subnet_file, state_file):
        if not path:
            continue
        try:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
        except OSError:
            continue
        if "=" in text:
            subnet, subnet6 = previous_subnet(text), previous_subnet6(text)
        else:
            subnet, subnet6 = parse_lease_state(text)
        found = found or subnet
        found6 = found6 or subnet6
    return found, found6


def choose_mtu(setting, underlay_mtu, iface, backend_type=backends.UDP):
    """The one MTU of the data path device (TUN, VXLAN device) and of FLANNEL_MTU (so docker0 and the
    containers): --mtu, or the underlay's less the backend's encapsulation (udp 28, vxlan 50, host-gw 0)."""
    largest = backends.mtu(backend_type, underlay_mtu)
    if not setting:
        return largest
    if not MIN_MTU <= setting <= largest:
        raise StartupError("--mtu / FLANNELD_MTU %d must lie in %d..%d: the underlay interface %s has MTU %d and "
                           "the %s encapsulation takes %d bytes"
                           % (setting, MIN_MTU, largest, iface, underlay_mtu,
                              backend_type, backends.OVERHEAD[backend_type]))
    return setting


def choose_mtu6(mtu, underlay_mtu, backend_type):
    """The MTU of the IPv6 VXLAN device: the underlay's less the encapsulation over IPv6 (the kernel's), or
    the data path's `mtu` (FLANNEL_MTU) when that is smaller (--mtu)."""
    return min(mtu, backends.mtu6(backend_type, underlay_mtu))


def write_host_files(s, config, subnet, mtu, subnet6=None):
    """subnet.env and docker's options file (the forwarder is their only writer), each replaced atomically;
    a dual-stack host's (`subnet6`) name its IPv6 network and subnet too."""
    network6 = config.ipv6_network if config.dual_stack and subnet6 is not None else None
    env = render_subnet_env(config.network, subnet, mtu, s.ip_masq, network6, subnet6 if network6 else None)
    write_atomic(s.subnet_file, env)
    if s.docker_opts_file:
        write_atomic(s.docker_opts_file, render_docker_opts(env))


class Daemon:
    def __init__(self, settings):
        self.settings = settings
        self.stop_event = threading.Event()
        self.is_ready = False
        self.keeper = None
        self.backend = None  # the running backend (backend.Backend)
        self.prober = None  # the peer probes (peer_probes.Prober), observing only

    # state for the health server
    def healthy(self):
        return self.backend is not None and self.backend.healthy and not (self.keeper and self.keeper.fatal)

    def ready(self):
        return self.is_ready and self.healthy()

    def metrics(self):
        b = self.backend
        probes = self.prober.metrics() if self.prober else []
        return render_metrics(None, self.keeper, self.ready(), backend=(b.TYPE, b.metrics() + probes) if b else None)

    def run(self):
        s = self.settings
        public_ip, iface, underlay_mtu = underlay(s)
        ipv6 = public_ipv6(s, iface)
        log.info("starting version=%s public_ip=%s public_ipv6=%s iface=%s underlay_mtu=%d", __version__, public_ip,
                 ipv6, iface, underlay_mtu)
        client = EtcdClient(**etcd_client_options(s))
        store = FlannelStore(client, s.etcd_prefix)
        self.keeper = keeper = LeaseKeeper(store, public_ip, renew_margin=s.renew_margin_seconds,
                                           ttl=s.subnet_lease_ttl, public_ipv6=ipv6)
        lease = None
        kind = None  # the class of the config's backend
        health = None
        try:
            lease = keeper.claim(*read_previous(s.subnet_file, s.lease_state_file))
            config = keeper.config
            kind = backend_registry.get(config.backend_type)
            mtu = choose_mtu(s.mtu, underlay_mtu, iface, config.backend_type)
            if config.dual_stack:
                host = backend_registry.Host(public_ip, iface, lease.subnet, mtu, keeper.public_ipv6, lease.subnet6,
                                             choose_mtu6(mtu, underlay_mtu, config.backend_type))
            else:
                host = backend_registry.Host(public_ip, iface, lease.subnet, mtu)
            self.backend = backend = kind(config, host, s)
            backend.start(keeper.initial_peers(backend.peer_of, backend.peer6_of if config.dual_stack else None))
            describe = backend.describe()
            write_host_files(s, config, lease.subnet, mtu, host.subnet6)
            if s.lease_state_file:
                write_atomic(s.lease_state_file, render_lease_state(lease.subnet, host.subnet6))

            def on_config(new):
                # A grown or moved network: the backend follows it (udp: the TUN's route), and
                # FLANNEL_NETWORK (FLANNEL_IPV6_NETWORK) for docker's side.
                backend.follow_network(new.network)
                write_host_files(s, new, lease.subnet, mtu, host.subnet6)

            keeper.start(backend.peers, on_fatal=lambda exc: self.stop_event.set(), on_config=on_config)
            if s.healthz_port:
                health = HealthServer(s.healthz_ip, s.healthz_port, self).start()
            if s.probe_interval:
                self.prober = Prober(backend.peers, lease.subnet, mtu, s.probe_interval, s.peer_status_file,
                                     host={"public_ip": public_ip, "backend": config.backend_type,
                                           "port": config.backend_port}).start()
            self.is_ready = True
            # The status line starts with the backend: the forwarder role waits for it after a backend change.
            subnets = "%s & %s" % (lease.subnet, host.subnet6) if host.subnet6 is not None else str(lease.subnet)
            notify("READY=1\nSTATUS=%s: %s, subnet %s, %d peers" % (config.backend_type, describe, subnets,
                                                                    len(backend.peers)))
            log.info("ready backend=%s subnet=%s %s mtu=%d peers=%d", config.backend_type, subnets, describe,
                     mtu, len(backend.peers))
            while not self.stop_event.wait(1.0):
                if backend.failed:
                    log.error("the data path stopped unexpectedly")
                    break
        finally:
            self.is_ready = False
            notify("STOPPING=1")
            if self.prober is not None:
                self.prober.stop()
            if self.keeper is not None:
                self.keeper.stop()
            if self.backend is not None:
                self.backend.close()
            if health is not None:
                health.stop()
            client.close()
            if lease is not None:
                log.info("stopped; the lease of %s is kept%s", lease.subnet,
                         ", and the kernel state" if kind is not None and kind.KEEPS_KERNEL_STATE else "")
        if keeper.fatal:
            raise LeaseLost(keeper.fatal)
        return 1 if (self.backend is not None and self.backend.failed) else 0


# glibc's malloc gives a thread that allocates while another holds an arena an arena of its own, up to 8 per
# core, and each keeps the memory freed into it. The daemon runs about 14 threads (gRPC's six, the lease
# renewal, the peer watch, the kernel sync, the probes, the health server, ...) that mostly wait; two
# arenas took 1.3-1.7 MiB off its resident memory with 1000 peers (bench/README.md, "Footprint").
M_ARENA_MAX = -8  # <malloc.h>
MALLOC_ARENAS = 2


def cap_malloc_arenas(limit=MALLOC_ARENAS, environ=None):
    """Cap glibc's malloc arenas at `limit` (mallopt(M_ARENA_MAX)); call it before any thread starts (glibc
    fixes its limit when the first thread asks for an arena). Left as it is when the environment sets it
    (MALLOC_ARENA_MAX, or glibc.malloc.arena_max in GLIBC_TUNABLES: glibc read it at start; an operator can
    so give another value in the unit) or without glibc's mallopt (musl has no arenas). True when capped.
    `environ`: os.environ unless given."""
    environ = os.environ if environ is None else environ
    if "MALLOC_ARENA_MAX" in environ or "glibc.malloc.arena_max" in environ.get("GLIBC_TUNABLES", ""):
        return False
    import ctypes  # already loaded by the libraries the daemon imports: it costs nothing here

    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own C library
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return mallopt(M_ARENA_MAX, limit) == 1


def main(argv=None):
    cap_malloc_arenas()  # first: no thread has started yet
    try:
        settings, version = parse(argv, os.environ)
    except SettingsError as exc:
        print("flannel-forwarder: %s" % exc, file=sys.stderr)
        return 2
    if version == "version":
        print(__version__)
        return 0
    setup_logging(settings.log_level)
    if version == "remove-kernel-state":
        from .kernel import remove_all
        for line in remove_all():
            print("removed %s" % line)
        return 0
    daemon = Daemon(settings)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: daemon.stop_event.set())
    try:
        return daemon.run()
    except (NoLease, LeaseLost, StartupError, StoreError, EtcdError, BackendError) as exc:
        log.error("exiting: %s", exc)
        notify("STATUS=%s" % exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
