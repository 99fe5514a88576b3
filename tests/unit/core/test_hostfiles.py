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
