from flannel_forwarder.health import render_metrics
from flannel_forwarder.stats import Stats


def test_counters_and_snapshot():
    s = Stats()
    s.tx.packets += 3
    s.tx.bytes += 300
    s.tx.drop("no_route")
    s.tx.drop("no_route", 2)
    s.rx.drop("spoofed")
    s.icmp_unreachable += 1
    snap = s.snapshot()
    assert snap["tx"]["packets"] == 3 and snap["tx"]["bytes"] == 300
    assert snap["tx"]["drops"] == {"no_route": 3}
    assert snap["rx"]["drops"] == {"spoofed": 1}
    assert snap["icmp_unreachable"] == 1
    assert snap["way"] is None
    s.way = "numpy"
    assert s.snapshot()["way"] == "numpy"
    snap["tx"]["drops"]["no_route"] = 99  # a copy, not the live dict
    assert s.tx.drops["no_route"] == 3


def test_the_way_is_in_the_metrics():
    s = Stats()
    assert "datapath_way_info" not in render_metrics(s)
    s.way = "python"
    assert 'flannel_forwarder_datapath_way_info{way="python"} 1' in render_metrics(s)
