"""The host_probe's parsers and decisions (plugins/module_utils/hoststate.py): pure, on texts as hosts print them."""

import pytest

from ansible_collections.overlay.flannel.plugins.module_utils import hoststate as H

DROPIN = "/etc/systemd/system/docker.service.d/flannel.conf"
CAT = """# /lib/systemd/system/docker.service
[Unit]
Description=Docker Application Container Engine

[Service]
EnvironmentFile=-/etc/default/docker
ExecStart=/usr/sbin/dockerd -H fd:// $DOCKER_OPTS

# /etc/systemd/system/docker.service.d/flannel.conf
[Service]
EnvironmentFile=-/run/flannel/docker
ExecStart=
ExecStart=/usr/sbin/dockerd -H fd:// $DOCKER_OPTS $DOCKER_NETWORK_OPTIONS --bip=10.5.3.1/24
"""
SUBNET_ENV = "FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_SUBNET=10.5.3.1/24\nFLANNEL_MTU=1472\nFLANNEL_IPMASQ=false\n"
DOCKER_OPTS = ('DOCKER_OPT_BIP="--bip=10.5.3.1/24"\nDOCKER_OPT_IPMASQ="--ip-masq=true"\nDOCKER_OPT_MTU="--mtu=1472"\n'
               'DOCKER_NETWORK_OPTIONS=" --bip=10.5.3.1/24 --ip-masq=true --mtu=1472 "\n')
CMDLINE = b"/usr/sbin/dockerd\x00-H\x00fd://\x00--bip=10.5.3.1/24\x00--ip-masq=true\x00--mtu=1472\x00"
IP_ADDR = "5: docker0    inet 10.5.3.1/24 brd 10.5.3.255 scope global docker0\\       valid_lft forever\n"


@pytest.mark.parametrize("text, conflicts, error", [
    (None, [], None),
    ("", [], None),
    ('{"cgroup-parent": "flh1-docker"}', [], None),
    ('{"bip": "172.30.0.1/16", "mtu": 1400, "bridge": "br0", "debug": true}', ["bip", "mtu", "bridge"], None),
    ('{"bip": ', [], "not valid JSON"),
    ('["bip"]', [], "not a JSON object"),
])
def test_daemon_json_conflicts(text, conflicts, error):
    got, err = H.daemon_json_conflicts(text)
    assert got == conflicts
    assert (err is None) == (error is None) and (error is None or error in err)


def test_unit_conflicts_leave_our_own_dropin_out():
    assert H.unit_conflicts(CAT, "", DROPIN) == []
    other = CAT + "\n# /etc/systemd/system/docker.service.d/zz.conf\n[Service]\nExecStart=/usr/sbin/dockerd --mtu 1400\n"
    assert H.unit_conflicts(other, "", DROPIN) == ["--mtu"]
    # our drop-in under another path is someone else's
    assert H.unit_conflicts(CAT, "", "/etc/systemd/system/docker.service.d/other.conf") == ["--bip"]


def test_unit_conflicts_in_etc_default_docker_and_comments():
    assert H.unit_conflicts(CAT, 'DOCKER_OPTS="-b br0 --dns 1.1.1.1"\n', DROPIN) == ["-b"]
    assert H.unit_conflicts(CAT, '# DOCKER_OPTS="--bip=1.2.3.4/24"\n', DROPIN) == []
    # a word that only starts like a flag is none
    assert H.unit_conflicts(CAT, 'DOCKER_OPTS="--bridge-nf --mtux=3 -bx"\n', DROPIN) == []
    assert H.unit_conflicts(CAT, 'DOCKER_OPTS="--bridge=none --bip=1.2.3.1/24"\n', DROPIN) == ["--bridge", "--bip"]


def test_unit_sections():
    assert [path for path, _text in H.unit_sections(CAT)] == ["/lib/systemd/system/docker.service", DROPIN]
    assert H.unit_sections("") == []


def test_options_wanted_and_running():
    assert H.wanted_options(DOCKER_OPTS) == ["--bip=10.5.3.1/24", "--ip-masq=true", "--mtu=1472"]
    assert H.wanted_options(None) == [] and H.wanted_options("") == []
    assert H.running_options(CMDLINE) == ["--bip=10.5.3.1/24", "--ip-masq=true", "--mtu=1472"]
    assert H.running_options(b"/usr/sbin/dockerd\x00-H\x00fd://\x00") == []
    assert H.running_options("") == [] and H.running_options(None) == []
    # only the options flannel sets, with their value
    assert H.running_options(b"dockerd\x00--bip\x00--mtu=1450\x00--bridge=x\x00") == ["--mtu=1450"]


def test_ipv4_addresses():
    assert H.ipv4_addresses(IP_ADDR) == ["10.5.3.1/24"]
    assert H.ipv4_addresses(IP_ADDR + IP_ADDR.replace("10.5.3.1", "172.17.0.1").replace("/24", "/16")) == \
        ["10.5.3.1/24", "172.17.0.1/16"]
    assert H.ipv4_addresses("") == [] and H.ipv4_addresses(None) == []


def test_docker_runs_as_flannel_wants_it():
    got = H.docker_decision(SUBNET_ENV, DOCKER_OPTS, CMDLINE, ["10.5.3.1/24"])
    assert (got["restart"], got["renumber"], got["reason"]) == (False, False, "")
    assert got["gateway"] == "10.5.3.1/24"


def test_docker_restarts_on_other_options():
    got = H.docker_decision(SUBNET_ENV, DOCKER_OPTS.replace("1472", "1400"), CMDLINE, ["10.5.3.1/24"])
    assert got["restart"] and not got["renumber"]
    assert got["reason"] == ("dockerd runs with [--bip=10.5.3.1/24 --ip-masq=true --mtu=1472], flannel's options "
                             "are [--bip=10.5.3.1/24 --ip-masq=true --mtu=1400]")
    # a first run: dockerd on docker's defaults, docker0 on docker's subnet
    got = H.docker_decision(SUBNET_ENV, DOCKER_OPTS, b"/usr/sbin/dockerd\x00-H\x00fd://\x00", ["172.17.0.1/16"])
    assert got["restart"] and got["renumber"] and got["reason"].endswith("; docker0 moves to 10.5.3.1/24")


def test_docker_renumbers_a_bridge_left_on_another_subnet():
    got = H.docker_decision(SUBNET_ENV, DOCKER_OPTS, CMDLINE, ["10.5.9.1/24"])
    assert got["restart"] and got["renumber"]
    # no bridge yet (docker stopped): nothing to remove
    got = H.docker_decision(SUBNET_ENV, DOCKER_OPTS, b"", [])
    assert got["restart"] and not got["renumber"]


def test_docker_renumbers_a_bridge_left_on_another_ipv6_subnet():
    env = SUBNET_ENV + "FLANNEL_IPV6_SUBNET=fd00:5:0:22::1/64\n"
    # the IPv6 half moved alone (relet onto a named one): the old IPv6 address would stay on docker0
    got = H.docker_decision(env, DOCKER_OPTS, CMDLINE, ["10.5.3.1/24"], ["fd00:5:0:21::1/64"])
    assert got["restart"] and got["renumber"]
    assert got["reason"].endswith("; docker0 moves to 10.5.3.1/24 & fd00:5:0:22::1/64"), got["reason"]
    # on it already (written uncompressed in subnet.env), or no global IPv6 address yet (turning dual-stack)
    on_it = H.docker_decision(env.replace("22::1", "22:0::1"), DOCKER_OPTS, CMDLINE, ["10.5.3.1/24"],
                              ["fd00:5:0:22::1/64"])
    fresh = H.docker_decision(env, DOCKER_OPTS, CMDLINE, ["10.5.3.1/24"], [])
    assert not on_it["renumber"] and not fresh["renumber"]
    # IPv4-only, docker's own IPv6 (daemon.json: not on dockerd's command line): left alone
    assert not H.docker_decision(SUBNET_ENV, DOCKER_OPTS, CMDLINE, ["10.5.3.1/24"], ["fd00:5:0:21::1/64"])["renumber"]


def test_docker_drops_flannels_ipv6_address_going_back_to_ipv4_only():
    # dockerd still runs with the dual-stack options flannel gave it; subnet.env and /run/flannel/docker are
    # IPv4-only again: the restart alone would leave docker0's IPv6 address and route, so the bridge goes too
    dual = CMDLINE + b"--ipv6\x00--fixed-cidr-v6=fd00:5:0:21::/64\x00"
    got = H.docker_decision(SUBNET_ENV, DOCKER_OPTS, dual, ["10.5.3.1/24"], ["fd00:5:0:21::1/64"])
    assert got["restart"] and got["renumber"], got
    assert got["reason"].endswith("; docker0's IPv6 address goes"), got["reason"]
    # the bridge has no IPv6 address left (docker restarted without it already): a restart alone
    again = H.docker_decision(SUBNET_ENV, DOCKER_OPTS, dual, ["10.5.3.1/24"], [])
    assert again["restart"] and not again["renumber"]


def test_nothing_is_due_before_the_forwarder_wrote_its_files():
    got = H.docker_decision(None, None, CMDLINE, ["172.17.0.1/16"])
    assert (got["restart"], got["renumber"], got["wanted"], got["gateway"]) == (False, False, [], None)


def test_bridge_mtu_and_problem():
    inspect = '[{"Name": "bridge", "Options": {"com.docker.network.driver.mtu": "1472"}}]'
    assert H.bridge_mtu(inspect) == 1472
    assert H.bridge_mtu('[{"Name": "bridge", "Options": {}}]') == 1500
    assert H.bridge_mtu("Error: No such network") is None and H.bridge_mtu("[]") is None
    assert H.docker0_problem(SUBNET_ENV, ["10.5.3.1/24"], 1472) is None
    assert H.docker0_problem(SUBNET_ENV, ["10.5.3.1/24"], 1500) == \
        "docker0 should carry 10.5.3.1/24 with MTU 1472, but has [10.5.3.1/24] and MTU 1500"
    assert "but has [172.17.0.1/16]" in H.docker0_problem(SUBNET_ENV, ["172.17.0.1/16"], 1472)
    assert H.docker0_problem(None, [], None) is None


@pytest.mark.parametrize("env, state, want", [
    (SUBNET_ENV, "10.5.3.0/24\n", ["10.5.3.0/24"]),
    (None, "10.5.3.0/24\n", ["10.5.3.0/24"]),
    (SUBNET_ENV, "10.5.8.0/24", ["10.5.3.0/24", "10.5.8.0/24"]),
    ('FLANNEL_SUBNET="10.5.4.1/24"\n', None, ["10.5.4.0/24"]),
    ("FLANNEL_SUBNET=garbage\n", "also garbage", []),
    (None, None, []),
])
def test_previous_subnets(env, state, want):
    assert H.previous_subnets(env, state) == want


RULES = [
    {"table": "filter", "chain": "FORWARD", "source": "10.5.0.0/16", "jump": "ACCEPT",
     "comment": "overlay.flannel forward", "present": True},
    {"table": "filter", "chain": "FORWARD", "destination": "10.5.0.0/16", "jump": "ACCEPT",
     "comment": "overlay.flannel forward", "present": True},
    {"table": "nat", "chain": "POSTROUTING", "source": "10.5.0.0/16", "destination": "!10.5.0.0/16",
     "jump": "MASQUERADE", "comment": "overlay.flannel ip-masq", "present": False},
]
FILTER = """-P INPUT ACCEPT
-P FORWARD DROP
-N DOCKER
-A FORWARD -j DOCKER-USER
-A FORWARD -s 10.5.0.0/16 -m comment --comment "overlay.flannel forward" -j ACCEPT
-A FORWARD -d 10.5.0.0/16 -m comment --comment "overlay.flannel forward" -j ACCEPT
-A FORWARD -o docker0 -j DOCKER
"""
NAT = """-P POSTROUTING ACCEPT
-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
"""
MASQ = '-A POSTROUTING -s 10.5.0.0/16 ! -d 10.5.0.0/16 -m comment --comment "overlay.flannel ip-masq" -j MASQUERADE\n'


def test_parse_rule():
    assert H.parse_rule(MASQ.strip()) == dict(chain="POSTROUTING", source="10.5.0.0/16", destination="!10.5.0.0/16",
                                              jump="MASQUERADE", comment="overlay.flannel ip-masq")
    assert H.parse_rule("-A FORWARD -j DOCKER-USER") is None  # not ours
    assert H.parse_rule('-A X -m comment --comment "someone else" -j ACCEPT') is None
    assert H.parse_rule("-P FORWARD DROP") is None and H.parse_rule('-A "unclosed') is None


def test_iptables_in_place_need_nothing():
    assert H.iptables_plan({"filter": FILTER, "nat": NAT}, RULES, "10.5.0.0/16") == dict(apply=[], stale=[])


def test_iptables_missing_and_unwanted_rules_are_applied():
    masq_on = [dict(r, present=True) if r["jump"] == "MASQUERADE" else r for r in RULES]
    plan = H.iptables_plan({"filter": FILTER, "nat": NAT}, masq_on, "10.5.0.0/16")
    assert plan["apply"] == [masq_on[2]] and plan["stale"] == []
    plan = H.iptables_plan({"filter": FILTER, "nat": NAT + MASQ}, RULES, "10.5.0.0/16")
    assert plan["apply"] == [RULES[2]]  # present, but flannel_ip_masq is off: removed
    plan = H.iptables_plan({"filter": "", "nat": ""}, RULES, "10.5.0.0/16")
    assert plan["apply"] == RULES[:2]
    # the templated "True"/"False" of older ansible-core
    assert H.iptables_plan({"filter": FILTER, "nat": NAT}, [dict(r, present=str(r["present"])) for r in RULES],
                           "10.5.0.0/16")["apply"] == []


def test_iptables_rules_of_another_network_are_stale():
    grown = [dict(r, **{k: v.replace("10.5.0.0/16", "10.4.0.0/15") for k, v in r.items()
                        if k in ("source", "destination")}) for r in RULES]
    plan = H.iptables_plan({"filter": FILTER, "nat": NAT + MASQ}, grown, "10.4.0.0/15")
    assert plan["apply"] == grown[:2]
    assert [rule["table"] for rule in plan["stale"]] == ["filter", "filter", "nat"]
    assert all("10.5.0.0/16" in rule["line"] and rule["line"].startswith("-A ") for rule in plan["stale"])
    assert plan["stale"][2] == dict(table="nat", chain="POSTROUTING", source="10.5.0.0/16", destination="!10.5.0.0/16",
                                    jump="MASQUERADE", comment="overlay.flannel ip-masq", line=MASQ.strip(),
                                    family="ipv4")
    # retire: every rule of the overlay, none of docker's
    plan = H.iptables_plan({"filter": FILTER, "nat": NAT + MASQ}, [], "")
    assert len(plan["stale"]) == 3 and not [r for r in plan["stale"] if "overlay.flannel" not in r["line"]]
    # a network that only starts like the kept one is another
    plan = H.iptables_plan({"filter": FILTER.replace("10.5.0.0/16", "10.5.0.0/17"), "nat": ""}, RULES, "10.5.0.0/16")
    assert len(plan["stale"]) == 2


def test_host_check():
    ok = H.host_check((3, 11), "x86_64", ("glibc", "2.36"), True, "/usr/bin/python3")
    assert ok == dict(python="3.11", machine="x86_64", glibc="2.36", executable="/usr/bin/python3", missing=[],
                      target=dict(python="3.11", machine="x86_64", glibc="2.36"))
    bad = H.host_check([3, 7, 3], "aarch64", ("", ""), False, "/usr/bin/python3")
    assert bad["missing"] == ["Python 3.9 or newer (this is 3.7)", "/dev/net/tun (the tun kernel module)",
                              "the GNU C library (found 'none')"]
    assert H.host_check((3, 12), "x86_64", ("musl", "1.2"), True, "x")["missing"] == \
        ["the GNU C library (found 'musl')"]


def test_unit_states():
    out = ("Id=flannel-forwarder.service\nActiveState=active\nUnitFileState=enabled\nMainPID=812\n"
           "StatusText=udp: 2 peers\n\nId=docker.service\nActiveState=inactive\nUnitFileState=enabled\nMainPID=0\n"
           "StatusText=\n\nId=flannel-iptables.service\nActiveState=inactive\nUnitFileState=\nMainPID=0\n"
           "StatusText=\n")
    got = H.unit_states(out)
    assert got["flannel-forwarder.service"] == dict(active="active", enabled="enabled", main_pid=812,
                                                    status_text="udp: 2 peers")
    assert got["docker.service"]["main_pid"] == 0 and got["flannel-iptables.service"]["enabled"] == ""
    assert H.unit_states("") == {}


def test_route_source():
    assert H.route_source("192.0.2.1 via 10.213.0.254 dev eth0 src 10.213.0.11 uid 0 \n    cache \n") == "10.213.0.11"
    assert H.route_source("") is None and H.route_source("RTNETLINK answers: Network is unreachable") is None


def test_public_ip_is_the_inventorys_else_the_default_routes_and_only_ipv4_is_valid():
    assert H.public_ip("192.0.2.7", "10.213.0.11") == ("192.0.2.7", True)
    assert H.public_ip("", "10.213.0.11") == ("10.213.0.11", True)
    assert H.public_ip(None, None) == ("", False)
    assert H.public_ip("", None) == ("", False)
    assert H.public_ip("eth0", "10.213.0.11") == ("eth0", False)
    assert H.public_ip("10.0.0.256", None) == ("10.0.0.256", False)
    assert H.public_ip("fd00::1", None) == ("fd00::1", False)


def test_forwarder_not_ready_names_each_gap_and_is_empty_when_ready():
    unit = dict(active="active", enabled="enabled", main_pid=7, status_text="vxlan: 2 peers")
    env = {"FLANNEL_NETWORK": "10.5.0.0/16", "FLANNEL_SUBNET": "10.5.34.1/24"}
    assert H.forwarder_not_ready(unit, env, "10.5.0.0/16", "10.5.34.1/24", "vxlan") == []
    gaps = H.forwarder_not_ready(dict(unit, active="activating", status_text="udp: 2 peers"), None,
                                 "10.5.0.0/16", "10.5.34.1/24", "vxlan")
    assert gaps == ["the unit is activating, not active",
                    "subnet.env has FLANNEL_NETWORK=(none) FLANNEL_SUBNET=(none), not 10.5.0.0/16 and 10.5.34.1/24",
                    "its status is 'udp: 2 peers', not the vxlan backend's"]
    # a lease that moved, or a network that grew, is not ready until subnet.env says so
    assert H.forwarder_not_ready(unit, dict(env, FLANNEL_SUBNET="10.5.9.1/24"), "10.5.0.0/16", "10.5.34.1/24",
                                 "vxlan") == ["subnet.env has FLANNEL_NETWORK=10.5.0.0/16 FLANNEL_SUBNET=10.5.9.1/24, "
                                              "not 10.5.0.0/16 and 10.5.34.1/24"]
    assert H.forwarder_not_ready(None, env, "10.5.0.0/16", "10.5.34.1/24", "vxlan")[0] == "the unit is unknown, not active"


# --- dual-stack: the host's IPv6 side, docker's IPv6 options, ip6tables ------------------------------------------

IP_O_ADDR = """1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever
1: lo    inet6 ::1/128 scope host noprefixroute \\       valid_lft forever preferred_lft forever
2: eth0    inet 10.213.0.11/24 brd 10.213.0.255 scope global eth0\\       valid_lft forever preferred_lft forever
2: eth0    inet6 2001:db8:0:1:a00:27ff:fe4e:66a1/64 scope global temporary dynamic \\       valid_lft 86000sec
2: eth0    inet6 2001:db8:0:1:0:0:0:dead/64 scope global deprecated dynamic \\       valid_lft 60sec preferred_lft 0sec
2: eth0    inet6 fd00:10:213:0:0::11/64 scope global tentative \\       valid_lft forever preferred_lft forever
2: eth0    inet6 2001:db8:0:1::11/64 scope global dynamic mngtmpaddr \\       valid_lft 86000sec preferred_lft 14000sec
2: eth0    inet6 fe80::a00:27ff:fe4e:66a1/64 scope link \\       valid_lft forever preferred_lft forever
3: eth1@if9    inet 192.168.7.2/24 scope global eth1\\       valid_lft forever preferred_lft forever
3: eth1@if9    inet6 fd99::2/64 scope global \\       valid_lft forever preferred_lft forever
"""


def test_interface_addresses():
    found = H.interface_addresses(IP_O_ADDR)
    assert [(a["iface"], a["family"], a["address"], a["prefixlen"], a["scope"]) for a in found][:3] == [
        ("lo", 4, "127.0.0.1", 8, "host"), ("lo", 6, "::1", 128, "host"), ("eth0", 4, "10.213.0.11", 24, "global")]
    assert found[3]["flags"] == ["temporary", "dynamic"] and found[2]["flags"] == []
    assert [a["iface"] for a in found if a["address"] == "fd99::2"] == ["eth1"]  # "@if9" is not the name
    assert H.interface_addresses("") == [] and H.interface_addresses("garbage\n") == []


def test_the_underlay_interface_is_the_given_one_else_the_one_holding_the_public_ip():
    found = H.interface_addresses(IP_O_ADDR)
    assert H.underlay_iface(found, "10.213.0.11") == "eth0"
    assert H.underlay_iface(found, "192.168.7.2") == "eth1"
    assert H.underlay_iface(found, "10.213.0.11", "eth1") == "eth1"
    assert H.underlay_iface(found, "10.9.9.9") is None


def test_public_ipv6_is_the_inventorys_else_a_stable_global_address_of_the_underlay():
    found = H.interface_addresses(IP_O_ADDR)
    # not the temporary (privacy) one, nor the deprecated one, nor the link-local one; a tentative one last
    assert H.public_ipv6("", found, "eth0") == ("2001:db8:0:1::11", True)
    assert H.public_ipv6("", found, "eth1") == ("fd99::2", True)
    only_tentative = [a for a in found if a["address"] != "2001:db8:0:1::11"]
    assert H.public_ipv6("", only_tentative, "eth0") == ("fd00:10:213::11", True)  # compressed
    assert H.public_ipv6("", found, "lo") == ("", False)  # ::1 is scope host
    assert H.public_ipv6("", [], "eth0") == ("", False) and H.public_ipv6("", found, None) == ("", False)
    # the inventory's, checked (compressed when it is one)
    assert H.public_ipv6("2001:DB8::0:7", found, "eth0") == ("2001:db8::7", True)
    assert H.public_ipv6("fe80::1", found, "eth0") == ("fe80::1", False)
    assert H.public_ipv6("10.0.0.1", found, "eth0") == ("10.0.0.1", False)
    assert H.public_ipv6("::", found, "eth0") == ("::", False)


@pytest.mark.parametrize("dual, iface, accept_ra, forwarding, wanted", [
    (False, "eth0", "1", "0", []),  # IPv4-only: nothing
    (True, "eth0", "1", "0", [("net.ipv6.conf.eth0.accept_ra", "2"), ("net.ipv6.conf.all.forwarding", "1")]),
    (True, "eth0", "1\n", "1\n", [("net.ipv6.conf.eth0.accept_ra", "2")]),  # forwarding on: RAs ignored at 1
    (True, "eth0", "0", "0", [("net.ipv6.conf.all.forwarding", "1")]),  # no RAs taken: left so
    (True, "eth0", "2", "1", []),
    (True, "eth0.100", "1", "1", [("net.ipv6.conf.eth0/100.accept_ra", "2")]),  # sysctl's spelling of a dot
    (True, None, None, None, [("net.ipv6.conf.all.forwarding", "1")]),
])
def test_ipv6_sysctls_keep_router_advertisements_on_the_underlay(dual, iface, accept_ra, forwarding, wanted):
    got = H.ipv6_sysctls(dual, iface, accept_ra, forwarding)
    assert [(s["key"], s["value"]) for s in got] == wanted


def test_previous_ipv6_subnets_from_subnet_env_then_the_state_file():
    env = SUBNET_ENV + "FLANNEL_IPV6_NETWORK=fd00:5::/48\nFLANNEL_IPV6_SUBNET=fd00:5:0:22::1/64\n"
    assert H.previous_ipv6_subnets(env, "10.5.3.0/24\nfd00:5:0:9::/64\n") == ["fd00:5:0:22::/64", "fd00:5:0:9::/64"]
    assert H.previous_ipv6_subnets(SUBNET_ENV, "10.5.3.0/24\n") == []
    assert H.previous_ipv6_subnets(None, "10.5.3.0/24\nfd00:5:0:9::/64\n") == ["fd00:5:0:9::/64"]
    assert H.previous_ipv6_subnets("FLANNEL_IPV6_SUBNET=nonsense\n", "garbage\n") == []
    # the IPv4 ones are the first line's, also when the file has an IPv6 line
    assert H.previous_subnets(env, "10.5.9.0/24\nfd00:5:0:9::/64\n") == ["10.5.3.0/24", "10.5.9.0/24"]


DUAL_OPTS = ('DOCKER_NETWORK_OPTIONS=" --bip=10.5.3.1/24 --ipv6 --fixed-cidr-v6=fd00:5:0:22::/64 --ip-masq=true '
             '--mtu=1450 "\n')
DUAL_ENV = ("FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_SUBNET=10.5.3.1/24\nFLANNEL_IPV6_NETWORK=fd00:5::/48\n"
            "FLANNEL_IPV6_SUBNET=fd00:5:0:22::1/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n")
V4_CMDLINE = b"/usr/sbin/dockerd\x00-H\x00fd://\x00--bip=10.5.3.1/24\x00--ip-masq=true\x00--mtu=1450\x00"
DUAL_CMDLINE = (b"/usr/sbin/dockerd\x00-H\x00fd://\x00--bip=10.5.3.1/24\x00--ipv6\x00"
                b"--fixed-cidr-v6=fd00:5:0:22::/64\x00--ip-masq=true\x00--mtu=1450\x00")


def test_docker_restarts_when_the_network_turns_dual_stack_and_back_and_only_then():
    v4_opts = DUAL_OPTS.replace(" --ipv6 --fixed-cidr-v6=fd00:5:0:22::/64", "")
    on = H.docker_decision(DUAL_ENV, DUAL_OPTS, V4_CMDLINE, ["10.5.3.1/24"])
    assert on["restart"] and not on["renumber"] and "--ipv6" in on["reason"]
    assert H.docker_decision(DUAL_ENV, DUAL_OPTS, DUAL_CMDLINE, ["10.5.3.1/24"])["restart"] is False
    back = H.docker_decision(SUBNET_ENV, v4_opts, DUAL_CMDLINE, ["10.5.3.1/24"])
    assert back["restart"] and back["running"] == sorted(["--bip=10.5.3.1/24", "--ipv6", "--fixed-cidr-v6=fd00:5:0:22::/64",
                                                          "--ip-masq=true", "--mtu=1450"])
    assert H.docker_decision(SUBNET_ENV, v4_opts, V4_CMDLINE, ["10.5.3.1/24"])["restart"] is False
    # another IPv6 half (a relet) restarts too
    moved = DUAL_OPTS.replace("fd00:5:0:22::", "fd00:5:0:23::")
    assert H.docker_decision(DUAL_ENV, moved, DUAL_CMDLINE, ["10.5.3.1/24"])["restart"]


def test_docker_ipv6_settings_of_its_own_are_conflicts():
    assert H.daemon_json_conflicts('{"ipv6": true, "fixed-cidr-v6": "2001:db8:1::/64", "debug": true}')[0] == \
        ["ipv6", "fixed-cidr-v6"]
    assert H.unit_conflicts(CAT, 'DOCKER_OPTS="--ipv6 --fixed-cidr-v6 2001:db8::/64"\n', DROPIN) == \
        ["--ipv6", "--fixed-cidr-v6"]
    assert H.unit_conflicts(CAT, 'DOCKER_OPTS="--ipv6x --fixed-cidr-v6-x=1"\n', DROPIN) == []


def test_docker0_carries_the_ipv6_gateway_on_a_dual_stack_network():
    v6 = "5: docker0    inet6 fd00:5:0:22::1/64 scope global \\       valid_lft forever preferred_lft forever\n" \
         "5: docker0    inet6 fe80::1/64 scope link \\       valid_lft forever preferred_lft forever\n"
    assert H.ipv6_addresses(IP_ADDR + v6) == ["fd00:5:0:22::1/64"] and H.ipv4_addresses(IP_ADDR + v6) == ["10.5.3.1/24"]
    assert H.docker0_problem(DUAL_ENV, ["10.5.3.1/24"], 1450, ["fd00:5:0:22::1/64"]) is None
    problem = H.docker0_problem(DUAL_ENV, ["10.5.3.1/24"], 1450, [])
    assert "fd00:5:0:22::1/64" in problem and "10.5.3.1/24" in problem
    assert H.docker0_problem(SUBNET_ENV, ["10.5.3.1/24"], 1472, ["fd00:5:0:22::1/64"]) is None  # left over: no matter


FILTER6 = ('-P FORWARD ACCEPT\n-A FORWARD -s fd00:5::/48 -m comment --comment "overlay.flannel forward" -j ACCEPT\n'
           '-A FORWARD -d fd00:5::/48 -m comment --comment "overlay.flannel forward" -j ACCEPT\n')
NAT6 = '-A POSTROUTING -s fd00:5::/48 ! -d fd00:5::/48 -m comment --comment "overlay.flannel ip-masq" -j MASQUERADE\n'
RULES6 = [dict(family="ipv6", table="filter", chain="FORWARD", source="fd00:5::/48", jump="ACCEPT",
               comment="overlay.flannel forward", present=True),
          dict(family="ipv6", table="filter", chain="FORWARD", destination="fd00:5::/48", jump="ACCEPT",
               comment="overlay.flannel forward", present=True),
          dict(family="ipv6", table="nat", chain="POSTROUTING", source="fd00:5::/48", destination="!fd00:5::/48",
               jump="MASQUERADE", comment="overlay.flannel ip-masq", present=True)]


def test_ip6tables_rules_beside_the_iptables_ones():
    v4 = {"filter": FILTER, "nat": NAT}
    # none of the IPv6 rules yet: all three applied, the IPv4 ones left as they are
    plan = H.iptables_plan(dict(v4, ipv6={"filter": "-P FORWARD ACCEPT\n", "nat": ""}), RULES + RULES6,
                           "10.5.0.0/16", "fd00:5::/48")
    assert plan == dict(apply=RULES6, stale=[])
    # in place (ip6tables prints the network compressed, the role may spell it otherwise)
    spelled = [dict(r, **{k: v.replace("fd00:5::/48", "fd00:0005:0::/48") for k, v in r.items()
                          if k in ("source", "destination")}) for r in RULES6]
    assert H.iptables_plan(dict(v4, ipv6={"filter": FILTER6, "nat": NAT6}), RULES + spelled, "10.5.0.0/16",
                           "fd00:5:0::/48") == dict(apply=[], stale=[])
    # an IPv4 rule of the same chain does not stand for the IPv6 one
    assert H.iptables_plan(dict(v4, ipv6={"filter": "", "nat": ""}), RULES6[:1], "10.5.0.0/16",
                           "fd00:5::/48")["apply"] == RULES6[:1]


def test_ip6tables_rules_of_an_overlay_that_is_ipv4_only_again_are_stale():
    listed = {"filter": FILTER, "nat": NAT, "ipv6": {"filter": FILTER6, "nat": NAT6}}
    plan = H.iptables_plan(listed, RULES, "10.5.0.0/16")
    assert plan["apply"] == [] and [(r["family"], r["table"]) for r in plan["stale"]] == \
        [("ipv6", "filter"), ("ipv6", "filter"), ("ipv6", "nat")]
    assert plan["stale"][2]["destination"] == "!fd00:5::/48" and plan["stale"][2]["line"] == NAT6.strip()
    # another IPv6 network: its rules are stale, the IPv4 ones kept
    assert len(H.iptables_plan(listed, RULES, "10.5.0.0/16", "fd00:6::/48")["stale"]) == 3
    # retire: every rule of the overlay, both families
    assert len(H.iptables_plan(dict(listed, nat=NAT + MASQ), [], "")["stale"]) == 6


def test_the_forwarder_is_ready_only_with_the_leases_ipv6_half_in_subnet_env():
    unit = dict(active="active", status_text="vxlan: 2 peers")
    env = dict(FLANNEL_NETWORK="10.5.0.0/16", FLANNEL_SUBNET="10.5.3.1/24")
    dual = dict(env, FLANNEL_IPV6_NETWORK="fd00:5::/48", FLANNEL_IPV6_SUBNET="fd00:5:0:22::1/64")
    ready = ("10.5.0.0/16", "10.5.3.1/24", "vxlan")
    assert H.forwarder_not_ready(unit, dual, *ready, ipv6_subnet="fd00:5:0:22:0::1/64") == []
    assert H.forwarder_not_ready(unit, env, *ready, ipv6_subnet="") == []
    assert H.forwarder_not_ready(unit, env, *ready) == [] and H.forwarder_not_ready(unit, dual, *ready) == []
    # the network just turned dual-stack, the forwarder still runs without it; and back
    assert H.forwarder_not_ready(unit, env, *ready, ipv6_subnet="fd00:5:0:22::1/64") == \
        ["subnet.env has FLANNEL_IPV6_SUBNET=(none), not fd00:5:0:22::1/64"]
    assert H.forwarder_not_ready(unit, dual, *ready, ipv6_subnet="") == \
        ["subnet.env has FLANNEL_IPV6_SUBNET=fd00:5:0:22::1/64, not (none: the lease is IPv4-only)"]


def test_choose_ipv6_is_one_rule_for_the_roles_and_the_daemon():
    from flannel_forwarder.cli import global_ipv6
    assert H.choose_ipv6([("2001:db8::9", ["deprecated"]), ("fd00::5", ["tentative"]), ("2001:db8::7", [])]) == \
        "2001:db8::7"
    assert H.choose_ipv6([("2001:db8::9", ["deprecated", "dynamic"]), ("fd00::5", ["tentative"])]) == "fd00::5"
    assert H.choose_ipv6([("2001:db8::9", ["deprecated"])]) == "2001:db8::9"  # going away, but the only one
    assert H.choose_ipv6([("2001:db8::a", ["temporary"]), ("2001:db8::b", ["dadfailed"]), ("fe80::1", [])]) is None
    # the daemon reads the same from the kernel's flag bits
    assert global_ipv6([("2001:db8::a", 0, 0x01), ("2001:db8::9", 0, 0x20), ("2001:db8::7", 0, 0x80)]) == "2001:db8::7"
    assert global_ipv6([("2001:db8::a", 0, 0x01)]) is None


# --- the forwarder's privileges -------------------------------------------------------------------------------

@pytest.mark.parametrize("ping_range, gid, interval, backend_port, healthz_port, caps, dropin", [
    # Debian 12: the kernel's empty range; the drop-in admits the group, no CAP_NET_RAW
    ("1\t0", 998, 10.0, 8285, 0, ["CAP_NET_ADMIN"], True),
    # Debian 13: systemd admits every group
    ("0\t2147483647", 998, 10.0, 8285, 0, ["CAP_NET_ADMIN"], False),
    # the drop-in's own range, read back on the next run: kept
    ("998\t998", 998, 10.0, 8285, 0, ["CAP_NET_ADMIN"], True),
    # the host's own range without the group: left alone, the probes need a raw socket
    ("100 200", 998, 10.0, 8285, 0, ["CAP_NET_ADMIN", "CAP_NET_RAW"], False),
    # ... unless they are off
    ("100 200", 998, 0, 8285, 0, ["CAP_NET_ADMIN"], False),
    # the group not created yet (check mode): the empty range gets the drop-in all the same
    ("1 0", None, 10.0, 8285, 0, ["CAP_NET_ADMIN"], True),
    ("0 2147483647", None, 10.0, 8285, 0, ["CAP_NET_ADMIN", "CAP_NET_RAW"], False),
    # unreadable: no drop-in, a raw socket
    (None, 998, 10.0, 8285, 0, ["CAP_NET_ADMIN", "CAP_NET_RAW"], False),
    # ports below 1024, the backend's or the health server's (host-gw: no port)
    ("1 0", 998, 10.0, 1023, 0, ["CAP_NET_BIND_SERVICE", "CAP_NET_ADMIN"], True),
    ("1 0", 998, 10.0, None, 80, ["CAP_NET_BIND_SERVICE", "CAP_NET_ADMIN"], True),
    ("1 0", 998, 10.0, 1024, 1024, ["CAP_NET_ADMIN"], True),
    ("100 200", "998", "10.0", "443", "0", ["CAP_NET_BIND_SERVICE", "CAP_NET_ADMIN", "CAP_NET_RAW"], False),
])
def test_forwarder_privileges(ping_range, gid, interval, backend_port, healthz_port, caps, dropin):
    assert H.forwarder_privileges(ping_range, gid, interval, backend_port, healthz_port) == dict(
        capabilities=caps, ping_group_dropin=dropin)
