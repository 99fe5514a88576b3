"""The daemon's threads named for the kernel, so that ps -L, top -H and /proc/<pid>/task/*/comm tell them apart
(Python before 3.14 leaves every thread the process's name)."""

import threading


def name_thread(name):
    """Give the calling thread `name` (the kernel keeps 15 bytes of it); quietly nothing where /proc does not
    allow it."""
    try:
        with open("/proc/self/task/%d/comm" % threading.get_native_id(), "w", encoding="utf-8") as fh:
            fh.write(name[:15])
    except OSError:
        pass
