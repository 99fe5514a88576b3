import ipaddress

from ansible_collections.overlay.flannel.plugins.module_utils import hostfiles as h


def test_subnet_env_and_docker_opts_match_flannel():
    env = h.render_subnet_env("4.0.0.0/16", ipaddress.IPv4Network("4.0.34.0/24"), 1472, False)
    assert env == "FLANNEL_NETWORK=4.0.0.0/16\nFLANNEL_SUBNET=4.0.34.1/24\nFLANNEL_MTU=1472\nFLANNEL_IPMASQ=false\n"
    assert h.render_docker_opts(env) == (
        'DOCKER_OPT_BIP="--bip=4.0.34.1/24"\n'
        'DOCKER_OPT_IPMASQ="--ip-masq=true"\n'
        'DOCKER_OPT_MTU="--mtu=1472"\n'
        'DOCKER_NETWORK_OPTIONS=" --bip=4.0.34.1/24 --ip-masq=true --mtu=1472 "\n')


def test_ipmasq_inversion():
    env = h.render_subnet_env("4.0.0.0/16", ipaddress.IPv4Network("4.0.34.0/24"), 1472, True)
    assert "FLANNEL_IPMASQ=true" in env
    assert '--ip-masq=false' in h.render_docker_opts(env)


def test_previous_subnet():
    assert h.previous_subnet("FLANNEL_SUBNET=10.5.34.1/24\n") == ipaddress.IPv4Network("10.5.34.0/24")
    assert h.previous_subnet('# x\nFLANNEL_SUBNET="10.5.34.1/24"\n') == ipaddress.IPv4Network("10.5.34.0/24")
    assert h.previous_subnet("FLANNEL_SUBNET=garbage\n") is None
    assert h.previous_subnet("") is None


def test_dual_stack_subnet_env_and_docker_opts():
    env = h.render_subnet_env("10.5.0.0/16", ipaddress.IPv4Network("10.5.34.0/24"), 1450, False, "fd00:5::/48",
                              ipaddress.IPv6Network("fd00:5:0:22::/64"))
    # flanneld's names, values and order: the IPv6 lines after the IPv4 ones, FLANNEL_MTU the IPv4 device's
    assert env == ("FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_SUBNET=10.5.34.1/24\nFLANNEL_IPV6_NETWORK=fd00:5::/48\n"
                   "FLANNEL_IPV6_SUBNET=fd00:5:0:22::1/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n")
    assert h.previous_subnet6(env) == ipaddress.IPv6Network("fd00:5:0:22::/64")
    assert h.render_docker_opts(env) == (
        'DOCKER_OPT_BIP="--bip=10.5.34.1/24"\n'
        'DOCKER_OPT_IPV6="--ipv6 --fixed-cidr-v6=fd00:5:0:22::/64"\n'
        'DOCKER_OPT_IPMASQ="--ip-masq=true"\n'
        'DOCKER_OPT_MTU="--mtu=1450"\n'
        'DOCKER_NETWORK_OPTIONS=" --bip=10.5.34.1/24 --ipv6 --fixed-cidr-v6=fd00:5:0:22::/64 --ip-masq=true '
        '--mtu=1450 "\n')
    # an IPv6 network without a subnet (or none) writes the IPv4-only file, byte for byte
    assert h.render_subnet_env("10.5.0.0/16", ipaddress.IPv4Network("10.5.34.0/24"), 1450, False, "fd00:5::/48") == \
        h.render_subnet_env("10.5.0.0/16", ipaddress.IPv4Network("10.5.34.0/24"), 1450, False)
    assert h.previous_subnet6("FLANNEL_IPV6_SUBNET=garbage\n") is None


def test_lease_state_file_both_ways():
    v4, v6 = ipaddress.IPv4Network("10.5.7.0/24"), ipaddress.IPv6Network("fd00:5:0:7::/64")
    assert h.render_lease_state(v4) == "10.5.7.0/24\n"  # an IPv4-only host's, as ever
    assert h.parse_lease_state(h.render_lease_state(v4)) == (v4, None)
    assert h.parse_lease_state(h.render_lease_state(v4, v6)) == (v4, v6)
    assert h.parse_lease_state("garbage\nfd00:5:0:7::/64\n") == (None, v6)
    assert h.parse_lease_state("") == (None, None)
