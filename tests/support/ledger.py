"""The suite's time ledger: where `make test` spends its minutes (stdlib only).

Every phase of `make test` (apt and venvs, test-min, the main pytest run,
each sanity run, lint, the docs lint), every test, and inside the cluster
tests every ansible-playbook run, cluster bring-up, reboot, stop, start and
deliberate wait is one JSON line in the ledger file (OVERLAY_FLANNEL_LEDGER,
default build/ledger.jsonl): its kind, what it was, its duration, the test
that asked for it (pytest's PYTEST_CURRENT_TEST) and, for playbook runs, the
return code and the number of changed tasks.

    python3 tests/support/ledger.py phase NAME -- CMD ...   run CMD, record it as phase NAME, exit with its rc
    python3 tests/support/ledger.py summary [--fail-on-phase-failure]

`summary` prints per phase, per kind, the 20 costliest entries, the 20
slowest tests and the playbook runs that changed nothing. Its lines never
take the shape of pytest's closing "N passed" line, which CI reads.
"""

import contextlib
import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = "OVERLAY_FLANNEL_LEDGER"
PHASE_ENV = "OVERLAY_FLANNEL_LEDGER_PHASE"
DEFAULT = os.path.join(REPO, "build", "ledger.jsonl")
# Kinds recorded inside the tests (phase and test are the frame around them).
INNER_KINDS = ("playbook", "module", "bringup", "teardown", "reboot", "stop", "start", "wait", "sleep")


def path():
    return os.environ.get(ENV) or DEFAULT


def current_test():
    """The test that runs now ("tests/cluster/test_site.py::test_x"), or None outside pytest."""
    value = os.environ.get("PYTEST_CURRENT_TEST")
    return value.rsplit(" ", 1)[0] if value else None


def phase_of(test):
    """The phase a test belongs to: OVERLAY_FLANNEL_LEDGER_PHASE when set (test-min), else its directory."""
    forced = os.environ.get(PHASE_ENV)
    if forced:
        return forced
    if test and test.startswith("tests/"):
        return test.split("/")[1]
    return None


def record(kind, what, seconds, **extra):
    """Append one entry; never fails the caller (the ledger observes, it does not decide)."""
    test = extra.pop("test", None) or current_test()
    entry = dict(kind=kind, what=what, seconds=round(float(seconds), 3), test=test,
                 phase=extra.pop("phase", None) or phase_of(test), at=round(time.time(), 3))
    entry.update(extra)
    line = json.dumps(entry, sort_keys=True) + "\n"
    try:
        target = path()
        os.makedirs(os.path.dirname(target), exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())  # one write per line: whole lines from concurrent writers
        finally:
            os.close(fd)
    except OSError as exc:
        sys.stderr.write("ledger: cannot record %s %s: %s\n" % (kind, what, exc))


@contextlib.contextmanager
def timed(kind, what, **extra):
    """Record the duration of the block (also when it raises); the block may add to `extra` via the
    dict it gets."""
    start = time.monotonic()
    notes = dict(extra)
    try:
        yield notes
    finally:
        record(kind, what, time.monotonic() - start, **notes)


def sleep(seconds, why):
    """A deliberate wait of fixed length (only where a test asserts that nothing happens during it)."""
    with timed("sleep", why):
        time.sleep(seconds)


def read(target=None):
    entries = []
    try:
        with open(target or path()) as fh:
            for line in fh:
                line = line.strip()
                if line:
                    try:
                        entries.append(json.loads(line))
                    except ValueError:
                        continue
    except OSError:
        pass
    return entries


# --- the summary -------------------------------------------------------------------------------------


def _fmt(seconds):
    seconds = float(seconds)
    return "%6.0f s" % seconds if seconds >= 10 else "%6.1f s" % seconds


def summary(entries):
    """The summary's lines (a list of str)."""
    lines = []
    phases = [e for e in entries if e["kind"] == "phase"]
    tests = [e for e in entries if e["kind"] == "test"]
    inner = [e for e in entries if e["kind"] in INNER_KINDS]
    total = sum(e["seconds"] for e in phases)
    wall = (max(e["at"] for e in phases) - min(e["at"] - e["seconds"] for e in phases)) if phases else 0
    lines.append("## time ledger (%s): %d entries, phases %.0f s = %.1f min from first start to last end "
                 "(%.0f s if run one after another)" % (
                     os.path.relpath(path(), REPO) if path().startswith(REPO) else path(), len(entries), wall,
                     wall / 60, total))

    lines.append("-- per phase (make test's steps, the machine's busy cores meanwhile; pytest's split by test "
                 "directory) --")
    by_test_phase = {}
    for e in tests:
        by_test_phase.setdefault(e.get("phase") or "?", []).append(e["seconds"])
    for e in phases:
        status = "ok" if e.get("rc") == 0 else "FAILED rc=%s" % e.get("rc")
        busy = " %4.1f cores" % e["busy_cores"] if e.get("busy_cores") is not None else ""
        lines.append("  %-38s %s%s  %s" % (e["what"], _fmt(e["seconds"]), busy, status))
    for name, secs in sorted(by_test_phase.items(), key=lambda kv: -sum(kv[1])):
        lines.append("    tests in %-29s %s  (%d tests)" % (name, _fmt(sum(secs)), len(secs)))

    lines.append("-- per kind (inside the tests) --")
    kinds = {}
    for e in inner:
        kinds.setdefault(e["kind"], []).append(e["seconds"])
    for kind, secs in sorted(kinds.items(), key=lambda kv: -sum(kv[1])):
        lines.append("  %-10s %s  in %3d entries" % (kind, _fmt(sum(secs)), len(secs)))
    playbooks = [e for e in inner if e["kind"] == "playbook"]
    by_name = {}
    for e in playbooks:
        by_name.setdefault(e["what"].split()[0], []).append(e["seconds"])
    for name, secs in sorted(by_name.items(), key=lambda kv: -sum(kv[1])):
        lines.append("    playbook %-28s %s  in %3d runs" % (name, _fmt(sum(secs)), len(secs)))

    lines.append("-- the 20 costliest entries --")
    for e in sorted(inner, key=lambda e: -e["seconds"])[:20]:
        lines.append("  %s  %-8s %-52s %s" % (_fmt(e["seconds"]), e["kind"], e["what"][:52], e.get("test") or ""))

    lines.append("-- the 20 slowest tests --")
    for e in sorted(tests, key=lambda e: -e["seconds"])[:20]:
        lines.append("  %s  %s%s" % (_fmt(e["seconds"]), e["what"], "" if e.get("outcome") == "ok" else
                                     "  (%s)" % e.get("outcome")))

    idle = [e for e in playbooks if e.get("rc") == 0 and e.get("changed") == 0]
    lines.append("-- playbook runs that changed nothing: %d of %d, %.0f s --" % (
        len(idle), len(playbooks), sum(e["seconds"] for e in idle)))
    for e in idle:
        lines.append("  %s  %-52s %s" % (_fmt(e["seconds"]), e["what"][:52], e.get("test") or ""))
    broken = [e for e in tests if e.get("outcome") != "ok"]
    if broken:
        lines.append("-- tests that did not pass: %d --" % len(broken))
        lines += ["  %s  (%s)" % (e["what"], e.get("outcome")) for e in broken]
    failed = [e for e in phases if e.get("rc") != 0]
    if failed:
        lines.append("-- failed phases: %s --" % ", ".join(e["what"] for e in failed))
    return lines


def machine_busy(stat="/proc/stat"):
    """Seconds of CPU time the whole machine has spent busy (all cores, not idle nor waiting for I/O)."""
    try:
        with open(stat) as fh:
            fields = [int(v) for v in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / float(os.sysconf("SC_CLK_TCK"))


def run_phase(name, argv):
    start, busy = time.monotonic(), machine_busy()
    try:
        rc = subprocess.call(argv)
    except OSError as exc:
        sys.stderr.write("ledger: %s: %s\n" % (argv[0], exc))
        rc = 127
    seconds, extra = time.monotonic() - start, {}
    after = machine_busy()
    if busy is not None and after is not None and seconds > 0:
        # the machine's, not the phase's own: phases of the two lanes overlap
        extra["busy_cores"] = round((after - busy) / seconds, 2)
    record("phase", name, seconds, rc=rc, phase=name, test=None, **extra)
    return rc


def main(argv):
    if len(argv) >= 3 and argv[0] == "phase" and "--" in argv:
        split = argv.index("--")
        return run_phase(argv[1], argv[split + 1:])
    if argv and argv[0] == "summary":
        entries = read()
        print("\n".join(summary(entries)))
        if "--fail-on-phase-failure" in argv:
            return 1 if any(e["kind"] == "phase" and e.get("rc") != 0 for e in entries) else 0
        return 0
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
