"""Command-line flags and FLANNELD_* environment variables of flannel-forwarder.

Flags carry flanneld's names where flanneld has the same setting, so existing
units and habits carry over. Every flag can also be set in the environment as
FLANNELD_<NAME> (upper case, dashes to underscores), flanneld's rule; a flag
given on the command line wins. Pure logic: parse(argv, environ) -> Settings.

The defaults, the environment names and the etcd client's options come from
the collection's settings table (plugins/module_utils/settings.py), which also
gives each flag's inventory variable; tests/unit/core/test_settings.py checks
FLAGS against it.
"""

from __future__ import annotations

import argparse
import ipaddress
from dataclasses import dataclass, field

from ansible_collections.overlay.flannel.plugins.module_utils import settings as table
from ansible_collections.overlay.flannel.plugins.module_utils.settings import env_name, setting_name


def _default(flag):
    return table.by("flag", flag).flag_default


LOG_LEVELS = tuple(table.by("flag", "log-level").choices)


class SettingsError(ValueError):
    """A flag or environment value that cannot be used; the message names it."""


@dataclass
class Settings:
    etcd_endpoints: list = field(default_factory=lambda: _default("etcd-endpoints"))
    etcd_prefix: str = _default("etcd-prefix")
    etcd_cafile: str | None = _default("etcd-cafile")
    etcd_certfile: str | None = _default("etcd-certfile")
    etcd_keyfile: str | None = _default("etcd-keyfile")
    etcd_username: str | None = _default("etcd-username")
    etcd_password: str | None = _default("etcd-password")
    public_ip: str | None = _default("public-ip")
    # dual-stack networks only; unset: the global IPv6 address of the underlay interface (flanneld's default)
    public_ipv6: str | None = _default("public-ipv6")
    iface: str | None = _default("iface")
    subnet_file: str = _default("subnet-file")
    # /run does not survive a reboot: the subnet last held is also kept here,
    # so a host that was down past its lease TTL asks for the same subnet again.
    lease_state_file: str = _default("lease-state-file")
    subnet_lease_renew_margin: int = _default("subnet-lease-renew-margin")  # minutes, as flanneld
    # seconds (ours; the role writes it): wins over the minutes, which cannot say 3601 s
    subnet_lease_renew_margin_seconds: int | None = _default("subnet-lease-renew-margin-seconds")
    # seconds, for a lease the daemon re-creates; 0: a reservation
    subnet_lease_ttl: int = _default("subnet-lease-ttl")
    mtu: int = _default("mtu")  # 0: the underlay MTU less the backend's encapsulation
    healthz_ip: str = _default("healthz-ip")
    healthz_port: int = _default("healthz-port")  # 0: no health server, as flanneld
    port: int | None = _default("port")  # default: the config's Backend.Port
    tun_name: str = _default("tun-name")
    log_level: str = _default("log-level")
    ip_masq: bool = _default("ip-masq")
    docker_opts_file: str = _default("docker-opts-file")  # "" : do not write it
    probe_interval: float = _default("probe-interval")  # seconds between two probes of a peer; 0: no probes
    peer_status_file: str = _default("peer-status-file")  # "": do not write it

    @property
    def renew_margin_seconds(self):
        if self.subnet_lease_renew_margin_seconds is not None:
            return self.subnet_lease_renew_margin_seconds
        return self.subnet_lease_renew_margin * 60


# (flag, type, help); the attribute is the flag with dashes as underscores.
FLAGS = (
    ("etcd-endpoints", "list", "comma-separated etcd URLs (default %s)" % ",".join(_default("etcd-endpoints"))),
    ("etcd-prefix", "str", "etcd prefix of the network (default %s)" % _default("etcd-prefix")),
    ("etcd-cafile", "str", "CA certificate of the etcd servers (PEM)"),
    ("etcd-certfile", "str", "client certificate for etcd (PEM)"),
    ("etcd-keyfile", "str", "key of the client certificate (PEM)"),
    ("etcd-username", "str", "etcd user name"),
    ("etcd-password", "str", "etcd password (prefer FLANNELD_ETCD_PASSWORD in an environment file)"),
    ("public-ip", "ip", "this host's underlay address (default: the address of the default-route interface)"),
    ("public-ipv6", "ip6", "this host's underlay IPv6 address, used on a dual-stack network (EnableIPv6) only "
                           "(default: the global IPv6 address of the underlay interface)"),
    ("iface", "str", "underlay interface (default: the one holding --public-ip, else the default-route one)"),
    ("subnet-file", "str", "where to write FLANNEL_* variables (default %s)" % _default("subnet-file")),
    ("lease-state-file", "path0", "where to keep the subnet last held across reboots "
                                  "(default %s; empty: nowhere)" % _default("lease-state-file")),
    ("subnet-lease-renew-margin", "int", "renew the lease when fewer minutes than this remain (default %d)"
                                         % _default("subnet-lease-renew-margin")),
    ("subnet-lease-renew-margin-seconds", "int", "the same margin in seconds (overlay.flannel's; the role sets "
                                                 "it): wins over --subnet-lease-renew-margin when both are set"),
    ("subnet-lease-ttl", "int", "TTL in seconds of a lease the daemon re-creates (default %d; 0: a reservation)"
                                % _default("subnet-lease-ttl")),
    ("mtu", "int", "MTU of the TUN and FLANNEL_MTU: 0 (the default) is the underlay interface's MTU less the "
                   "backend's encapsulation, else at least %d" % table.MIN_MTU),
    ("healthz-ip", "ip", "address of the /healthz, /readyz and /metrics server (default %s)"
                         % _default("healthz-ip")),
    ("healthz-port", "port0", "port of the health server; 0 disables it (default %d)" % _default("healthz-port")),
    ("port", "port", "UDP port (default: the network config's Backend.Port, else 8285)"),
    ("tun-name", "str", "name of the TUN device (default %s)" % _default("tun-name")),
    ("log-level", "level", "%s (default %s)" % (", ".join(LOG_LEVELS), _default("log-level"))),
    ("ip-masq", "bool", "FLANNEL_IPMASQ written to the subnet file (default false)"),
    ("docker-opts-file", "path0", "where to write docker's options, as mk-docker-opts.sh does "
                                  "(default %s; empty: do not write it)" % _default("docker-opts-file")),
    ("probe-interval", "float", "seconds between two probes of each peer through the overlay (longer with many "
                                "peers: at most 20 probes a second in all); 0: no probes (default %s)"
                                % _default("probe-interval")),
    ("peer-status-file", "path0", "where to write the peers' probed state as JSON (default %s; empty: nowhere)"
                                  % _default("peer-status-file")),
)


# The etcd client's settings as this daemon's user names them, for the hints of its errors.
ETCD_SETTING_NAMES = table.client_names("flag")


def etcd_client_options(settings):
    """The EtcdClient keyword arguments of these settings: each flag the table gives a client keyword."""
    options = dict((s.client, getattr(settings, s.flag.replace("-", "_"))) for s in table.SETTINGS
                   if s.client and s.flag)
    options["setting_names"] = ETCD_SETTING_NAMES
    return options


def _convert(flag, kind, text):
    where = setting_name(flag)
    text = text.strip()
    if kind == "list":
        items = [item.strip() for item in text.split(",") if item.strip()]
        if not items:
            raise SettingsError("%s: no endpoint given" % where)
        return items
    if kind in ("int", "port", "port0"):
        try:
            value = int(text)
        except ValueError:
            raise SettingsError("%s: %r is not a whole number" % (where, text)) from None
        low = 0 if kind in ("int", "port0") else 1
        high = 65535 if kind != "int" else 10 ** 6
        if not low <= value <= high:
            raise SettingsError("%s: %d is outside %d..%d" % (where, value, low, high))
        return value
    if kind == "float":
        try:
            value = float(text)
        except ValueError:
            raise SettingsError("%s: %r is not a number" % (where, text)) from None
        rule = table.by("flag", flag)
        if value != 0 and not rule.minimum <= value <= rule.maximum:
            raise SettingsError("%s: %s is outside %s..%s (or 0: %s)"
                                % (where, text, rule.minimum, rule.maximum, rule.zero))
        return value
    if kind == "ip":
        try:
            return str(ipaddress.IPv4Address(text))
        except ValueError:
            raise SettingsError("%s: %r is not an IPv4 address" % (where, text)) from None
    if kind == "ip6":
        try:
            return str(ipaddress.IPv6Address(text))
        except ValueError:
            raise SettingsError("%s: %r is not an IPv6 address" % (where, text)) from None
    if kind == "level":
        if text.lower() not in LOG_LEVELS:
            raise SettingsError("%s: %r is not one of %s" % (where, text, ", ".join(LOG_LEVELS)))
        return text.lower()
    if kind == "bool":
        low = text.lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off", ""):
            return False
        raise SettingsError("%s: %r is not true or false" % (where, text))
    if kind == "path0":
        return text
    if not text:
        raise SettingsError("%s: empty value" % where)
    return text


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise SettingsError(message)


def build_parser():
    parser = _Parser(prog="flannel-forwarder",
                     description="flannel udp-backend compatible forwarder (overlay.flannel). "
                                 "Every flag can be set as FLANNELD_<FLAG> in the environment.")
    for flag, kind, help_text in FLAGS:
        if kind == "bool":
            parser.add_argument("--" + flag, nargs="?", const="true", default=None, help=help_text)
        else:
            parser.add_argument("--" + flag, default=None, help=help_text)
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument("--remove-kernel-state", action="store_true",
                        help="remove the vxlan device and the host-gw / vxlan routes this daemon programs, and exit "
                             "(a stopped daemon leaves them in place so that traffic flows during a restart)")
    return parser


def parse(argv=None, environ=None):
    """(Settings from flags (first) and FLANNELD_* variables, action): the action is False (run),
    "version" or "remove-kernel-state". Raises SettingsError."""
    environ = environ or {}
    args = build_parser().parse_args(argv)
    settings = Settings()
    for flag, kind, _help in FLAGS:
        attr = flag.replace("-", "_")
        raw = getattr(args, attr)
        if raw is None:
            raw = environ.get(env_name(flag))
        if raw is not None:
            setattr(settings, attr, _convert(flag, kind, raw))
    if bool(settings.etcd_certfile) != bool(settings.etcd_keyfile):
        raise SettingsError("--etcd-certfile and --etcd-keyfile go together")
    if bool(settings.etcd_username) != bool(settings.etcd_password):
        raise SettingsError("--etcd-username and --etcd-password go together")
    action = "version" if args.version else ("remove-kernel-state" if args.remove_kernel_state else False)
    return settings, action
