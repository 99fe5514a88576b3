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
    s, _ = parse(["--etcd-prefix", "/b/network", "--port", "9000"], env)
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
