# -*- coding: utf-8 -*-
# Copyright: overlay.flannel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The settings table: every setting that crosses a layer, with each of its names, once.

A setting has up to four names - the inventory variable of the roles
(``flannel_etcd_ca_cert``), the option of a module (``etcd_ca_cert``), the
daemon's flag (``--etcd-cafile``) and its environment variable
(``FLANNELD_ETCD_CAFILE``, always the flag's name upper-cased with dashes as
underscores, flanneld's rule) - and, where the etcd client takes it, the
client's keyword (``ca_cert``). Here each setting is one record with those
names, its default, its unit and its rule (type, choices, least value,
relations to other settings).

What derives from the table: the etcd options of the modules
(``ansible_etcd.etcd_argument_spec``) and their names in the client's error
hints, the ``ttl`` and ``renew_margin`` options of the subnet module and their
checks (``problems``), the host_probe module's path options, the daemon's
defaults, its etcd client options and its names in the hints, and the
constants ``DEFAULT_ENDPOINTS``, ``DEFAULT_PREFIX``, ``DEFAULT_TIMEOUT``,
``DEFAULT_TTL``, ``DEFAULT_RENEW_MARGIN`` and ``MIN_MTU`` that the other
module_utils and the daemon import. What cannot derive from it (the YAML of the
roles - argument specs, defaults, vars, the forwarder's environment file, the
common role's checks - the modules' DOCUMENTATION, the daemon's flag list)
is compared with it by tests/unit/core/test_settings.py.

Role variables that only one role reads (paths on the controller, timeouts of
a role's waits, ...) are not here: the role's argument spec is their one
definition. Pure data and pure functions: no I/O.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy

ENV_PREFIX = "FLANNELD_"
# Every IPv4 host must take datagrams this large (RFC 791): the least MTU of the overlay.
MIN_MTU = 576

SAME = object()  # a default given once for every layer
MISSING = object()  # a role variable with no default (unset unless the inventory sets it)


class Setting(object):
    """One setting. Names (None where the layer does not have the setting):

    var      the inventory variable (flannel_*), or a role's internal variable (__flannel_*)
    module   the module that has it as an option ("etcd": every module of the group overlay.flannel.etcd)
    option   that module's option ("backend.vni": a suboption)
    flag     the daemon's flag, without its dashes; its environment variable is env_name(flag)
    client   the keyword of the etcd client (EtcdClient) that takes it

    Value and rule:

    type     str, path, list (of str), int, float or bool
    default  the value when nothing is set (None: unset)
    unit     seconds, minutes, bytes, or None
    choices, minimum, maximum
    zero     what 0 means where 0 is allowed although below `minimum` ("a reservation")
    below    the var of the setting this one must be smaller than, unless that one is 0
    together the var of the setting that is set with this one, or neither is
    no_log   the module option's no_log (False: said explicitly, for a name that looks secret)

    Where a layer spells the default otherwise: var_default (the role's; "" or 0 for unset, since the
    roles test a length or a number, MISSING for no default), option_default (the module's; None: the
    module leaves it to the code behind it) and flag_default (the daemon's, flanneld's where it has one).
    """

    __slots__ = ("var", "module", "option", "flag", "client", "type", "default", "unit", "choices",
                 "minimum", "maximum", "zero", "below", "together", "no_log",
                 "_var_default", "_option_default", "_flag_default")

    def __init__(self, var, type, default=None, unit=None, module=None, option=None, flag=None, client=None,
                 choices=None, minimum=None, maximum=None, zero=None, below=None, together=None, no_log=None,
                 var_default=SAME, option_default=SAME, flag_default=SAME):
        self.var, self.module, self.option, self.flag, self.client = var, module, option, flag, client
        self.type, self.default, self.unit, self.choices = type, default, unit, choices
        self.minimum, self.maximum, self.zero = minimum, maximum, zero
        self.below, self.together, self.no_log = below, together, no_log
        self._var_default, self._option_default, self._flag_default = var_default, option_default, flag_default

    def _layer(self, value):
        if value is MISSING:
            return value
        return copy.deepcopy(self.default if value is SAME else value)  # a list given out is the caller's

    @property
    def var_default(self):
        return self._layer(self._var_default)

    @property
    def option_default(self):
        return self._layer(self._option_default)

    @property
    def flag_default(self):
        return self._layer(self._flag_default)

    @property
    def env(self):
        return env_name(self.flag) if self.flag else None

    def __repr__(self):
        return "Setting(%s)" % ", ".join("%s=%r" % (n, getattr(self, n)) for n in ("var", "option", "flag")
                                         if getattr(self, n) is not None)


def env_name(flag):
    """'etcd-cafile' -> 'FLANNELD_ETCD_CAFILE', flanneld's rule."""
    return ENV_PREFIX + flag.upper().replace("-", "_")


_S = Setting
SETTINGS = (
    # etcd: the modules (on the controller) and the daemon (on each host, with the TLS files copied there)
    _S("flannel_etcd_endpoints", "list", ["http://127.0.0.1:2379"], module="etcd", option="etcd_endpoints",
       flag="etcd-endpoints", client="endpoints", minimum=1),  # minimum: of the list's length
    _S("flannel_etcd_prefix", "str", "/coreos.com/network", module="etcd", option="etcd_prefix",
       flag="etcd-prefix"),
    _S("flannel_etcd_ca_cert", "path", module="etcd", option="etcd_ca_cert", flag="etcd-cafile", client="ca_cert",
       var_default=""),
    _S("flannel_etcd_client_cert", "path", module="etcd", option="etcd_client_cert", flag="etcd-certfile",
       client="client_cert", together="flannel_etcd_client_key", var_default=""),
    _S("flannel_etcd_client_key", "path", module="etcd", option="etcd_client_key", flag="etcd-keyfile",
       client="client_key", together="flannel_etcd_client_cert", no_log=False, var_default=""),
    _S("flannel_etcd_user", "str", module="etcd", option="etcd_user", flag="etcd-username", client="user",
       together="flannel_etcd_password", var_default=""),
    _S("flannel_etcd_password", "str", module="etcd", option="etcd_password", flag="etcd-password",
       client="password", together="flannel_etcd_user", no_log=True, var_default=""),
    _S("flannel_etcd_timeout", "float", 5.0, "seconds", module="etcd", option="etcd_timeout", client="timeout"),
    # the host's lease
    _S("flannel_public_ip", "str", module="subnet", option="public_ip", flag="public-ip", var_default=MISSING),
    # IPv6 (dual-stack): flanneld's --public-ipv6; unset: the first global IPv6 address of the underlay interface
    # (the roles: the host probe's choice, hoststate.public_ipv6; the daemon: its own, the same rule)
    _S("flannel_public_ipv6", "str", module="subnet", option="public_ipv6", flag="public-ipv6", var_default=MISSING),
    _S("flannel_iface", "str", flag="iface", var_default=MISSING),
    _S("flannel_subnet_ttl", "int", 86400, "seconds", module="subnet", option="ttl", flag="subnet-lease-ttl",
       minimum=1, zero="a reservation"),
    _S("flannel_subnet_renew_margin", "int", 3600, "seconds", module="subnet", option="renew_margin",
       flag="subnet-lease-renew-margin-seconds", minimum=0, below="flannel_subnet_ttl",
       flag_default=None),  # the daemon: unset, then flanneld's minutes below
    # flanneld's flag for the same margin, in minutes; the seconds win when both are set
    _S(None, "int", 60, "minutes", flag="subnet-lease-renew-margin", minimum=0),
    # what the forwarder writes for docker, and where
    _S("flannel_mtu", "int", 0, "bytes", flag="mtu", minimum=MIN_MTU,
       zero="the underlay MTU less the backend's encapsulation"),
    _S("flannel_ip_masq", "bool", False, flag="ip-masq"),
    _S("flannel_subnet_file", "str", "/run/flannel/subnet.env", module="host_probe", option="subnet_file",
       flag="subnet-file"),
    _S("flannel_docker_opts_file", "str", "/run/flannel/docker", module="host_probe", option="docker_opts_file",
       flag="docker-opts-file"),
    _S("__flannel_lease_state_file", "str", "/var/lib/flannel-forwarder/subnet", module="host_probe",
       option="lease_state_file", flag="lease-state-file"),
    # the daemon's own
    _S("flannel_forwarder_log_level", "str", "info", flag="log-level", choices=["debug", "info", "warning", "error"]),
    _S("flannel_forwarder_healthz_ip", "str", "127.0.0.1", flag="healthz-ip",
       flag_default="0.0.0.0"),  # flanneld's
    _S("flannel_forwarder_healthz_port", "int", 0, flag="healthz-port", minimum=0, maximum=65535),
    _S("flannel_forwarder_tun_name", "str", "flannel0", flag="tun-name"),
    _S(None, "int", None, flag="port", minimum=1, maximum=65535),  # default: the network config's Backend.Port
    # the peer probes (forwarder/flannel_forwarder/peer_probes.py) and their status file, which report.yml reads
    _S("flannel_forwarder_probe_interval", "float", 10.0, "seconds", flag="probe-interval", minimum=0.5, maximum=3600,
       zero="no probes"),
    _S("flannel_peer_status_file", "str", "/run/flannel/peers.json", module="host_probe", option="peer_status_file",
       flag="peer-status-file"),
    # where the host probe reads (the paths every role shares)
    _S("flannel_forwarder_python", "str", "/usr/bin/python3", module="host_probe", option="python"),
    _S("flannel_forwarder_prefix", "str", "/opt/flannel-forwarder", module="host_probe", option="forwarder_prefix"),
    _S("flannel_docker_daemon_json", "str", "/etc/docker/daemon.json", module="host_probe", option="daemon_json"),
    _S("flannel_docker_dropin", "str", "/etc/systemd/system/docker.service.d/flannel.conf", module="host_probe",
       option="docker_dropin"),
    _S("flannel_docker_bridge", "str", "docker0", module="host_probe", option="bridge"),
    # the network config (the network module; the daemon reads it from etcd)
    _S("flannel_network", "str", "10.5.0.0/16", module="network", option="network", option_default=None),
    _S("flannel_subnet_len", "int", module="network", option="subnet_len", var_default=0),
    _S("flannel_subnet_min", "str", module="network", option="subnet_min", var_default=""),
    _S("flannel_subnet_max", "str", module="network", option="subnet_max", var_default=""),
    # unset: IPv4-only
    _S("flannel_ipv6_network", "str", module="network", option="ipv6_network", var_default=""),
    _S("flannel_ipv6_subnet_len", "int", module="network", option="ipv6_subnet_len", var_default=0),
    _S("flannel_backend_type", "str", "udp", module="network", option="backend.type",
       choices=["udp", "vxlan", "host-gw"]),
    _S("flannel_backend_port", "int", module="network", option="backend.port", minimum=0, maximum=65535,
       var_default=0),  # 0 and unset: the backend's own port
    _S("flannel_backend_vni", "int", 1, module="network", option="backend.vni", minimum=0, maximum=16777215,
       option_default=None),  # the module leaves it to backends.py, whose default is the same
    _S("flannel_backend_direct_routing", "bool", False, module="network", option="backend.direct_routing",
       option_default=None),
)
del _S


def by(name, value):
    """The one setting whose `name` (var, option, flag, client) is `value`; KeyError when none is."""
    found = [s for s in SETTINGS if getattr(s, name) == value]
    if len(found) != 1:
        raise KeyError("%s=%r names %d settings" % (name, value, len(found)))
    return found[0]


def of_module(module):
    """The settings that are options of `module` (top-level options; suboptions are the module's own)."""
    return [s for s in SETTINGS if s.module == module and "." not in s.option]


def option_spec(setting):
    """The AnsibleModule argument spec entry of a module option."""
    spec = dict(type=setting.type)
    if setting.type == "list":
        spec["elements"] = "str"
    if setting.option_default is not None:
        spec["default"] = setting.option_default
    if setting.choices:
        spec["choices"] = list(setting.choices)
    if setting.no_log is not None:
        spec["no_log"] = setting.no_log
    return spec


def argument_spec(module, options=None):
    """{option: spec} of `module`'s options in the table, all of them or those named in `options`."""
    chosen = of_module(module)
    if options is not None:
        chosen = [s for s in chosen if s.option in options]
        missing = set(options) - set(s.option for s in chosen)
        if missing:
            raise KeyError("%s has no options %s in the settings table" % (module, ", ".join(sorted(missing))))
    return dict((s.option, option_spec(s)) for s in chosen)


def required_together(module):
    """AnsibleModule's required_together of `module`: the pairs of its options the table says go together."""
    pairs, seen = [], set()
    for s in of_module(module):
        seen.add(s.var)
        if s.together and s.together not in seen:
            pairs.append([s.option, by("var", s.together).option])
    return pairs


def client_names(name):
    """{client keyword: the setting's name in the vocabulary `name` ("option" or "flag")} for the etcd
    client's TLS settings, whose names its error hints print. Flags are given as '--flag / FLANNELD_FLAG'."""
    names = {}
    for s in SETTINGS:
        if s.client in ("ca_cert", "client_cert", "client_key"):
            names[s.client] = setting_name(s.flag) if name == "flag" else getattr(s, name)
    return names


def setting_name(flag):
    """'--etcd-cafile / FLANNELD_ETCD_CAFILE': how the daemon's messages name the setting of `flag`."""
    return "--%s / %s" % (flag, env_name(flag))


def _unit(setting, value):
    if not setting.unit:
        return "%s" % value
    unit = setting.unit[:-1] if value == 1 and setting.unit.endswith("s") else setting.unit
    return "%s %s" % (value, unit)


def problems(values, name="var"):
    """What breaks the table's rules (least and greatest value, choices, relations) in `values`, a dict
    keyed by the settings' names in the vocabulary `name` ("var", "option" or "flag"); one message per
    problem, naming the settings in that vocabulary. Settings absent from `values` are not checked; the
    values' types are (the argument spec's or the parser's job)."""
    found = []
    for s in SETTINGS:
        key = getattr(s, name)
        if key is None or key not in values or values[key] is None:
            continue
        value = values[key]
        size = len(value) if s.type == "list" else value
        if s.choices and value not in s.choices:
            found.append("%s must be one of %s, got %r" % (key, ", ".join(s.choices), value))
        if s.minimum is not None and size < s.minimum and not (s.zero and size == 0):
            if s.type == "list":
                found.append("%s must not be empty" % key)
            elif s.zero:
                found.append("%s must be 0 (%s) or at least %s, got %s" % (key, s.zero, _unit(s, s.minimum), value))
            else:
                found.append("%s must be at least %s, got %s" % (key, _unit(s, s.minimum), value))
        if s.maximum is not None and size > s.maximum:
            found.append("%s must be at most %s, got %s" % (key, _unit(s, s.maximum), value))
        if s.below:
            other = getattr(by("var", s.below), name)
            limit = values.get(other)
            if limit is not None and limit > 0 and value >= limit:
                found.append("%s (%s) must be smaller than %s (%s), unless that is 0" % (key, value, other, limit))
        if s.together:
            other = getattr(by("var", s.together), name)
            if bool(value) != bool(values.get(other)) and (values.get(other) is None or key < other):  # once
                found.append("%s and %s go together" % tuple(sorted((key, other))))
    return found


DEFAULT_ENDPOINTS = tuple(by("var", "flannel_etcd_endpoints").default)
DEFAULT_PREFIX = by("var", "flannel_etcd_prefix").default
DEFAULT_TIMEOUT = by("var", "flannel_etcd_timeout").default
DEFAULT_TTL = by("var", "flannel_subnet_ttl").default
DEFAULT_RENEW_MARGIN = by("var", "flannel_subnet_renew_margin").default
