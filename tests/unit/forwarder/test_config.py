"""flannel-forwarder flags and FLANNELD_* variables."""

import pytest

from flannel_forwarder.config import SettingsError, parse


def test_defaults_match_flanneld():
    s, version = parse([], {})
    assert s.etcd_endpoints == ["http://127.0.0.1:2379"] and s.etcd_prefix == "/coreos.com/network"
    assert s.subnet_file == "/run/flannel/subnet.env" and s.subnet_lease_renew_margin == 60
    assert s.renew_margin_seconds == 3600 and s.port is None and s.tun_name == "flannel0"
    assert s.healthz_port == 0 and version is False


def test_environment_with_flanneld_names_and_flags_win():
    env = {"FLANNELD_ETCD_ENDPOINTS": "http://10.0.0.1:2379, http://10.0.0.2:2379",
           "FLANNELD_PUBLIC_IP": "192.0.2.10", "FLANNELD_SUBNET_LEASE_RENEW_MARGIN": "30",
           "FLANNELD_TUN_NAME": "flannel9", "FLANNELD_IP_MASQ": "true", "FLANNELD_ETCD_PREFIX": "/a/network"}
    s, _action = parse(["--etcd-prefix", "/b/network", "--port", "9000"], env)
    assert s.etcd_endpoints == ["http://10.0.0.1:2379", "http://10.0.0.2:2379"]
    assert s.public_ip == "192.0.2.10" and s.renew_margin_seconds == 1800
    assert s.tun_name == "flannel9" and s.ip_masq is True
    assert s.etcd_prefix == "/b/network" and s.port == 9000


@pytest.mark.parametrize("argv, env, words", [
    (["--public-ip", "host"], {}, "--public-ip / FLANNELD_PUBLIC_IP: 'host' is not an IPv4 address"),
    ([], {"FLANNELD_PORT": "0"}, "FLANNELD_PORT: 0 is outside 1..65535"),
    (["--healthz-port", "x"], {}, "not a whole number"),
    (["--log-level", "loud"], {}, "not one of debug"),
    (["--etcd-certfile", "/c.pem"], {}, "--etcd-certfile and --etcd-keyfile go together"),
    (["--no-such-flag"], {}, "unrecognized arguments"),
    ([], {"FLANNELD_ETCD_ENDPOINTS": " , "}, "no endpoint given"),
])
def test_bad_values_name_the_setting(argv, env, words):
    with pytest.raises(SettingsError) as err:
        parse(argv, env)
    assert words in str(err.value)


def test_settings_the_roles_pass_mtu_ttl_and_lease_state_file():
    s, _action = parse([], {"FLANNELD_MTU": "1400", "FLANNELD_SUBNET_LEASE_TTL": "0",
                            "FLANNELD_LEASE_STATE_FILE": "/var/lib/x/subnet"})
    assert (s.mtu, s.subnet_lease_ttl, s.lease_state_file) == (1400, 0, "/var/lib/x/subnet")
    d, _action = parse([], {})
    assert (d.mtu, d.subnet_lease_ttl, d.lease_state_file) == (0, 86400, "/var/lib/flannel-forwarder/subnet")


def test_one_mtu_for_tun_and_docker_defaults_to_underlay_less_28_and_refuses_too_large():
    from flannel_forwarder.cli import StartupError, choose_mtu
    assert choose_mtu(0, 1500, "eth0") == 1472
    assert choose_mtu(1400, 1500, "eth0") == 1400
    with pytest.raises(StartupError) as err:
        choose_mtu(1480, 1500, "eth0")
    assert "FLANNELD_MTU 1480 must lie in 576..1472" in str(err.value) and "eth0 has MTU 1500" in str(err.value)


def test_previous_subnet_from_subnet_env_else_the_state_file(tmp_path):
    from flannel_forwarder.cli import read_previous
    env, state = tmp_path / "subnet.env", tmp_path / "subnet"
    assert read_previous(str(env), str(state)) == (None, None)
    state.write_text("10.5.7.0/24\n")  # an IPv4-only host's file, as every earlier version wrote it
    assert [str(x) for x in read_previous(str(env), str(state))] == ["10.5.7.0/24", "None"]
    env.write_text("FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_SUBNET=10.5.9.1/24\n")
    assert [str(x) for x in read_previous(str(env), str(state))] == ["10.5.9.0/24", "None"]
    env.write_text("garbage")
    assert read_previous(str(env), "") == (None, None)


def test_previous_ipv6_subnet_from_subnet_env_else_the_state_files_second_line(tmp_path):
    from flannel_forwarder.cli import read_previous
    from ansible_collections.overlay.flannel.plugins.module_utils.hostfiles import render_lease_state
    from ansible_collections.overlay.flannel.plugins.module_utils.hoststate import previous_subnets
    import ipaddress
    env, state = tmp_path / "subnet.env", tmp_path / "subnet"
    text = render_lease_state(ipaddress.ip_network("10.5.7.0/24"), ipaddress.ip_network("fd00:5:0:7::/64"))
    assert text == "10.5.7.0/24\nfd00:5:0:7::/64\n"
    state.write_text(text)
    assert [str(x) for x in read_previous(str(env), str(state))] == ["10.5.7.0/24", "fd00:5:0:7::/64"]
    assert previous_subnets("", text) == ["10.5.7.0/24"]  # the probe reads the first line as ever
    # subnet.env wins for each half it names; a half it lacks comes from the state file
    env.write_text("FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_SUBNET=10.5.9.1/24\n")
    assert [str(x) for x in read_previous(str(env), str(state))] == ["10.5.9.0/24", "fd00:5:0:7::/64"]
    env.write_text("FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_SUBNET=10.5.9.1/24\nFLANNEL_IPV6_NETWORK=fd00:5::/48\n"
                   "FLANNEL_IPV6_SUBNET=fd00:5:0:9::1/64\n")
    assert [str(x) for x in read_previous(str(env), str(state))] == ["10.5.9.0/24", "fd00:5:0:9::/64"]
    state.write_text("10.5.7.0/24\ngarbage\n")
    assert [str(x) for x in read_previous("", str(state))] == ["10.5.7.0/24", "None"]


def test_public_ipv6_default_is_the_underlays_global_address():
    from flannel_forwarder.cli import global_ipv6
    link_local = ("fe80::1", 253, 0)
    assert global_ipv6([link_local]) is None
    assert global_ipv6([]) is None
    assert global_ipv6([link_local, ("fd00:a::2", 0, 0x80)]) == "fd00:a::2"
    # a deprecated address (past its preferred lifetime) only when there is no other
    assert global_ipv6([("2001:db8::9", 0, 0x20), ("2001:db8::7", 0, 0)]) == "2001:db8::7"
    assert global_ipv6([("2001:db8::9", 0, 0x20)]) == "2001:db8::9"
    assert global_ipv6([("fd00::5", 200, 0)]) is None  # site or host scope: not global


def test_public_ipv6_flag_and_variable():
    from flannel_forwarder.config import SettingsError, parse
    assert parse(["--public-ipv6", "fd00:a::0002"], {})[0].public_ipv6 == "fd00:a::2"
    assert parse([], {"FLANNELD_PUBLIC_IPV6": "2001:db8::1"})[0].public_ipv6 == "2001:db8::1"
    assert parse([], {})[0].public_ipv6 is None
    with pytest.raises(SettingsError) as err:
        parse(["--public-ipv6", "10.0.0.1"], {})
    assert "--public-ipv6" in str(err.value) and "not an IPv6 address" in str(err.value)


def test_the_etcd_client_gets_each_setting_and_the_daemons_names_for_its_hints():
    from flannel_forwarder.config import etcd_client_options
    env = {"FLANNELD_ETCD_CAFILE": "/ca.pem", "FLANNELD_ETCD_USERNAME": "flannel", "FLANNELD_ETCD_PASSWORD": "pw"}
    s, _action = parse(["--etcd-endpoints", "https://10.0.0.1:2379,https://10.0.0.2:2379", "--etcd-certfile", "/c.pem",
                        "--etcd-keyfile", "/k.pem"], env)
    assert etcd_client_options(s) == dict(
        endpoints=["https://10.0.0.1:2379", "https://10.0.0.2:2379"], ca_cert="/ca.pem", client_cert="/c.pem",
        client_key="/k.pem", user="flannel", password="pw",
        setting_names={"ca_cert": "--etcd-cafile / FLANNELD_ETCD_CAFILE",
                       "client_cert": "--etcd-certfile / FLANNELD_ETCD_CERTFILE",
                       "client_key": "--etcd-keyfile / FLANNELD_ETCD_KEYFILE"})


def test_renew_margin_in_seconds_is_exact_and_wins_over_the_minutes():
    from_env, action = parse([], {"FLANNELD_SUBNET_LEASE_RENEW_MARGIN_SECONDS": "3601"})
    assert from_env.renew_margin_seconds == 3601 and action is False
    from_flag = parse(["--subnet-lease-renew-margin-seconds", "90"], {})[0]
    assert from_flag.renew_margin_seconds == 90
    both = parse(["--subnet-lease-renew-margin", "2"], {"FLANNELD_SUBNET_LEASE_RENEW_MARGIN_SECONDS": "90"})[0]
    assert both.renew_margin_seconds == 90
    assert parse(["--subnet-lease-renew-margin", "2"], {})[0].renew_margin_seconds == 120
