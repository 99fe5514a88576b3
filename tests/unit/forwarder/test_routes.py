import ipaddress
import threading

import pytest

from flannel_forwarder.routes import Peer, PeerTable


def ip(s):
    return int(ipaddress.IPv4Address(s))


def table():
    return PeerTable({
        "10.5.2.0/24": "10.213.0.12:8285",
        "10.5.3.0/24": ("10.213.0.13", 8285),
        "10.5.3.128/25": Peer("10.213.0.14", 9000),
        "10.6.0.0/16": "10.213.0.15:8285",
    })


def test_lookup_longest_prefix():
    t = table()
    assert t.lookup(ip("10.5.2.7")) == ("10.213.0.12", 8285)
    assert t.lookup(ip("10.5.3.7")) == ("10.213.0.13", 8285)
    assert t.lookup(ip("10.5.3.200")) == ("10.213.0.14", 9000)
    assert t.lookup(ip("10.6.200.1")) == ("10.213.0.15", 8285)
    assert t.lookup(ip("10.5.4.1")) is None
    assert t.lookup_address("10.5.2.0") == ("10.213.0.12", 8285)


def test_anti_spoofing():
    t = table()
    assert t.accepts("10.213.0.12", ip("10.5.2.9"))
    assert t.accepts("10.213.0.12", "10.5.2.255")
    assert not t.accepts("10.213.0.12", ip("10.5.3.9"))  # someone else's subnet
    assert not t.accepts("10.213.0.99", ip("10.5.2.9"))  # unknown sender
    assert t.accepts("10.213.0.14", ip("10.5.3.129"))
    assert not t.accepts("10.213.0.14", ip("10.5.3.1"))
    assert t.sender_subnets("10.213.0.77") is None


def test_update_remove_replace():
    t = table()
    t.update("10.5.9.0/24", "10.213.0.19:8285")
    assert t.lookup(ip("10.5.9.1")) == ("10.213.0.19", 8285)
    t.update("10.5.9.0/24", "10.213.0.20:8285")
    assert t.lookup(ip("10.5.9.1")) == ("10.213.0.20", 8285)
    assert not t.accepts("10.213.0.19", ip("10.5.9.1"))
    assert t.remove("10.5.9.0/24")
    assert not t.remove("10.5.9.0/24")
    assert t.lookup(ip("10.5.9.1")) is None
    t.replace({"10.7.0.0/24": "10.213.0.30:1"})
    assert len(t) == 1 and t.lookup(ip("10.5.2.1")) is None
    assert "10.7.0.0/24" in t


def test_rejects_bad_input():
    with pytest.raises(ValueError):
        PeerTable({"10.5.2.1/24": "10.213.0.12:8285"})  # host bits set
    with pytest.raises(ValueError):
        PeerTable({"10.5.2.0/24": "10.213.0.12:0"})
    with pytest.raises(ValueError):
        PeerTable({"10.5.2.0/24": "nonsense:8285"})


def test_concurrent_updates_lose_nothing():
    t = PeerTable()

    def add(base):
        for i in range(100):
            t.update(f"10.{base}.{i}.0/24", f"10.213.{base}.{i}:8285")

    threads = [threading.Thread(target=add, args=(b,)) for b in range(4)]
    for th in threads:
        th.start()
    while any(th.is_alive() for th in threads):
        t.lookup(ip("10.1.1.1"))  # readers never block or crash mid-swap
    for th in threads:
        th.join()
    assert len(t) == 400


def _reference(peers):
    """What the table must answer, computed the slow and obvious way from {network: Peer}."""
    nets = {ipaddress.IPv4Network(n): Peer(*p) for n, p in peers.items()}

    def lookup(dst):
        hits = [n for n in nets if ipaddress.IPv4Address(dst) in n]
        return nets[max(hits, key=lambda n: n.prefixlen)].sockaddr if hits else None

    def accepts(public_ip, src):
        return any(p.public_ip == public_ip and ipaddress.IPv4Address(src) in n for n, p in nets.items())

    return lookup, accepts


def test_apply_sets_and_removes_in_one_swap():
    t = table()
    before = t._snap
    old_lookup = t.lookup  # a data path loop binds this once; it must see the new table
    removed = t.apply({"10.5.2.0/24": None, "10.5.9.0/24": "10.213.0.19:8285", "10.5.77.0/24": None,
                       "10.5.3.0/24": ("10.213.0.33", 8285)})
    assert removed == [ipaddress.IPv4Network("10.5.2.0/24")]  # 10.5.77.0/24 was never there
    assert old_lookup(ip("10.5.9.1")) == ("10.213.0.19", 8285)
    assert t.lookup(ip("10.5.2.1")) is None and t.sender_subnets("10.213.0.12") is None
    assert t.lookup(ip("10.5.3.1")) == ("10.213.0.33", 8285)
    assert t.accepts("10.213.0.33", ip("10.5.3.1")) and not t.accepts("10.213.0.13", ip("10.5.3.1"))
    # the snapshot readers held before is untouched (copy on write)
    assert before.peers[ipaddress.IPv4Network("10.5.2.0/24")] == Peer("10.213.0.12", 8285)
    assert before.by_len[-1][1][ip("10.6.0.0")] == ("10.213.0.15", 8285)
    assert 4 == len(before.peers) and ip("10.5.9.0") not in before.by_len[1][1]
    # a list of pairs: the last one of a subnet counts; a no-op keeps the snapshot
    assert t.apply([("10.5.9.0/24", "10.213.0.1:1"), ("10.5.9.0/24", None)]) == [ipaddress.IPv4Network("10.5.9.0/24")]
    snap = t._snap
    assert t.apply({"10.5.3.0/24": ("10.213.0.33", 8285), "10.5.200.0/24": None}) == []
    assert t._snap is snap
    with pytest.raises(ValueError):
        t.apply({"10.5.9.0/24": "10.213.0.1:1", "10.5.10.1/24": "10.213.0.2:1"})  # nothing applied on bad input
    assert t.lookup(ip("10.5.9.1")) is None


def test_removing_the_last_subnet_of_a_length_and_of_a_sender():
    t = table()
    t.remove("10.5.3.128/25")
    assert t.lookup(ip("10.5.3.200")) == ("10.213.0.13", 8285)  # the /24 under it now answers
    assert t.sender_subnets("10.213.0.14") is None
    assert sorted(len(tb) for _m, tb in t._snap.by_len) == [1, 2]  # no empty /25 table left behind
    t.update("10.5.3.128/25", "10.213.0.13:8285")  # a second subnet of one host
    assert sorted(t.sender_subnets("10.213.0.13")) == [(ip("10.5.3.0"), ip("255.255.255.0")),
                                                       (ip("10.5.3.128"), ip("255.255.255.128"))]
    t.update("10.5.3.0/24", "10.213.0.99:8285")  # the host moves off one of them
    assert t.sender_subnets("10.213.0.13") == ((ip("10.5.3.128"), ip("255.255.255.128")),)
    assert t.accepts("10.213.0.99", ip("10.5.3.1")) and not t.accepts("10.213.0.13", ip("10.5.3.1"))


def test_random_changes_match_a_table_built_from_scratch():
    import random

    rng = random.Random(8)
    nets = ["10.5.%d.0/24" % i for i in range(12)] + ["10.5.%d.128/25" % i for i in range(4)] + ["10.5.0.0/16"]
    hosts = ["10.213.0.%d" % i for i in range(1, 7)]
    t, model = PeerTable(), {}
    for _round in range(300):
        changes = {}
        for _change in range(rng.randint(1, 5)):
            n = rng.choice(nets)
            changes[n] = None if rng.random() < 0.3 else (rng.choice(hosts), rng.choice((8285, 9000)))
        removed = t.apply(changes)
        assert sorted(removed) == sorted(ipaddress.IPv4Network(n) for n, p in changes.items()
                                         if p is None and n in model)
        for n, p in changes.items():
            if p is None:
                model.pop(n, None)
            else:
                model[n] = p
        assert t.snapshot() == {ipaddress.IPv4Network(n): Peer(*p) for n, p in model.items()}
        fresh = PeerTable(dict(model))
        assert sorted(t._snap.senders) == sorted(fresh._snap.senders)
        assert all(sorted(t._snap.senders[h]) == sorted(fresh._snap.senders[h]) for h in fresh._snap.senders)
        lookup, accepts = _reference(model)
        for _probe in range(20):
            dst = ip("10.5.0.0") + rng.randrange(16 * 256)
            assert t.lookup(dst) == lookup(dst)
            h = rng.choice(hosts)
            assert t.accepts(h, dst) == accepts(h, dst)
