# -*- coding: utf-8 -*-
# Copyright: overlay.flannel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a host's files and commands say, and what the roles must do about it.

Pure text in, decisions out: the host_probe module reads a host once (files,
command output) and calls these; the roles act on the decisions; the report
and the daemon use the same parsers (hostfiles.py holds the flannel files').
No regex over a host file or a command's output lives in YAML.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import json
import re
import shlex

from ansible_collections.overlay.flannel.plugins.module_utils.hostfiles import parse_lease_state, parse_subnet_env
from ansible_collections.overlay.flannel.plugins.module_utils.subnets import (
    SubnetError, parse_cidr, parse_cidr6, parse_ipv4, parse_ipv6)

# What flannel sets on dockerd, and what docker refuses to have twice.
DAEMON_JSON_CONFLICTS = ("bip", "mtu", "bridge", "ipv6", "fixed-cidr-v6")
DOCKERD_FLAGS = ("--bip", "--mtu", "--bridge", "-b", "--ipv6", "--fixed-cidr-v6")
# The dockerd options the forwarder writes in DOCKER_NETWORK_OPTIONS (--ipv6 and --fixed-cidr-v6 on a
# dual-stack network); --ipv6 is a switch, the others take a value.
NETWORK_OPTIONS = ("--bip", "--ip-masq", "--mtu", "--ipv6", "--fixed-cidr-v6")
SWITCHES = ("--ipv6",)
# The comment every iptables rule of the overlay carries (docker role, vars/main.yml).
RULE_COMMENT = "overlay.flannel"


# --- docker's own settings: what would clash with flannel's --bip/--mtu ----------------------------------


def daemon_json_conflicts(text):
    """(conflicting keys, error) of daemon.json's text: the keys flannel sets itself, or an error (str)
    when the file is not a JSON object (docker would not start either)."""
    if text is None:
        return [], None
    try:
        data = json.loads(text) if text.strip() else {}
    except ValueError as exc:
        return [], "not valid JSON (%s)" % exc
    if not isinstance(data, dict):
        return [], "not a JSON object"
    return [key for key in DAEMON_JSON_CONFLICTS if key in data], None


def unit_sections(systemctl_cat):
    """`systemctl cat` output -> [(path, text)]: the unit file and each drop-in, as "# /path" headers
    split them."""
    sections, path, lines = [], None, []
    for line in systemctl_cat.splitlines():
        if line.startswith("# /"):
            if path is not None:
                sections.append((path, "\n".join(lines)))
            path, lines = line[2:].strip(), []
        elif path is not None:
            lines.append(line)
    if path is not None:
        sections.append((path, "\n".join(lines)))
    return sections


def dockerd_flags(text):
    """The flags of DOCKERD_FLAGS (`--bip`, `-b`, ...) that non-comment lines of `text` pass (also first in a
    quoted DOCKER_OPTS="-b br0")."""
    found = []
    for line in text.splitlines():
        if line.strip().startswith("#"):
            continue
        for flag in re.findall(r"(?:^|[\s\"'])(%s)(?=[=\s\"']|$)" % "|".join(map(re.escape, DOCKERD_FLAGS)), line):
            if flag not in found:
                found.append(flag)
    return found


def unit_conflicts(systemctl_cat, default_text, own_dropin):
    """The flannel flags that docker's unit, its drop-ins other than our own, or /etc/default/docker
    already pass to dockerd."""
    texts = [text for path, text in unit_sections(systemctl_cat) if path != own_dropin]
    return dockerd_flags("\n".join(texts + [default_text or ""]))


# --- dockerd: the options it runs with, those flannel wants, and whether to restart it --------------------


def wanted_options(docker_opts_text):
    """DOCKER_NETWORK_OPTIONS of /run/flannel/docker, split and sorted ([] when absent)."""
    if not docker_opts_text:
        return []
    return sorted(parse_subnet_env(docker_opts_text).get("DOCKER_NETWORK_OPTIONS", "").split())


def running_options(cmdline):
    """The NETWORK_OPTIONS arguments of /proc/PID/cmdline (NUL-separated bytes or text), sorted: those that
    take a value given as --option=value, and the switch --ipv6."""
    if isinstance(cmdline, bytes):
        cmdline = cmdline.decode("utf-8", "replace")
    args = [arg for arg in (cmdline or "").split("\x00") if arg]
    return sorted(arg for arg in args if arg.split("=", 1)[0] in NETWORK_OPTIONS and ("=" in arg or arg in SWITCHES))


def ipv4_addresses(ip_o_addr):
    """`ip -4 -o addr show dev X` output -> ["10.5.3.1/24", ...]."""
    return re.findall(r"\binet (\d+\.\d+\.\d+\.\d+/\d+)", ip_o_addr or "")


def ipv6_addresses(ip_o_addr):
    """`ip -o addr show dev X` output -> the global IPv6 addresses, ["fd00:5:0:22::1/64", ...] (compressed)."""
    return ["%s/%d" % (parse_ipv6(entry["address"]), entry["prefixlen"])
            for entry in interface_addresses(ip_o_addr) if entry["family"] == 6 and entry["scope"] == "global"]


def docker_decision(subnet_env_text, docker_opts_text, cmdline, bridge_addresses, bridge_ipv6_addresses=None):
    """What the docker role must do about dockerd, from what the host shows:

    - `restart`: dockerd runs with other --bip/--ip-masq/--mtu (--ipv6/--fixed-cidr-v6) than
      /run/flannel/docker says, or docker0 is on another address than subnet.env's FLANNEL_SUBNET;
    - `renumber`: docker0 exists with addresses, none of them the gateway, or (dual-stack) with global IPv6
      addresses, none of them FLANNEL_IPV6_SUBNET's, or (back to IPv4-only) with the global IPv6 address
      of flannel's --ipv6, which dockerd loses (dockerd keeps an address the bridge already has, and its
      route, so the bridge is removed while docker is stopped);
    - `reason`: one line for the play's output.
    Nothing is due while the forwarder has not written its files (check mode before its first run)."""
    env = parse_subnet_env(subnet_env_text or "")
    gateway = env.get("FLANNEL_SUBNET", "")
    gateway6 = _ipv6_cidr(env.get("FLANNEL_IPV6_SUBNET"))
    wanted = wanted_options(docker_opts_text)
    running = running_options(cmdline)
    moved = bool(gateway) and bool(bridge_addresses) and gateway not in bridge_addresses
    # An IPv6 half moved alone (relet.yml -e flannel_relet_ipv6_subnet): the old address would stay on docker0.
    moved6 = gateway6 is not None and bool(bridge_ipv6_addresses) and gateway6 not in bridge_ipv6_addresses
    # Back to IPv4-only: dockerd ran with flannel's --ipv6 and will not; the bridge's IPv6 address and route
    # would stay (docker's own IPv6, from daemon.json, is not on the command line and is left alone).
    dropped6 = (bool(wanted) and gateway6 is None and bool(bridge_ipv6_addresses)
                and "--ipv6" in running and "--ipv6" not in wanted)
    renumber = moved or moved6 or dropped6
    restart = bool(wanted) and (wanted != running or renumber)
    reason = ""
    if restart:
        reason = "dockerd runs with [%s], flannel's options are [%s]%s" % (
            " ".join(running), " ".join(wanted),
            "; docker0 moves to %s" % " & ".join([gateway] + ([gateway6] if moved6 else [])) if renumber else "")
        if dropped6:
            reason += "; docker0's IPv6 address goes"
    return dict(restart=restart, renumber=renumber, wanted=wanted, running=running, gateway=gateway or None,
                reason=reason)


def bridge_mtu(network_inspect_json):
    """The MTU docker gives its bridge network (`docker network inspect bridge`), 1500 when it sets none;
    None when the output is not docker's."""
    try:
        data = json.loads(network_inspect_json)
        options = data[0].get("Options") or {}
    except (ValueError, TypeError, IndexError, KeyError, AttributeError):
        return None
    try:
        return int(options.get("com.docker.network.driver.mtu", 1500))
    except (TypeError, ValueError):
        return None


def docker0_problem(subnet_env_text, addresses, mtu, ipv6_addresses_=None):
    """None when docker0 carries subnet.env's gateway (and, on a dual-stack network, its IPv6 gateway) and
    docker's bridge network its MTU; else what is wrong, in the words the docker role fails with."""
    env = parse_subnet_env(subnet_env_text or "")
    gateway, want = env.get("FLANNEL_SUBNET"), env.get("FLANNEL_MTU")
    if not gateway:
        return None
    gateway6 = _ipv6_cidr(env.get("FLANNEL_IPV6_SUBNET"))
    if gateway in addresses and want is not None and str(mtu) == str(want) \
            and (gateway6 is None or gateway6 in (ipv6_addresses_ or [])):
        return None
    if gateway6 is None:
        return "docker0 should carry %s with MTU %s, but has [%s] and MTU %s" % (
            gateway, want, " ".join(addresses), mtu)
    return "docker0 should carry %s and %s with MTU %s, but has [%s] and MTU %s" % (
        gateway, gateway6, want, " ".join(list(addresses) + list(ipv6_addresses_ or [])), mtu)


def _ipv6_cidr(text):
    """'fd00:5:0:22:0::1/64' -> 'fd00:5:0:22::1/64' (None for no or another value)."""
    if not text or "/" not in text:
        return None
    address, _slash, length = text.partition("/")
    try:
        return "%s/%s" % (parse_ipv6(address), int(length))
    except (SubnetError, ValueError):
        return None


# --- the subnet the host held before (flanneld reads it back from subnet.env) -----------------------------


def previous_subnets(subnet_env_text, state_text):
    """The subnets the host held before, in the order the lease asks for them: subnet.env's FLANNEL_SUBNET
    (as its network), then the forwarder's state file (its first line, which survives a reboot where /run does
    not; hostfiles.render_lease_state). Garbage in either is ignored."""
    gateway = parse_subnet_env(subnet_env_text or "").get("FLANNEL_SUBNET")
    return _previous(gateway, parse_lease_state(state_text)[0], parse_cidr)


def previous_ipv6_subnets(subnet_env_text, state_text):
    """The IPv6 halves the host held before, as previous_subnets: subnet.env's FLANNEL_IPV6_SUBNET, then the
    state file's second line (a dual-stack host's)."""
    gateway = parse_subnet_env(subnet_env_text or "").get("FLANNEL_IPV6_SUBNET")
    return _previous(gateway, parse_lease_state(state_text)[1], parse_cidr6)


def _previous(gateway, kept, parse):
    found = []
    for text in [gateway] if gateway else []:
        try:
            found.append(str(parse(text, "previous subnet", strict=False)))
        except SubnetError:
            pass
    if kept is not None and str(kept) not in found:
        found.append(str(kept))
    return found


# --- the overlay's iptables rules ---------------------------------------------------------------------------


def parse_rule(line):
    """One `iptables -S` line of the overlay ("-A FORWARD -s 10.5.0.0/16 -m comment --comment
    "overlay.flannel forward" -j ACCEPT") -> {chain, source, destination, jump, comment}; None for
    another line (another program's rules are never touched)."""
    try:
        words = shlex.split(line)
    except ValueError:
        return None
    if len(words) < 2 or words[0] != "-A":
        return None
    rule = dict(chain=words[1], source=None, destination=None, jump=None, comment=None)
    negate = False
    for i, word in enumerate(words[2:], start=2):
        value = words[i + 1] if i + 1 < len(words) else None
        if word == "!":
            negate = True
            continue
        if word == "-s":
            rule["source"] = ("!" if negate else "") + value
        elif word == "-d":
            rule["destination"] = ("!" if negate else "") + value
        elif word == "-j":
            rule["jump"] = value
        elif word == "--comment":
            rule["comment"] = value
        negate = False
    if not (rule["comment"] or "").startswith(RULE_COMMENT):
        return None
    return rule


IPV6 = "ipv6"  # the `family` of an ip6tables rule (ansible.builtin.iptables' ip_version); ipv4 when unset


def _family(rule):
    return rule.get("family") or "ipv4"


def _key(table, rule):
    return (_family(rule), table, rule["chain"], _net(rule.get("source")), _net(rule.get("destination")),
            rule["jump"], rule["comment"])


def _net(text):
    """A rule's source or destination as one spelling ("!" kept): ip6tables prints fd00:5::/48 however it
    was given."""
    if not text:
        return None
    negate, bare = ("!", text[1:]) if text.startswith("!") else ("", text)
    try:
        return negate + str(ipaddress.ip_network(bare, strict=False))
    except ValueError:
        return text


def iptables_plan(listed, rules, keep_network, keep_network6=""):
    """What the docker role must change in the overlay's rules, IPv4 (iptables) and IPv6 (ip6tables).

    `listed`: {table: `iptables -t table -S` output, and "ipv6": {table: `ip6tables -t table -S` output}};
    `rules`: the role's rules ({table, chain, source, destination, jump, comment, present, and family
    "ipv6" for an ip6tables rule}); `keep_network`, `keep_network6`: the overlay's IPv4 and IPv6 networks now
    ("" for IPv6 on an IPv4-only overlay).
    -> {apply: the rules that are missing (present) or still there (absent), stale: the overlay's rules of
    another network (grown or moved, an IPv6 network the overlay no longer has, or every one when
    keep_network is ""), each as parse_rule gives it with its `table`, its `family` and its `line` as
    `iptables -S` printed it}."""
    listed = dict(listed or {})
    by_family = [("ipv4", dict((t, text) for t, text in listed.items() if t != IPV6)),
                 (IPV6, listed.get(IPV6) or {})]
    have, listing = set(), []
    for family, tables in by_family:
        for table in sorted(tables):
            for line in (tables[table] or "").splitlines():
                rule = parse_rule(line)
                if rule is not None:
                    rule = dict(rule, table=table, family=family, line=line)
                    have.add(_key(table, rule))
                    listing.append(rule)
    apply_ = []
    for rule in rules:
        present = str(rule.get("present", True)).lower() in ("true", "1", "yes")
        if (_key(rule["table"], rule) in have) != present:
            apply_.append(rule)
    keep = {"ipv4": _net(keep_network) if keep_network else "", IPV6: _net(keep_network6) if keep_network6 else ""}
    stale = [rule for rule in listing
             if keep_network == "" or not keep[rule["family"]]
             or keep[rule["family"]] not in (_net(rule["source"]) or "", (_net(rule["destination"]) or "").lstrip("!"))]
    return dict(apply=apply_, stale=stale)


# --- the host itself: can it run the forwarder, and which release does it need -----------------------------

# Run by the forwarder's python3 when it is not the interpreter of the probe itself: its own facts, as JSON.
FACTS_SCRIPT = ("import json, os, platform, sys; "
                "print(json.dumps({'version': list(sys.version_info[:2]), 'machine': platform.machine(), "
                "'libc': list(platform.libc_ver()), 'executable': sys.executable}))")


def host_check(version, machine, libc, tun_exists, executable):
    """The forwarder's needs on a host: Python 3.9+, the GNU C library and /dev/net/tun.
    -> {python, machine, glibc, executable, missing, target}; `target` is {python, machine, glibc}: the kind of
    host a release is staged for."""
    missing = []
    version = tuple(version)[:2]
    if version < (3, 9):
        missing.append("Python 3.9 or newer (this is %d.%d)" % version)
    if not tun_exists:
        missing.append("/dev/net/tun (the tun kernel module)")
    name, libc_version = (list(libc) + ["", ""])[:2]
    if name != "glibc":
        missing.append("the GNU C library (found %r)" % (name or "none"))
    target = dict(python="%d.%d" % version, machine=machine, glibc=libc_version)
    return dict(target, executable=executable, missing=missing, target=target)


def route_source(ip_route_get):
    """The source address of `ip -4 route get <address>` ("... dev eth0 src 10.213.0.11 uid 0"): the address
    Ansible's facts call default_ipv4 (None without a route)."""
    m = re.search(r"\bsrc (\d+\.\d+\.\d+\.\d+)\b", ip_route_get or "")
    return m.group(1) if m else None


def public_ip(given, route_src):
    """(address, valid) of the lease's PublicIP: the one the inventory gives (flannel_public_ip), else the
    default route's source address; valid only for a plain dotted IPv4 address."""
    address = given or route_src or ""
    try:
        parse_ipv4(address)
    except SubnetError:
        return address, False
    return address, True


def interface_addresses(ip_o_addr):
    """`ip -o addr show` output -> [{iface, family (4 or 6), address, prefixlen, scope, flags}] in its order
    (flags: temporary, deprecated, tentative, dadfailed, ...; the words after the scope up to valid_lft)."""
    found = []
    for line in (ip_o_addr or "").splitlines():
        m = re.match(r"^\d+:\s+(\S+?)(?:@\S+)?\s+(inet6?)\s+(\S+)/(\d+)\b(.*)$", line.strip())
        if not m:
            continue
        rest = m.group(5).split("\\")[0].split()
        scope = rest[rest.index("scope") + 1] if "scope" in rest and rest.index("scope") + 1 < len(rest) else ""
        flags = rest[rest.index("scope") + 2:] if scope else []
        found.append(dict(iface=m.group(1), family=6 if m.group(2) == "inet6" else 4, address=m.group(3),
                          prefixlen=int(m.group(4)), scope=scope, flags=[f for f in flags if f != m.group(1)]))
    return found


# Never the lease's PublicIPv6: an address that changes by design (a privacy one) or is not the host's.
UNUSABLE_IPV6_FLAGS = ("temporary", "dadfailed")
# Then, in this order of preference: a usable one, one still in duplicate address detection, one past its
# preferred lifetime (a router advertisement's that is going away).
IPV6_FLAG_RANK = (("tentative", 1), ("deprecated", 2))


def choose_ipv6(candidates):
    """The public IPv6 address among `candidates`, [(address, [flag words])] of the global addresses of the
    underlay interface in the kernel's order: the first usable one (UNUSABLE_IPV6_FLAGS and link-local ones
    left out, IPV6_FLAG_RANK's last). None when there is none. The rule of the roles (public_ipv6) and of the
    daemon's default (flannel_forwarder.cli.global_ipv6)."""
    ranked = []
    for order, (address, flags) in enumerate(candidates):
        if set(flags) & set(UNUSABLE_IPV6_FLAGS) or address.lower().startswith("fe80:"):
            continue
        rank = max([r for flag, r in IPV6_FLAG_RANK if flag in flags] or [0])
        ranked.append((rank, order, address))
    return min(ranked)[2] if ranked else None


def underlay_iface(addresses, public_ip, iface=""):
    """The underlay interface: `iface` when given (flannel_iface), else the one holding `public_ip` (None
    when no interface holds it)."""
    if iface:
        return iface
    for entry in addresses:
        if entry["family"] == 4 and entry["address"] == public_ip:
            return entry["iface"]
    return None


def public_ipv6(given, addresses, iface):
    """(address, valid) of the lease's PublicIPv6: the one the inventory gives (flannel_public_ipv6), else the
    one choose_ipv6 takes among the global IPv6 addresses of the underlay interface `iface` (interface_addresses).
    Valid for a unicast IPv6 address that is neither link-local, loopback nor unspecified; ("", False) when
    there is none."""
    address = given or choose_ipv6([(entry["address"], entry["flags"]) for entry in addresses
                                    if entry["family"] == 6 and entry["iface"] == iface
                                    and entry["scope"] == "global"]) or ""
    try:
        parsed = parse_ipv6(address)
    except SubnetError:
        return address, False
    return str(parsed), not (parsed.is_link_local or parsed.is_loopback or parsed.is_unspecified
                             or parsed.is_multicast)


def ipv6_sysctls(dual_stack, iface, accept_ra, forwarding):
    """The sysctls the docker role sets for a dual-stack overlay, in order ([] when nothing is to do):
    accept_ra 2 on the underlay interface where it takes router advertisements (1) - with forwarding on,
    the kernel ignores them at 1, and a host configured by them would lose its default route - then
    net.ipv6.conf.all.forwarding 1. `accept_ra` and `forwarding` are the values the probe read (text)."""
    if not dual_stack:
        return []
    wanted = []
    if iface and (accept_ra or "").strip() == "1":
        wanted.append(dict(key="net.ipv6.conf.%s.accept_ra" % iface.replace(".", "/"), value="2"))
    if (forwarding or "").strip() != "1":
        wanted.append(dict(key="net.ipv6.conf.all.forwarding", value="1"))
    return wanted


def unit_states(systemctl_show):
    """`systemctl show -p Id,ActiveState,UnitFileState,MainPID,StatusText A B ...` -> {Id: {active,
    enabled, main_pid, status_text}} (blocks separated by blank lines)."""
    units = {}
    for block in re.split(r"\n\s*\n", systemctl_show or ""):
        props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if props.get("Id"):
            units[props["Id"]] = dict(active=props.get("ActiveState", ""), enabled=props.get("UnitFileState", ""),
                                      main_pid=int(props.get("MainPID") or 0), status_text=props.get("StatusText", ""))
    return units


def forwarder_not_ready(unit, subnet_env, network, subnet, backend, ipv6_subnet=None):
    """What keeps the forwarder from being ready for the docker role (an empty list when nothing does): its
    unit (from unit_states) active, subnet.env (parsed, or None) holding the lease's network and subnet (the
    forwarder writes it for its lease before READY=1), and its status naming the network's backend (after a
    backend change the forwarders restart on their own: docker must not read FLANNEL_MTU before that).
    `ipv6_subnet`: the IPv6 half of the lease with its gateway (FLANNEL_IPV6_SUBNET), "" for an IPv4-only
    lease (subnet.env must have none: docker reads --ipv6 from it), None not to look."""
    unit = unit or {}
    env = subnet_env or {}
    gaps = []
    if unit.get("active") != "active":
        gaps.append("the unit is %s, not active" % (unit.get("active") or "unknown"))
    if env.get("FLANNEL_NETWORK") != network or env.get("FLANNEL_SUBNET") != subnet:
        gaps.append("subnet.env has FLANNEL_NETWORK=%s FLANNEL_SUBNET=%s, not %s and %s"
                    % (env.get("FLANNEL_NETWORK", "(none)"), env.get("FLANNEL_SUBNET", "(none)"), network, subnet))
    if ipv6_subnet is not None:
        have = env.get("FLANNEL_IPV6_SUBNET")
        if (_ipv6_cidr(have) or have or "") != (_ipv6_cidr(ipv6_subnet) or ipv6_subnet):
            gaps.append("subnet.env has FLANNEL_IPV6_SUBNET=%s, not %s"
                        % (have or "(none)", ipv6_subnet or "(none: the lease is IPv4-only)"))
    if not (unit.get("status_text") or "").startswith(backend + ":"):
        gaps.append("its status is %r, not the %s backend's" % (unit.get("status_text") or "", backend))
    return gaps


# --- the files the roles write: which of them are not as they should be ------------------------------------


def files_due(found, wanted):
    """The paths of `wanted` that the host does not have as wanted.

    `found`: the probe's {path: {exists, isdir, sha1, mode, owner, group}}; `wanted`: [{path, mode, and sha1
    (a file's SHA-1) or dir: true, owner and group (default root)}]. A path the probe did not look at is due."""
    due = []
    for want in wanted:
        have = (found or {}).get(want["path"]) or {}
        is_dir = bool(want.get("dir"))
        ok = (have.get("exists") and bool(have.get("isdir")) == is_dir
              and have.get("mode") == want.get("mode", have.get("mode"))
              and have.get("owner") == want.get("owner", "root") and have.get("group") == want.get("group", "root")
              and (is_dir or have.get("sha1") == want.get("sha1")))
        if not ok:
            due.append(want["path"])
    return due


# --- the forwarder's privileges: its account, its capabilities, unprivileged ICMP for its peer probes ----------

# The system account the forwarder runs as (the forwarder role creates it, retire.yml removes it).
FORWARDER_ACCOUNT = "flannel-forwarder"
# Linux capability numbers (<linux/capability.h>) of those the forwarder may hold.
CAPABILITIES = {"CAP_NET_BIND_SERVICE": 10, "CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13}


def parse_ping_group_range(text):
    """net.ipv4.ping_group_range ("1 0", the kernel's default: no group) -> (low, high), None when unreadable."""
    try:
        low, high = (int(x) for x in (text or "").split())
    except ValueError:
        return None
    return low, high


def forwarder_privileges(ping_group_range, gid, probe_interval, backend_port, healthz_port):
    """What the forwarder's unit grants and what the role sets for it (the rules listed in the forwarder role's
    README): {"capabilities": [...], "ping_group_dropin": bool}.

    CAP_NET_ADMIN always (the TUN, routes, neighbours, FDB, its own net sysctls); CAP_NET_BIND_SERVICE when the
    backend's port or the health port is below 1024; CAP_NET_RAW only when the peer probes are on and cannot use
    an unprivileged ICMP socket: the host's net.ipv4.ping_group_range (`ping_group_range`, its text) is not empty
    and leaves out the forwarder's group (`gid`, None when not known yet). An empty range (the kernel's default,
    Debian 12) gets the role's sysctl.d drop-in that admits that one group (ping_group_dropin); a range that is
    exactly that group is the drop-in's, kept; any other range is the host's own and left alone."""
    rng = parse_ping_group_range(ping_group_range)
    gid = int(gid) if str(gid).isdigit() else None
    if rng is None:
        dropin, covered = False, False
    elif gid is not None and rng == (gid, gid):
        dropin, covered = True, True
    elif rng[0] > rng[1]:
        dropin, covered = True, True
    else:
        dropin, covered = False, gid is not None and rng[0] <= gid <= rng[1]
    caps = ["CAP_NET_ADMIN"]
    if any(0 < int(port or 0) < 1024 for port in (backend_port, healthz_port)):
        caps.append("CAP_NET_BIND_SERVICE")
    if float(probe_interval or 0) > 0 and not covered:
        caps.append("CAP_NET_RAW")
    return dict(capabilities=sorted(caps, key=CAPABILITIES.get), ping_group_dropin=dropin)
