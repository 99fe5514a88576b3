"""The suite's time ledger (tests/support/ledger.py): entries recorded, the summary that ends `make test`."""

import json
import os
import re
import subprocess
import sys

from support import ledger

# pytest's closing line, which CI reads: the summary must print nothing of this shape
PYTEST_CLOSING = re.compile(r"\d+ (passed|failed)|=+ .* in [\d.]+s")


def entries(tmp_path, monkeypatch):
    monkeypatch.setenv(ledger.ENV, str(tmp_path / "ledger.jsonl"))
    monkeypatch.delenv(ledger.PHASE_ENV, raising=False)
    ledger.record("phase", "pytest (unit, integration, cluster)", 300, rc=0, phase="pytest", test=None)
    ledger.record("phase", "ansible-lint", 40, rc=2, phase="ansible-lint", test=None)
    ledger.record("test", "tests/cluster/test_site.py::test_a", 120, test="tests/cluster/test_site.py::test_a",
                  outcome="ok")
    ledger.record("test", "tests/unit/core/test_x.py::test_b", 0.5, test="tests/unit/core/test_x.py::test_b",
                  outcome="failed in call")
    ledger.record("playbook", "site.yml", 30, rc=0, changed=0, test="tests/cluster/test_site.py::test_a")
    ledger.record("playbook", "site.yml -e flannel_mtu=1400", 45, rc=0, changed=7,
                  test="tests/cluster/test_site.py::test_a")
    ledger.record("reboot", "flh3", 20, test="tests/cluster/test_site.py::test_a")
    with ledger.timed("wait", "the forwarder to restart", test="tests/cluster/test_site.py::test_a"):
        pass
    return ledger.read()


def test_entries_carry_their_kind_test_and_phase(tmp_path, monkeypatch):
    got = entries(tmp_path, monkeypatch)
    assert [e["kind"] for e in got] == ["phase", "phase", "test", "test", "playbook", "playbook", "reboot", "wait"]
    assert got[4]["phase"] == "cluster" and got[3]["phase"] == "unit"
    assert got[5]["changed"] == 7 and got[4]["test"] == "tests/cluster/test_site.py::test_a"
    assert got[7]["seconds"] < 1


def test_phase_follows_the_environment_inside_pytest(tmp_path, monkeypatch):
    monkeypatch.setenv(ledger.ENV, str(tmp_path / "ledger.jsonl"))
    monkeypatch.setenv(ledger.PHASE_ENV, "test-min")
    monkeypatch.setenv("PYTEST_CURRENT_TEST", "tests/integration/etcd/test_renew.py::test_r (call)")
    ledger.record("playbook", "renew.yml", 3, rc=0, changed=1)
    (entry,) = ledger.read()
    assert entry["test"] == "tests/integration/etcd/test_renew.py::test_r" and entry["phase"] == "test-min"


def test_summary_per_phase_kind_costliest_and_idle_runs(tmp_path, monkeypatch):
    lines = ledger.summary(entries(tmp_path, monkeypatch))
    text = "\n".join(lines)
    assert re.search(r"pytest \(unit, integration, cluster\)\s+300 s\s+ok", text), text
    assert re.search(r"ansible-lint\s+40 s\s+FAILED rc=2", text), text
    assert re.search(r"tests in cluster\s+120 s\s+\(1 tests\)", text), text
    assert re.search(r"playbook\s+75 s\s+in\s+2 entries", text), text
    costliest = lines[lines.index("-- the 20 costliest entries --") + 1:]
    assert "site.yml -e flannel_mtu=1400" in costliest[0] and "site.yml " in costliest[1]
    idle = text.split("-- playbook runs that changed nothing: ")[1]
    assert idle.startswith("1 of 2, 30 s") and "flannel_mtu" not in idle
    assert "-- failed phases: ansible-lint --" in text
    assert "-- tests that did not pass: 1 --\n  tests/unit/core/test_x.py::test_b  (failed in call)" in text
    assert not [line for line in lines if PYTEST_CLOSING.search(line)], text


def test_summary_counts_overlapping_lanes_once(tmp_path, monkeypatch):
    monkeypatch.setenv(ledger.ENV, str(tmp_path / "ledger.jsonl"))
    # the main pytest run from 100 to 400, the checks lane's two phases inside it
    for what, end, seconds, busy in (("sanity", 250, 150, 1.9), ("ansible-lint", 300, 50, None),
                                     ("pytest", 400, 300, 1.5)):
        extra = {"busy_cores": busy} if busy is not None else {}
        ledger.record("phase", what, seconds, rc=0, phase=what, test=None, **extra)
        entries = ledger.read()
        entries[-1]["at"] = end
        (tmp_path / "ledger.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries))
    text = "\n".join(ledger.summary(ledger.read()))
    assert "phases 300 s = 5.0 min from first start to last end (500 s if run one after another)" in text, text
    assert re.search(r"sanity\s+150 s\s+1.9 cores\s+ok", text) and re.search(r"ansible-lint\s+50 s\s+ok", text), text


def test_machine_busy_reads_the_cpu_line(tmp_path):
    stat = tmp_path / "stat"
    # user nice system idle iowait irq softirq steal: busy = 300 + 0 + 100 + 0 + 20 + 0 ticks
    stat.write_text("cpu  300 0 100 5000 80 0 20 0 0 0\ncpu0 1 2 3 4\n")
    ticks = os.sysconf("SC_CLK_TCK")
    assert ledger.machine_busy(str(stat)) == 420 / ticks
    assert ledger.machine_busy(str(tmp_path / "missing")) is None
    assert ledger.machine_busy() > 0


def test_phase_command_records_the_rc_and_runs_on(tmp_path, monkeypatch):
    path = tmp_path / "ledger.jsonl"
    env = {ledger.ENV: str(path), "PATH": "/usr/bin:/bin"}
    script = ledger.__file__
    failed = subprocess.run([sys.executable, script, "phase", "broken step", "--", "sh", "-c", "exit 3"], env=env,
                            check=False)
    ok = subprocess.run([sys.executable, script, "phase", "next step", "--", "true"], env=env, check=False)
    assert (failed.returncode, ok.returncode) == (3, 0)
    got = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(e["what"], e["rc"]) for e in got] == [("broken step", 3), ("next step", 0)]
    out = subprocess.run([sys.executable, script, "summary"], env=env, capture_output=True, text=True, check=True)
    assert "-- failed phases: broken step --" in out.stdout


# -- the stoppable pings of the cluster tests (flannel_helpers.ping_losses) ---------------------------------

BUSYBOX = """PING 10.5.3.2 (10.5.3.2): 56 data bytes
64 bytes from 10.5.3.2: seq=0 ttl=62 time=0.412 ms
64 bytes from 10.5.3.2: seq=2 ttl=62 time=0.390 ms
64 bytes from 10.5.3.2: seq=3 ttl=62 time=0.380 ms

--- 10.5.3.2 ping statistics ---
5 packets transmitted, 3 packets received, 40% packet loss
"""
IPUTILS = """PING 10.5.3.1 (10.5.3.1) 56(84) bytes of data.
64 bytes from 10.5.3.1: icmp_seq=1 ttl=63 time=0.321 ms
64 bytes from 10.5.3.1: icmp_seq=2 ttl=63 time=0.300 ms
64 bytes from 10.5.3.1: icmp_seq=3 ttl=63 time=0.310 ms

--- 10.5.3.1 ping statistics ---
4 packets transmitted, 3 received, 25% packet loss, time 601ms
"""


def test_ping_losses_leave_out_the_request_in_flight_at_the_stop():
    from cluster.flannel_helpers import ping_losses
    # busybox: seq 0..4 sent, 4 unanswered (in flight when stopped), 1 lost
    assert ping_losses(BUSYBOX) == (4, 3)
    # iputils counts from 1: icmp_seq 4 was the one in flight
    assert ping_losses(IPUTILS) == (3, 3)
    assert ping_losses("ping: bad address 'x'") is None
    # a reply to the last request still counts when it came
    assert ping_losses(BUSYBOX.replace("seq=3 ttl", "seq=1 ttl")) == (4, 3)
