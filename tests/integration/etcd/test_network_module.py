"""overlay.flannel.network against a real etcd."""

import json

from support.modules import run_module


def stored(client, prefix):
    kv = client.get(prefix + "/config")
    return None if kv is None else json.loads(kv.value)


def refusal(res):
    """A refused run's message, with the type of a wrong value spelled as ansible-core 2.19 does
    ("is of type str"; 2.16 says "is of type <class 'str'>")."""
    return res["msg"].replace("<class 'str'>", "str")


def test_create_then_unchanged_and_stored_in_flannel_format(etcd, client, prefix):
    first = run_module("network", dict(etcd, network="10.5.0.0/16"))
    assert first["changed"] is True, first
    assert stored(client, prefix) == {"Network": "10.5.0.0/16", "SubnetLen": 24, "SubnetMin": "10.5.1.0",
                                      "SubnetMax": "10.5.255.0", "Backend": {"Type": "udp", "Port": 8285}}
    second = run_module("network", dict(etcd, network="10.5.0.0/16"))
    assert second["changed"] is False, second
    assert second["config"] == first["config"]


def test_idempotent_by_meaning_not_by_string(etcd, client, prefix):
    client.txn([], [client_put(prefix + "/config", '{ "Backend": {"Type":"udp"},\n  "Network": "10.5.0.0/16" }')])
    res = run_module("network", dict(etcd, network="10.5.0.0/16", subnet_len=24, backend={"type": "udp", "port": 8285}))
    assert res["changed"] is False, res
    # The stored text was left exactly as it was.
    assert client.get(prefix + "/config").value == b'{ "Backend": {"Type":"udp"},\n  "Network": "10.5.0.0/16" }'


def client_put(key, value):
    from ansible_collections.overlay.flannel.plugins.module_utils.etcd_client import put
    return put(key, value)


def test_check_mode_writes_nothing_and_diff_shows_before_after(etcd, client, prefix):
    res = run_module("network", dict(etcd, network="10.5.0.0/16"), check=True, diff=True)
    assert res["changed"] is True
    assert client.get(prefix + "/config") is None
    assert res["diff"]["before"] == ""
    assert json.loads(res["diff"]["after"])["Network"] == "10.5.0.0/16"
    run_module("network", dict(etcd, network="10.5.0.0/16"))
    res = run_module("network", dict(etcd, network="10.5.0.0/16", subnet_len=26), check=True, diff=True)
    assert res["changed"] is True
    assert json.loads(res["diff"]["before"])["SubnetLen"] == 24
    assert json.loads(res["diff"]["after"])["SubnetLen"] == 26
    assert stored(client, prefix)["SubnetLen"] == 24


def test_refuses_change_that_strands_leases_unless_forced(etcd, client, prefix):
    run_module("network", dict(etcd, network="10.5.0.0/16"))
    lease = run_module("subnet", dict(etcd, public_ip="192.0.2.10", subnet="10.5.200.0/24"))
    assert lease["changed"], lease
    res = run_module("network", dict(etcd, network="10.5.0.0/16", subnet_max="10.5.100.0"))
    assert res["failed"]
    assert "1 existing lease(s) would not fit" in res["msg"]
    assert "10.5.200.0/24 (192.0.2.10)" in res["msg"]
    assert stored(client, prefix)["SubnetMax"] == "10.5.255.0"
    res = run_module("network", dict(etcd, network="10.5.0.0/16", subnet_len=25))
    assert res["failed"] and "not /25" in res["msg"]
    res = run_module("network", dict(etcd, network="10.5.0.0/16", subnet_max="10.5.100.0", force=True))
    assert res["changed"] and res["stranded_leases"] == [{"subnet": "10.5.200.0/24", "public_ip": "192.0.2.10"}]
    assert stored(client, prefix)["SubnetMax"] == "10.5.100.0"


def test_absent_refuses_with_leases_and_removes_when_empty(etcd, client, prefix):
    run_module("network", dict(etcd, network="10.5.0.0/16"))
    run_module("subnet", dict(etcd, public_ip="192.0.2.10"))
    res = run_module("network", dict(etcd, state="absent"))
    assert res["failed"] and "1 lease(s) still use it" in res["msg"]
    run_module("subnet", dict(etcd, public_ip="192.0.2.10", state="absent"))
    res = run_module("network", dict(etcd, state="absent"), diff=True)
    assert res["changed"] and res["diff"]["after"] == ""
    assert client.get(prefix + "/config") is None
    assert run_module("network", dict(etcd, state="absent"))["changed"] is False


def test_bad_input_is_refused_before_anything_is_written(etcd, client, prefix):
    cases = [
        (dict(network="10.5.0.0"), "not an IPv4 CIDR"),
        (dict(network="10.5.1.0/16"), "host bits set (did you mean 10.5.0.0/16?)"),
        (dict(network="10.5.0.0/16", subnet_len=31), "SubnetLen must be less than /31"),
        (dict(network="10.5.0.0/16", subnet_min="10.6.0.0"), "SubnetMin 10.6.0.0 is not in the range of the Network"),
        (dict(network="10.5.0.0/16", subnet_max="10.5.3.7"), "not on a SubnetLen boundary"),
        (dict(network="10.5.0.0/16", backend={"port": "http"}), "argument 'port' is of type str found in 'backend'"),
        (dict(network="10.5.0.0/16", backend={"port": 70000}),
         "Backend.Port of the udp backend must be an integer in 1..65535, got 70000"),
        (dict(network="10.5.0.0/16", subnet_len="twenty"), "subnet_len"),
        (dict(state="present"), "network"),
    ]
    for args, words in cases:
        res = run_module("network", dict(etcd, **args))
        assert res.get("failed"), (args, res)
        assert words in refusal(res), (args, res["msg"])
    assert client.get(prefix + "/config") is None


def test_garbage_config_is_reported_and_can_be_replaced(etcd, client, prefix):
    client.txn([], [client_put(prefix + "/config", "{this is not json")])
    lease = run_module("subnet", dict(etcd, public_ip="192.0.2.10"))
    assert lease["failed"] and "invalid" in lease["msg"] and "not valid JSON" in lease["msg"]
    info = run_module("subnet_info", etcd)
    assert info["config"] is None and "not valid JSON" in info["config_error"]
    res = run_module("network", dict(etcd, network="10.5.0.0/16"), diff=True)
    assert res["changed"] and res["diff"]["before"].startswith("{this is not json")
    assert stored(client, prefix)["Network"] == "10.5.0.0/16"


VXLAN_STORED = {"Type": "vxlan", "VNI": 1, "Port": 0, "GBP": False, "Learning": False, "DirectRouting": False}


def test_vxlan_network_stored_with_every_default_written_out(etcd, client, prefix):
    res = run_module("network", dict(etcd, network="10.5.0.0/16", backend={"type": "vxlan"}))
    assert res["changed"] is True, res
    assert stored(client, prefix) == {"Network": "10.5.0.0/16", "SubnetLen": 24, "SubnetMin": "10.5.1.0",
                                      "SubnetMax": "10.5.255.0", "Backend": VXLAN_STORED}
    assert res["config"]["Backend"] == VXLAN_STORED
    # The same config again, also as flanneld's spellings or written-out defaults: nothing to do.
    revision = client.get(prefix + "/config").mod_revision
    for backend in ({"type": "vxlan"}, {"Type": "vxlan", "VNI": 1},
                    {"type": "vxlan", "vni": 1, "port": 0, "gbp": False, "learning": False, "direct_routing": False}):
        again = run_module("network", dict(etcd, network="10.5.0.0/16", backend=backend))
        assert again["changed"] is False, (backend, again)
        assert again["config"]["Backend"] == VXLAN_STORED
    assert client.get(prefix + "/config").mod_revision == revision


def test_vxlan_templated_strings_mean_the_same(etcd, client, prefix):
    backend = {"type": "vxlan", "vni": 4096, "port": 4789, "direct_routing": True}
    first = run_module("network", dict(etcd, network="10.5.0.0/16", backend=backend))
    assert first["changed"] is True, first
    want = dict(VXLAN_STORED, VNI=4096, Port=4789, DirectRouting=True)
    assert stored(client, prefix)["Backend"] == want
    # What a template renders: strings. Converted before validation, so this is no change.
    templated = {"type": "vxlan", "vni": "4096", "port": "4789", "direct_routing": "true", "gbp": "false"}
    res = run_module("network", dict(etcd, network="10.5.0.0/16", backend=templated))
    assert res["changed"] is False, res
    # ... while another VNI is one.
    res = run_module("network", dict(etcd, network="10.5.0.0/16", backend=dict(templated, vni="7")), check=True,
                     diff=True)
    assert res["changed"] is True
    assert json.loads(res["diff"]["before"])["Backend"]["VNI"] == 4096
    assert json.loads(res["diff"]["after"])["Backend"]["VNI"] == 7
    assert stored(client, prefix)["Backend"] == want


def test_vxlan_stored_by_hand_without_defaults_is_the_same(etcd, client, prefix):
    text = '{"Network": "10.5.0.0/16", "Backend": {"Type": "vxlan"}}'
    client.txn([], [client_put(prefix + "/config", text)])
    res = run_module("network", dict(etcd, network="10.5.0.0/16", backend={"type": "vxlan", "vni": "1"}))
    assert res["changed"] is False, res
    assert client.get(prefix + "/config").value == text.encode()


def test_host_gw_network_stored(etcd, client, prefix):
    res = run_module("network", dict(etcd, network="10.5.0.0/16", backend={"type": "host-gw"}))
    assert res["changed"] is True, res
    assert stored(client, prefix)["Backend"] == {"Type": "host-gw"}
    assert run_module("network", dict(etcd, network="10.5.0.0/16", backend={"Type": "host-gw"}))["changed"] is False


def test_backend_type_change_is_a_change(etcd, client, prefix):
    run_module("network", dict(etcd, network="10.5.0.0/16"))
    res = run_module("network", dict(etcd, network="10.5.0.0/16", backend={"type": "vxlan", "vni": 3}), diff=True)
    assert res["changed"] is True, res
    assert json.loads(res["diff"]["before"])["Backend"] == {"Type": "udp", "Port": 8285}
    assert stored(client, prefix)["Backend"] == dict(VXLAN_STORED, VNI=3)


def test_bad_backend_options_are_refused_by_name_and_nothing_written(etcd, client, prefix):
    cases = [
        # A typo: no option of any backend.
        ({"type": "vxlan", "vnii": 2}, "backend.vnii"),
        ({"type": "vxlan", "MacPrefix": "0E:2A"}, "backend.MacPrefix"),
        # An option of another backend type.
        ({"type": "udp", "vni": 2}, "VNI: not an option of the udp backend (its options: Port)"),
        ({"type": "host-gw", "port": 8285}, "Port: not an option of the host-gw backend (its options: none)"),
        ({"type": "host-gw", "direct_routing": True}, "DirectRouting: not an option of the host-gw backend"),
        # Values.
        ({"type": "vxlan", "vni": 16777216}, "Backend.VNI of the vxlan backend must be an integer in 0..16777215"),
        ({"type": "vxlan", "vni": "-1"}, "Backend.VNI of the vxlan backend must be an integer in 0..16777215"),
        ({"type": "vxlan", "vni": "one"}, "argument 'vni' is of type str found in 'backend'"),
        ({"type": "vxlan", "port": 65536}, "Backend.Port of the vxlan backend must be an integer in 0..65535"),
        ({"type": "vxlan", "learning": "perhaps"}, "argument 'learning' is of type str found in 'backend'"),
        ({"type": "ipip"}, "value of type must be one of: udp, vxlan, host-gw, got: ipip"),
    ]
    for backend, words in cases:
        res = run_module("network", dict(etcd, network="10.5.0.0/16", backend=backend))
        assert res.get("failed"), (backend, res)
        assert words in refusal(res), (backend, res["msg"])
    assert client.get(prefix + "/config") is None
    # Nor is a stored config touched by a refused one.
    run_module("network", dict(etcd, network="10.5.0.0/16", backend={"type": "vxlan"}))
    revision = client.get(prefix + "/config").mod_revision
    res = run_module("network", dict(etcd, network="10.5.0.0/16", backend={"type": "vxlan", "vni": 16777216}))
    assert res.get("failed") and "Backend.VNI" in res["msg"], res
    assert client.get(prefix + "/config").mod_revision == revision
    assert stored(client, prefix)["Backend"] == VXLAN_STORED
