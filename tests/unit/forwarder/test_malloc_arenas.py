"""glibc's malloc arenas capped at the daemon's start (cli.cap_malloc_arenas): counted by glibc's own
malloc_stats() in a fresh interpreter whose threads allocate at once, capped and not."""

import os
import re
import subprocess
import sys

from flannel_forwarder.cli import MALLOC_ARENAS, cap_malloc_arenas

FORWARDER = os.path.join(os.path.dirname(__file__), "..", "..", "..", "forwarder")
COLLECTIONS = os.path.join(os.path.dirname(__file__), "..", "..", "..", ".cache", "collections")

# 8 threads hold 2 kB blocks (above pymalloc's 512 bytes: glibc's malloc) while all of them allocate; then glibc
# prints its arenas ("Arena <n>:") to stderr.
SCRIPT = r'''
import ctypes, sys, threading
from flannel_forwarder.cli import cap_malloc_arenas
capped = cap_malloc_arenas() if sys.argv[1] == "cap" else None
barrier = threading.Barrier(8)
kept = []

def work():
    barrier.wait()
    kept.append([bytearray(2048) for _ in range(2000)])
    barrier.wait()

threads = [threading.Thread(target=work) for _ in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(capped, flush=True)
ctypes.CDLL(None).malloc_stats()
'''


def arenas(mode, **env):
    """(what cap_malloc_arenas returned, glibc's arenas) after 8 threads allocated at once, in a fresh interpreter
    with `env` and without the arena settings of this one."""
    base = {k: v for k, v in os.environ.items() if k not in ("MALLOC_ARENA_MAX", "GLIBC_TUNABLES")}
    done = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True,
                          env=dict(base, PYTHONPATH=os.pathsep.join([COLLECTIONS, FORWARDER]), **env))
    return done.stdout.strip(), len(re.findall(r"^Arena \d+:$", done.stderr, re.M))


def test_the_arenas_are_capped():
    assert arenas("free")[1] > MALLOC_ARENAS  # the control: threads allocating at once get arenas of their own
    assert arenas("cap") == ("True", MALLOC_ARENAS)


def test_the_environment_wins():
    assert arenas("cap", MALLOC_ARENA_MAX="4") == ("False", 4)
    assert arenas("cap", GLIBC_TUNABLES="glibc.malloc.arena_max=3") == ("False", 3)
    assert cap_malloc_arenas(environ={"MALLOC_ARENA_MAX": "1"}) is False  # returns before any mallopt
