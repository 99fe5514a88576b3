#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: overlay.flannel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: host_probe
short_description: Read everything the overlay.flannel roles need to know about a host, in one round trip
version_added: 0.3.0
description:
  - Reads a Docker host of the overlay once and returns what the C(forwarder) and C(docker) roles decide from,
    with the decisions that need nothing but the host (docker's restart, the subnet the host held before).
  - "What it reads: whether the host can run the forwarder (Python, machine, C library, C(/dev/net/tun)); the
    commands the roles run; docker's C(daemon.json), unit, drop-ins and C(/etc/default/docker); C(subnet.env),
    C(/run/flannel/docker) and the forwarder's state file; the options dockerd runs with; the bridge's addresses
    and MTU; the overlay's iptables rules; the forwarder releases; the state of the units; and the checksum, mode
    and owner of the files the roles write (never their content)."
  - Changes nothing, also outside check mode.
author:
  - overlay.flannel maintainers (@overlay-flannel)
attributes:
  check_mode:
    support: full
    description: Read-only; runs the same in check mode.
  diff_mode:
    support: none
    description: Nothing is changed, so there is no diff.
options:
  python:
    description:
      - The python3 that runs the forwarder. When it is not the interpreter running this module, it is asked for
        its own version, machine and C library.
    type: str
    default: /usr/bin/python3
  public_ip:
    description:
      - The host's underlay address as the inventory gives it (C(flannel_public_ip)); empty for the source address
        of the default route. See RV(host.public_ip).
    type: str
    default: ""
  public_ipv6:
    description:
      - The host's underlay IPv6 address as the inventory gives it (C(flannel_public_ipv6)); empty for the first
        global IPv6 address of the underlay interface. See RV(host.public_ipv6).
    type: str
    default: ""
  iface:
    description:
      - The underlay interface as the inventory gives it (C(flannel_iface)); empty for the interface that holds
        RV(host.public_ip).
    type: str
    default: ""
  files:
    description: Files and directories to report the checksum (SHA-1), mode, owner and group of.
    type: list
    elements: str
    default: []
  subnet_file:
    description: flannel's C(subnet.env).
    type: str
    default: /run/flannel/subnet.env
  docker_opts_file:
    description: The dockerd options the forwarder writes (C(DOCKER_NETWORK_OPTIONS)).
    type: str
    default: /run/flannel/docker
  lease_state_file:
    description: The forwarder's state file (the subnet it held last, kept across reboots).
    type: str
    default: /var/lib/flannel-forwarder/subnet
  daemon_json:
    description: docker's C(daemon.json).
    type: str
    default: /etc/docker/daemon.json
  docker_dropin:
    description: The systemd drop-in of the C(docker) role (left out when looking for flags in docker's unit).
    type: str
    default: /etc/systemd/system/docker.service.d/flannel.conf
  peer_status_file:
    description: The forwarder's status file of its peer probes (JSON), read for O(parts=peers).
    type: str
    default: /run/flannel/peers.json
  bridge:
    description: docker's bridge.
    type: str
    default: docker0
  forwarder_prefix:
    description: The forwarder's install directory (C(releases/), C(current)).
    type: str
    default: /opt/flannel-forwarder
  units:
    description: The systemd units to report the state of.
    type: list
    elements: str
    default: [flannel-forwarder.service, docker.service, flannel-iptables.service]
  parts:
    description:
      - What to read. V(host) the forwarder's needs and the commands; V(docker) docker's settings, dockerd's
        options and the bridge; V(flannel) the files the forwarder writes; V(release) the releases; V(iptables)
        the overlay's rules; V(files) the checksums; V(units) the units' state.
      - V(bridge_mtu) asks docker for its bridge network's MTU (a C(docker) command; only when docker is active).
      - V(peers) reads the forwarder's peer probes (O(peer_status_file)); not among the default parts.
    type: list
    elements: str
    choices: [host, docker, flannel, release, iptables, files, units, bridge_mtu, peers]
    default: [host, docker, flannel, release, iptables, files, units]
  preflight:
    description:
      - Check the underlay between this host and O(preflight.targets) before anything changes (site.yml's
        preflight) - a DF echo at the backend's full packet size (the overlay MTU plus its encapsulation) and, when
        it fails, the largest size that gets through; for udp and vxlan, that a datagram reaches the backend's
        port (answered by the peer's preflight listener, which this host opens too where nothing holds the port,
        or refused by the peer's kernel; a peer this host's running forwarder already reaches is not asked); for
        host-gw, that the peer is on the underlay's network. See RV(preflight).
      - Not given, nothing is checked.
    type: dict
    suboptions:
      targets:
        description: The hosts to check, each with C(name) and C(address) (its underlay address).
        type: list
        elements: dict
        default: []
      backend:
        description: The network's backend type.
        type: str
        choices: [udp, vxlan, host-gw]
        default: udp
      port:
        description: The backend's port; 0 for the backend's own (udp 8285, vxlan 8472).
        type: int
        default: 0
      mtu:
        description: The overlay MTU (C(flannel_mtu)); 0 for the underlay interface's less the encapsulation.
        type: int
        default: 0
      skip:
        description: Check nothing, with a warning (C(flannel_preflight_underlay=false)).
        type: bool
        default: false
  wait_ready:
    description:
      - Before reading, wait until the forwarder is ready for the docker role (as C(tasks_from=ready) of the
        C(forwarder) role needs) - its unit active, C(subnet.env) holding O(wait_ready.network) and
        O(wait_ready.subnet) (and O(wait_ready.ipv6_subnet) when given), and its status naming O(wait_ready.backend).
        Fails after O(wait_ready.timeout)
        seconds, with what is not ready and the unit's journal.
      - Not given, nothing is waited for.
    type: dict
    suboptions:
      unit:
        description: The forwarder's unit.
        type: str
        default: flannel-forwarder.service
      network:
        description: The overlay network, as C(FLANNEL_NETWORK) writes it.
        type: str
        required: true
      subnet:
        description: The host's subnet with its gateway, as C(FLANNEL_SUBNET) writes it (C(10.5.34.1/24)).
        type: str
        required: true
      ipv6_subnet:
        description:
          - The IPv6 half of the host's lease with its gateway, as C(FLANNEL_IPV6_SUBNET) writes it
            (C(fd00:5:0:22::1/64)); V("") for an IPv4-only lease (subnet.env must have none). Not given, not looked at.
        type: str
      backend:
        description: The network's backend type.
        type: str
        required: true
      timeout:
        description: Seconds to wait.
        type: int
        default: 60
notes:
  - "Runs as root on the host: C(/proc/<dockerd>/cmdline), C(iptables) and the forwarder's state need it."
"""

EXAMPLES = r"""
- name: Read the host once
  overlay.flannel.host_probe:
    files:
      - /etc/systemd/system/flannel-forwarder.service
      - /etc/flannel/forwarder.env
  register: flannel_host_probe

- name: Docker must restart
  ansible.builtin.debug:
    msg: "{{ flannel_host_probe.docker.reason }}"
  when: flannel_host_probe.docker.restart
"""

RETURN = r"""
host:
  description: Whether the host can run the forwarder, and the kind of host a release is staged for.
  returned: when O(parts) has V(host)
  type: dict
  contains:
    python:
      description: The forwarder python's version, for example C(3.11).
      type: str
    machine:
      description: The machine, for example C(x86_64).
      type: str
    glibc:
      description: The version of the GNU C library.
      type: str
    executable:
      description: The forwarder's python.
      type: str
    target:
      description: The kind of host a forwarder release is staged for, C(python), C(machine) and C(glibc) above.
      type: dict
    missing:
      description: What the host lacks to run the forwarder.
      type: list
      elements: str
    python_error:
      description: Why the forwarder's python could not be asked (null when it could).
      type: str
    commands_missing:
      description: The commands of C(docker), C(dockerd), C(ip), C(iptables) and C(ip6tables) that are not on the PATH.
      type: list
      elements: str
    default_ipv4:
      description: The source address of the default route (what Ansible's facts call C(ansible_default_ipv4.address));
        null without a default route.
      type: str
    public_ip:
      description:
        - The host's underlay address, the lease's C(PublicIP), as the roles use it (V(__flannel_public_ip)) -
          O(public_ip) when given, else RV(host.default_ipv4); empty when neither is set.
      type: str
    public_ip_valid:
      description: Whether RV(host.public_ip) is an IPv4 address (the preflight names the host when it is not).
      type: bool
    underlay_iface:
      description: The underlay interface, O(iface) when given, else the one that holds RV(host.public_ip) (null when
        none does).
      type: str
    public_ipv6:
      description:
        - The host's underlay IPv6 address, the lease's C(PublicIPv6) on a dual-stack network, as the roles use it
          (V(__flannel_public_ipv6)) - O(public_ipv6) when given, else the first global IPv6 address of
          RV(host.underlay_iface) that is not temporary, deprecated or a failed duplicate; empty when there is none.
      type: str
    public_ipv6_valid:
      description: Whether RV(host.public_ipv6) is a unicast IPv6 address, not link-local (the preflight of a dual-stack
        network names the host when it is not).
      type: bool
    accept_ra:
      description: C(net.ipv6.conf.<underlay_iface>.accept_ra) (null when it cannot be read).
      type: str
    ipv6_forwarding:
      description: C(net.ipv6.conf.all.forwarding) (null when it cannot be read).
      type: str
    service_mgr:
      description: C(systemd) when systemd runs the host, else C(other).
      type: str
    ping_group_range:
      description: C(net.ipv4.ping_group_range), the groups that may open unprivileged ICMP sockets (null when it
        cannot be read).
      type: str
      version_added: 0.4.0
    forwarder_account:
      description:
        - The forwarder's system user and group C(flannel-forwarder) - C(uid), C(gid) (the group's) and C(user_gid)
          (the user's primary group); null while either is missing.
      type: dict
      version_added: 0.4.0
docker:
  description: docker's settings and what the docker role must do.
  returned: when O(parts) has V(docker)
  type: dict
  contains:
    daemon_json_exists:
      description: Whether daemon.json exists.
      type: bool
    daemon_json_conflicts:
      description: The keys of daemon.json that flannel sets itself (C(bip), C(mtu), C(bridge), C(ipv6), C(fixed-cidr-v6)).
      type: list
      elements: str
    daemon_json_error:
      description: Why daemon.json is not a JSON object (null when it is, or is missing).
      type: str
    unit_conflicts:
      description: The flags flannel sets that docker's unit, its other drop-ins or /etc/default/docker pass already.
      type: list
      elements: str
    wanted:
      description: The options of /run/flannel/docker.
      type: list
      elements: str
    running:
      description: The C(--bip), C(--ip-masq) and C(--mtu) options dockerd runs with.
      type: list
      elements: str
    bridge_addresses:
      description: The bridge's IPv4 addresses (CIDR).
      type: list
      elements: str
    bridge_ipv6_addresses:
      description: The bridge's global IPv6 addresses (CIDR).
      type: list
      elements: str
    bridge_mtu:
      description: The MTU of docker's bridge network (with V(bridge_mtu) in O(parts); null otherwise).
      type: int
    gateway:
      description: C(FLANNEL_SUBNET) of subnet.env.
      type: str
    restart:
      description: Whether dockerd must restart (it runs with other options, or the bridge is on another address).
      type: bool
    renumber:
      description: Whether the bridge is on another subnet (or another IPv6 subnet) and must be removed while docker is stopped.
      type: bool
    reason:
      description: Why docker must restart.
      type: str
    ipv6_sysctls:
      description:
        - On a dual-stack network (C(FLANNEL_IPV6_NETWORK) in subnet.env), the sysctls to set before docker forwards
          IPv6, in order, each C(key) and C(value) - C(net.ipv6.conf.<underlay_iface>.accept_ra) 2 where it is 1
          (router advertisements keep being taken with forwarding on), then C(net.ipv6.conf.all.forwarding) 1 -
          those not set already; empty otherwise, or without V(host) in O(parts).
      type: list
      elements: dict
    problem:
      description: What is wrong with the bridge (null when it carries the gateway and the MTU).
      type: str
flannel:
  description: The files the forwarder writes.
  returned: when O(parts) has V(flannel)
  type: dict
  contains:
    subnet_env:
      description: The values of subnet.env (null when it is missing).
      type: dict
    subnet_env_text:
      description: subnet.env as it is (null when it is missing).
      type: str
    docker_opts:
      description: Whether /run/flannel/docker exists.
      type: bool
    previous_subnets:
      description: The subnets the host held before, from subnet.env and then the forwarder's state file.
      type: list
      elements: str
    previous_ipv6_subnets:
      description: The IPv6 subnets the host held before (a dual-stack lease's IPv6 half), from subnet.env and then
        the forwarder's state file.
      type: list
      elements: str
peers:
  description:
    - The forwarder's peer probes as its status file has them (C(host), C(public_ip), C(subnet), C(mtu), C(updated),
      C(counts), C(peers) with each peer's C(subnet), C(public_ip), C(gateway), C(state), C(rtt_ms)); null when the
      file is missing, C(error) when it is not the JSON of a status file.
  returned: when O(parts) has V(peers)
  type: dict
preflight:
  description:
    - What the underlay checks found (O(preflight)); the forwarder role turns them into messages
      (filter P(overlay.flannel.underlay_problems#filter)).
    - "C(skipped), C(size) (the full packet size checked), C(backend), C(port), C(underlay) and C(underlay_mtu) (the
      public IP's interface), C(network) (its network), C(listener) (V(listening), V(in_use): the port is held, by
      the running forwarder or the kernel's vxlan device, V(closed) for host-gw), and C(checks): per target its
      C(name), C(address), C(ping) (C(ok), C(passes): the largest size that got through, C(error)), C(port)
      (C(ok), C(answer): V(answered), V(refused), V(peer probes) or null) and C(same_network) (host-gw)."
  returned: when O(preflight) is given
  type: dict
release:
  description: The forwarder releases on the host.
  returned: when O(parts) has V(release)
  type: dict
  contains:
    current:
      description: The path the C(current) symlink points at (null when there is none).
      type: str
    releases:
      description: The release directories.
      type: list
      elements: str
    legacy:
      description: The directories of the virtualenv layout of collection 0.1.0 that are still present.
      type: list
      elements: str
iptables:
  description:
    - The iptables rules, as C(iptables -S) prints them, per table (C(filter), C(nat)), and under C(ipv6) the
      ip6tables rules the same way.
  returned: when O(parts) has V(iptables)
  type: dict
files:
  description: Per path of O(files), C(exists), C(isdir), C(sha1) (regular files), C(mode), C(owner) and C(group).
  returned: when O(parts) has V(files)
  type: dict
units:
  description: Per unit of O(units), C(active), C(enabled), C(main_pid) and C(status_text).
  returned: when O(parts) has V(units)
  type: dict
"""

import grp
import hashlib
import json
import os
import platform
import pwd
import shutil
import stat
import sys
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.overlay.flannel.plugins.module_utils.hostfiles import parse_subnet_env
from ansible_collections.overlay.flannel.plugins.module_utils import hoststate, settings, underlay

COMMANDS = ("docker", "dockerd", "ip", "iptables", "ip6tables")
LEGACY = ("venv", "wheels", "installed-wheels")


def read_text(path):
    try:
        with open(path, "rb") as fh:
            return fh.read().decode("utf-8", "replace")
    except (IOError, OSError):
        return None


def read_peer_status(path):
    """The forwarder's peer status file, None when missing, {"error": ...} when it is not one."""
    text = read_text(path)
    if text is None:
        return None
    try:
        data = json.loads(text)
    except ValueError as exc:
        return dict(error="%s is not JSON: %s" % (path, exc))
    if not isinstance(data, dict) or not isinstance(data.get("peers"), list):
        return dict(error="%s has no list of peers" % path)
    return data


def probe_preflight(module, spec, public_ip, peer_status_file):
    """site.yml's underlay checks from this host to its ring neighbours (module_utils/underlay.py)."""
    if spec["skip"]:
        module.warn("the underlay preflight is off (flannel_preflight_underlay=false): MTU black holes and blocked "
                    "ports between the hosts are not looked for before the overlay changes")
        return dict(skipped=True, checks=[])
    backend = spec["backend"]
    try:
        addresses = json.loads(run(module, ["ip", "-j", "-4", "addr", "show"]) or "[]")
    except ValueError:
        addresses = []
    ifname, if_mtu, prefixlen = underlay.interface_of(addresses, public_ip)
    size = underlay.full_size(backend, spec["mtu"], if_mtu or 1500)
    port = spec["port"] or underlay.default_port(backend)
    # The peers this host's running forwarder reaches through the overlay on this backend and port.
    seen = underlay.vouched(read_peer_status(peer_status_file), backend, port)
    ports = underlay.PortCheck(port) if port else None
    checks = []
    try:
        sock, raw = underlay.icmp_socket()
        try:
            for target in spec["targets"]:
                checks.append(dict(name=target["name"], address=target["address"],
                                   ping=underlay.df_check(sock, raw, target["address"], size)))
        finally:
            sock.close()
        if ports is not None:
            # A peer this host's running forwarder reaches through the overlay has its port open.
            ask = [c["address"] for c in checks if c["address"] not in seen]
            answers = ports.check(ask)
            for c in checks:
                answer = answers.get(c["address"], "peer probes")
                c["port"] = dict(ok=answer is not None, answer=answer)
    finally:
        if ports is not None:
            ports.close()
    network = None
    for c in checks:
        if backend == "host-gw":
            c["same_network"], network = underlay.same_network(public_ip, prefixlen or 32, c["address"])
    return dict(skipped=False, size=size, backend=backend, port=port, underlay=ifname, underlay_mtu=if_mtu,
                network=network, listener=ports.state if ports is not None else "closed", checks=checks)


def run(module, argv):
    """stdout of a command, or "" when it fails or is missing (a probe reports, it does not fail)."""
    if shutil.which(argv[0]) is None:
        return ""
    rc, out, _err = module.run_command(argv, check_rc=False)
    return out if rc == 0 else ""


def file_facts(path):
    try:
        st = os.lstat(path)
    except OSError:
        return dict(exists=False, isdir=False, sha1=None, mode=None, owner=None, group=None)
    facts = dict(exists=True, isdir=stat.S_ISDIR(st.st_mode), sha1=None, mode="%04o" % stat.S_IMODE(st.st_mode))
    try:
        facts["owner"] = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        facts["owner"] = str(st.st_uid)
    try:
        facts["group"] = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        facts["group"] = str(st.st_gid)
    if stat.S_ISREG(st.st_mode):
        digest = hashlib.sha1()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(65536), b""):
                digest.update(chunk)
        facts["sha1"] = digest.hexdigest()
    return facts


def read_sysctl(key):
    text = read_text("/proc/sys/" + key.replace(".", "/"))
    return text.strip() if text is not None else None


def probe_host(module, python, given_public_ip, given_public_ipv6="", iface=""):
    error = None
    if os.path.realpath(python) == os.path.realpath(sys.executable):
        facts = dict(version=sys.version_info[:2], machine=platform.machine(), libc=platform.libc_ver(),
                     executable=sys.executable)
    else:
        facts, out, err, rc = None, "", "", 0
        if not os.access(python, os.X_OK):
            err = "%s: no such executable" % python
        else:
            rc, out, err = module.run_command([python, "-c", hoststate.FACTS_SCRIPT], check_rc=False)
            try:
                facts = json.loads(out) if rc == 0 else None
            except ValueError:
                facts = None
        if facts is None:
            error = (err or out or "rc=%d" % rc).strip()
            facts = dict(version=(0, 0), machine=platform.machine(), libc=("", ""), executable=python)
    result = hoststate.host_check(facts["version"], facts["machine"], facts["libc"], os.path.exists("/dev/net/tun"),
                                  facts["executable"])
    result["python_error"] = error
    result["commands_missing"] = [c for c in COMMANDS if shutil.which(c) is None]
    # What site.yml would otherwise gather facts for: the default route's source address (ansible_default_ipv4)
    # and the service manager.
    result["default_ipv4"] = hoststate.route_source(run(module, ["ip", "-4", "route", "get", "192.0.2.1"]))
    result["public_ip"], result["public_ip_valid"] = hoststate.public_ip(given_public_ip, result["default_ipv4"])
    # The underlay interface (flannel_iface, else the one holding the public IP) and its IPv6 side.
    addresses = hoststate.interface_addresses(run(module, ["ip", "-o", "addr", "show"]))
    result["underlay_iface"] = hoststate.underlay_iface(addresses, result["public_ip"], iface)
    result["public_ipv6"], result["public_ipv6_valid"] = hoststate.public_ipv6(
        given_public_ipv6, addresses, result["underlay_iface"])
    result["accept_ra"] = read_sysctl("net.ipv6.conf.%s.accept_ra" % result["underlay_iface"]) \
        if result["underlay_iface"] else None
    result["ipv6_forwarding"] = read_sysctl("net.ipv6.conf.all.forwarding")
    result["service_mgr"] = "systemd" if os.path.isdir("/run/systemd/system") else "other"
    result["ping_group_range"] = read_sysctl("net.ipv4.ping_group_range")
    result["forwarder_account"] = forwarder_account()
    return result


def forwarder_account():
    """The forwarder's system user and group ({uid, gid, group}), None while either is missing."""
    try:
        user = pwd.getpwnam(hoststate.FORWARDER_ACCOUNT)
        group = grp.getgrnam(hoststate.FORWARDER_ACCOUNT)
    except KeyError:
        return None
    return dict(uid=user.pw_uid, gid=group.gr_gid, user_gid=user.pw_gid)


def probe_docker(module, p, units, flannel_texts):
    daemon_text = read_text(p["daemon_json"])
    conflicts, error = hoststate.daemon_json_conflicts(daemon_text)
    unit_text = run(module, ["systemctl", "cat", "docker.service"])
    default_text = read_text("/etc/default/docker")
    pid = (units.get("docker.service") or {}).get("main_pid") or 0
    if not pid and "docker.service" not in units:
        show = run(module, ["systemctl", "show", "-p", "MainPID", "--value", "docker.service"]).strip()
        pid = int(show) if show.isdigit() else 0
    cmdline = b""
    if pid > 0:
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as fh:
                cmdline = fh.read()
        except (IOError, OSError):
            cmdline = b""
    bridge_text = run(module, ["ip", "-o", "addr", "show", "dev", p["bridge"]])
    addresses = hoststate.ipv4_addresses(bridge_text)
    addresses6 = hoststate.ipv6_addresses(bridge_text)
    subnet_env_text, docker_opts_text = flannel_texts
    result = dict(daemon_json_exists=daemon_text is not None, daemon_json_conflicts=conflicts,
                  daemon_json_error=error,
                  unit_conflicts=hoststate.unit_conflicts(unit_text, default_text, p["docker_dropin"]),
                  bridge_addresses=addresses, bridge_ipv6_addresses=addresses6, bridge_mtu=None)
    result.update(hoststate.docker_decision(subnet_env_text, docker_opts_text, cmdline, addresses, addresses6))
    if "bridge_mtu" in p["parts"] and pid > 0:
        result["bridge_mtu"] = hoststate.bridge_mtu(run(module, ["docker", "network", "inspect", "bridge"]))
    result["problem"] = hoststate.docker0_problem(subnet_env_text, addresses, result["bridge_mtu"], addresses6) \
        if "bridge_mtu" in p["parts"] else None
    return result


def probe_release(prefix):
    releases_dir = os.path.join(prefix, "releases")
    try:
        releases = sorted(os.path.join(releases_dir, name) for name in os.listdir(releases_dir)
                          if os.path.isdir(os.path.join(releases_dir, name)) and not name.startswith("."))
    except OSError:
        releases = []
    current = os.path.join(prefix, "current")
    target = os.readlink(current) if os.path.islink(current) else None
    legacy = [os.path.join(prefix, name) for name in LEGACY if os.path.lexists(os.path.join(prefix, name))]
    return dict(current=target, releases=releases, legacy=legacy)


def wait_ready(module, want, subnet_file):
    """Poll until the forwarder is ready (hoststate.forwarder_not_ready) or fail with why and its journal."""
    deadline = time.monotonic() + want["timeout"]
    while True:
        unit = hoststate.unit_states(run(module, ["systemctl", "show", "-p",
                                                  "Id,ActiveState,UnitFileState,MainPID,StatusText", want["unit"]]))
        text = read_text(subnet_file)
        gaps = hoststate.forwarder_not_ready(unit.get(want["unit"]), parse_subnet_env(text) if text else None,
                                             want["network"], want["subnet"], want["backend"], want["ipv6_subnet"])
        if not gaps:
            return
        if time.monotonic() >= deadline:
            journal = run(module, ["journalctl", "--no-pager", "-n", "40", "-u", want["unit"]])
            module.fail_json(msg="%s did not become ready in %d s: %s\n%s"
                             % (want["unit"], want["timeout"], "; ".join(gaps), journal.strip()))
        time.sleep(0.25)


def main():
    # The paths the roles share (python, subnet_file, docker_opts_file, lease_state_file, daemon_json,
    # docker_dropin, bridge, forwarder_prefix) come from the settings table; the rest is the probe's own.
    argument_spec = settings.argument_spec("host_probe")
    argument_spec.update(
        files=dict(type="list", elements="str", default=[]),
        units=dict(type="list", elements="str",
                   default=["flannel-forwarder.service", "docker.service", "flannel-iptables.service"]),
        parts=dict(type="list", elements="str",
                   choices=["host", "docker", "flannel", "release", "iptables", "files", "units", "bridge_mtu",
                            "peers"],
                   default=["host", "docker", "flannel", "release", "iptables", "files", "units"]),
        public_ip=dict(type="str", default=""),
        public_ipv6=dict(type="str", default=""),
        iface=dict(type="str", default=""),
        preflight=dict(type="dict", options=dict(
            targets=dict(type="list", elements="dict", default=[]),
            backend=dict(type="str", choices=["udp", "vxlan", "host-gw"], default="udp"),
            port=dict(type="int", default=0), mtu=dict(type="int", default=0), skip=dict(type="bool", default=False))),
        wait_ready=dict(type="dict", options=dict(
            unit=dict(type="str", default="flannel-forwarder.service"),
            network=dict(type="str", required=True), subnet=dict(type="str", required=True),
            backend=dict(type="str", required=True), timeout=dict(type="int", default=60),
            ipv6_subnet=dict(type="str"))),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    if p["wait_ready"]:
        wait_ready(module, p["wait_ready"], p["subnet_file"])
    parts = set(p["parts"])
    result = dict(changed=False)
    units = {}
    if "units" in parts or "docker" in parts:
        units = hoststate.unit_states(run(module, ["systemctl", "show", "-p",
                                                   "Id,ActiveState,UnitFileState,MainPID,StatusText"]
                                          + p["units"]))
    if "units" in parts:
        result["units"] = units
    subnet_env_text = read_text(p["subnet_file"])
    docker_opts_text = read_text(p["docker_opts_file"])
    if "host" in parts:
        result["host"] = probe_host(module, p["python"], p["public_ip"], p["public_ipv6"], p["iface"])
    if "flannel" in parts:
        state_text = read_text(p["lease_state_file"])
        result["flannel"] = dict(
            subnet_env=parse_subnet_env(subnet_env_text) if subnet_env_text is not None else None,
            subnet_env_text=subnet_env_text, docker_opts=docker_opts_text is not None,
            previous_subnets=hoststate.previous_subnets(subnet_env_text, state_text),
            previous_ipv6_subnets=hoststate.previous_ipv6_subnets(subnet_env_text, state_text))
    if "docker" in parts:
        result["docker"] = probe_docker(module, p, units, (subnet_env_text, docker_opts_text))
    if "docker" in parts:
        host = result.get("host") or {}
        result["docker"]["ipv6_sysctls"] = hoststate.ipv6_sysctls(
            bool(parse_subnet_env(subnet_env_text or "").get("FLANNEL_IPV6_NETWORK")), host.get("underlay_iface"),
            host.get("accept_ra"), host.get("ipv6_forwarding")) if host else []
    if "release" in parts:
        result["release"] = probe_release(p["forwarder_prefix"])
    if "iptables" in parts:
        result["iptables"] = dict((table, run(module, ["iptables", "-w", "-t", table, "-S"]))
                                  for table in ("filter", "nat"))
        result["iptables"]["ipv6"] = dict((table, run(module, ["ip6tables", "-w", "-t", table, "-S"]))
                                          for table in ("filter", "nat"))
    if p["preflight"]:
        host = result.get("host") or probe_host(module, p["python"], p["public_ip"], p["public_ipv6"], p["iface"])
        result["preflight"] = probe_preflight(module, p["preflight"], host["public_ip"], p["peer_status_file"])
    if "peers" in parts:
        result["peers"] = read_peer_status(p["peer_status_file"])
    if "files" in parts:
        result["files"] = dict((path, file_facts(path)) for path in p["files"])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
