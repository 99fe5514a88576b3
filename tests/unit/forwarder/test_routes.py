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
