"""tests/support/one_at_a_time.sh, the lock of `make test`: a second run waits for the first and says so, the
command's exit status comes through, and a daemon the run leaves behind does not keep the lock."""

import os
import signal
import subprocess
import time

SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                      "support", "one_at_a_time.sh")


def free(lock):
    return subprocess.run(["flock", "-n", str(lock), "true"], check=False).returncode == 0


def test_a_second_run_waits_for_the_first_and_says_so(tmp_path):
    lock = tmp_path / "lock"
    holder = subprocess.Popen(["flock", str(lock), "sh", "-c", "read _"], stdin=subprocess.PIPE)  # the first run
    try:
        deadline = time.monotonic() + 5
        while free(lock) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not free(lock)
        second = subprocess.Popen([SCRIPT, str(lock), "sh", "-c", "echo ran; exit 3"], stdout=subprocess.PIPE,
                                  text=True)
        first_line = second.stdout.readline()
        assert "another run holds %s" % lock in first_line and "starts when it ends" in first_line
        time.sleep(0.3)
        assert second.poll() is None  # still waiting
        holder.stdin.close()  # the first run ends
        assert second.stdout.read() == "ran\n"
        assert second.wait(10) == 3
    finally:
        holder.kill()
        holder.wait()


def test_alone_it_runs_at_once_and_a_daemon_left_behind_does_not_keep_the_lock(tmp_path):
    lock = tmp_path / "lock"
    run = subprocess.run([SCRIPT, str(lock), "sh", "-c", "sleep 60 >/dev/null 2>&1 & echo $!"],
                         capture_output=True, text=True, timeout=10, check=False)
    daemon = int(run.stdout.split()[-1])
    try:
        assert run.returncode == 0 and "another run" not in run.stdout
        assert os.path.exists("/proc/%d" % daemon)  # still running
        assert free(lock)
    finally:
        os.kill(daemon, signal.SIGKILL)
