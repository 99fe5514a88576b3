"""Garbage under <prefix>/ against a real etcd: the modules report it with the key named, skip it, never crash.

test_subnet_info.py and test_network_module.py already cover a key that is
no subnet, a value that is no JSON, a PublicIP that is a number and a
config that is no JSON; these are the other shapes hostile or broken
writers leave behind.
"""

from ansible_collections.overlay.flannel.plugins.module_utils.etcd_client import put
from support.modules import run_module

# key name under <prefix>/subnets/ -> (value, words the error must contain)
GARBAGE = {
    "10.5.1.0-99": ('{"PublicIP":"192.0.2.50","BackendType":"udp"}', "not a valid subnet"),
    "10.5.1.0-24/extra": ('{"PublicIP":"192.0.2.51","BackendType":"udp"}', "not of the form"),
    "10.5.1.7-24": ('{"PublicIP":"192.0.2.52","BackendType":"udp"}', "not a valid subnet"),  # host bits
    "10.5.4.0-24": ('["192.0.2.53", "udp"]', "not a JSON object"),
    "10.5.5.0-24": ('{"PublicIP":"192.0.2.54","BackendType":["udp"]}', "BackendType"),
    "10.5.6.0-24": ('{"PublicIP":"not-an-ip","BackendType":"udp"}', "PublicIP"),
    "10.5.7.0-24": ('{"PublicIP":"2001:db8::1","BackendType":"udp"}', "PublicIP"),
    "10.5.8.0-24": ('{"BackendType":"udp"}', "PublicIP"),
    "10.5.9.0-24": (b"\xff\xfe not utf-8", "UTF-8"),
    "10.5.10.0-24": ("null", "not a JSON object"),
}


def seed(client, prefix, extra=()):
    ops = [put(prefix + "/subnets/" + name, value) for name, (value, _words) in GARBAGE.items()]
    client.txn([], ops + [put(prefix + "/subnets/" + name, value) for name, value in extra])


def test_garbage_values_and_keys_are_reported_by_key_and_skipped(etcd, client):
    prefix = etcd["etcd_prefix"]
    assert not run_module("network", dict(etcd, network="10.5.0.0/16")).get("failed")
    assert run_module("subnet", dict(etcd, public_ip="192.0.2.1", subnet="10.5.2.0/24"))["changed"]
    seed(client, prefix)
    info = run_module("subnet_info", etcd)
    assert not info.get("failed"), info
    assert [e["subnet"] for e in info["leases"]] == ["10.5.2.0/24"]
    errors = {e["key"][len(prefix + "/subnets/"):]: e["error"] for e in info["invalid"]}
    assert set(errors) == set(GARBAGE)
    for name, (_value, words) in GARBAGE.items():
        assert words in errors[name], (name, errors[name])
    # New hosts get subnets of their own, never one whose key exists (whatever it holds).
    held = {"10.5.%d.0/24" % i for i in (2, 4, 5, 6, 7, 8, 9, 10)}
    for n in range(3, 6):
        res = run_module("subnet", dict(etcd, public_ip="192.0.2.%d" % n, previous_subnet="10.5.5.0/24"))
        assert res["changed"] and res["subnet"] not in held, res
        held.add(res["subnet"])
    # The existing host keeps its lease; the network module re-applies the same config as no change.
    assert run_module("subnet", dict(etcd, public_ip="192.0.2.1"))["changed"] is False
    again = run_module("network", dict(etcd, network="10.5.0.0/16"))
    assert not again.get("failed") and again["changed"] is False, again
    # A change of the range is refused over the readable leases only, and garbage does not crash it.
    moved = run_module("network", dict(etcd, network="10.6.0.0/16"))
    assert moved.get("failed") and "10.5.2.0/24" in moved["msg"], moved
    assert "10.5.4.0" not in moved["msg"]  # (a garbage value holds no lease to move)


def test_leases_that_claim_what_is_not_theirs(etcd, client):
    """Two keys with one PublicIP, a lease outside the network, one of another length."""
    prefix = etcd["etcd_prefix"]
    run_module("network", dict(etcd, network="10.5.0.0/16"))
    value = '{"PublicIP":"192.0.2.7","PublicIPv6":null,"BackendType":"udp","BackendData":null}'
    client.txn([], [put(prefix + "/subnets/10.5.3.0-24", value), put(prefix + "/subnets/10.5.4.0-24", value),
                    put(prefix + "/subnets/10.99.0.0-24", value.replace("192.0.2.7", "192.0.2.8")),
                    put(prefix + "/subnets/10.5.0.0-16", value.replace("192.0.2.7", "192.0.2.9"))])
    info = run_module("subnet_info", etcd)
    assert not info.get("failed") and {e["subnet"] for e in info["leases"]} == {
        "10.5.3.0/24", "10.5.4.0/24", "10.99.0.0/24", "10.5.0.0/16"}
    # The host with two keys ends up with exactly one lease.
    res = run_module("subnet", dict(etcd, public_ip="192.0.2.7"))
    assert not res.get("failed") and res["subnet"] in ("10.5.3.0/24", "10.5.4.0/24"), res
    mine = list(run_module("subnet_info", dict(etcd, public_ip="192.0.2.7"))["leases"])
    assert [e["subnet"] for e in mine] == [res["subnet"]]
    # (the other of its two keys is gone, so that subnet is free again)
    held = {res["subnet"]}
    # Hosts whose only key lies outside the network (or is a /16) get a proper subnet instead.
    for ip in ("192.0.2.8", "192.0.2.9"):
        res = run_module("subnet", dict(etcd, public_ip=ip))
        assert not res.get("failed") and res["subnet"].endswith("/24") and res["subnet"].startswith("10.5."), res
        assert res["subnet"] not in held, (res["subnet"], held)
        held.add(res["subnet"])
        left = run_module("subnet_info", dict(etcd, public_ip=ip))["leases"]
        assert [e["subnet"] for e in left] == [res["subnet"]], left


def test_garbage_config_shapes_are_reported_by_key(etcd, client, prefix):
    for text, words in (('["10.5.0.0/16"]', "object"), ('{"Network": 17}', "Network"),
                        ('{"Network": "10.5.0.0/16", "Backend": ["udp"]}', "Backend"),
                        ('{"Network": "10.5.0.0/16", "SubnetLen": "24"}', "SubnetLen"),
                        ('{"Network": "10.5.0.0/16", "Backend": {"Type": 5}}', "Type")):
        client.txn([], [put(prefix + "/config", text)])
        lease = run_module("subnet", dict(etcd, public_ip="192.0.2.10"))
        assert lease.get("failed") and prefix + "/config" in lease["msg"] and words in lease["msg"], (text, lease)
        info = run_module("subnet_info", etcd)
        assert not info.get("failed") and info["config"] is None and words in info["config_error"], (text, info)
        res = run_module("network", dict(etcd, network="10.5.0.0/16"))
        assert not res.get("failed") and res["changed"], (text, res)
