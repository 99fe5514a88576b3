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
    assert s.drops_total() == 4 and s.drops_total("rx") == 1
    snap["tx"]["drops"]["no_route"] = 99  # a copy, not the live dict
    assert s.tx.drops["no_route"] == 3
