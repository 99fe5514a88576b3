"""Stopping the processes the test harnesses started, by their recorded PIDs only."""

from __future__ import annotations

import os
import signal
import subprocess
import time


def stop_process(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 10) -> int | None:
    """Send *sig* to *proc* (a Popen this harness started), wait, SIGKILL after *timeout*; returns its exit code."""
    if proc.poll() is None:
        try:
            os.kill(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)
    return proc.returncode


def proc_start_time(pid: int | None) -> int | None:
    """Start time (clock ticks since boot) of a process, or None when it is gone or a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as fh:
            data = fh.read()
    except (OSError, TypeError):
        return None
    fields = data[data.rindex(")") + 2:].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def pid_alive(pid: int | None, start_time: int | None = None) -> bool:
    """The process `pid` runs (and, with `start_time`, is still the one recorded)."""
    if not pid:
        return False
    st = proc_start_time(pid)
    return st is not None and (start_time is None or st == start_time)


def signal_recorded(pid: int | None, start_time: int | None, sig: int) -> bool:
    """Send `sig` to a PID this harness recorded, only when it is still the same process."""
    if pid_alive(pid, start_time):
        try:
            os.kill(pid, sig)
            return True
        except ProcessLookupError:
            pass
    return False


def stop_recorded(procs, timeout: float = 5.0) -> None:
    """SIGTERM to each recorded (pid, start_time) still running, SIGKILL to those left after *timeout*."""
    procs = [p for p in procs if signal_recorded(p[0], p[1], signal.SIGTERM)]
    deadline = time.monotonic() + timeout
    while procs and time.monotonic() < deadline:
        time.sleep(0.1)
        procs = [p for p in procs if pid_alive(*p)]
    for p in procs:
        signal_recorded(p[0], p[1], signal.SIGKILL)
