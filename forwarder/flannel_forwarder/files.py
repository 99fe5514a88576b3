"""Atomic file replacement (temp file in the same directory, fsync, rename)."""

import os
import tempfile


def write_atomic(path, text, mode=0o644, durable=True):
    """Replace `path` with `text`; returns True when the content changed. `durable`: on the disk (fsync) before
    it replaces the old content; without it a reader still sees the old or the new content whole, but a crash
    of the host may leave neither (for a status file rewritten all the time in /run)."""
    try:
        with open(path, encoding="utf-8") as fh:
            if fh.read() == text:
                return False
    except OSError:
        pass
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fchmod(fh.fileno(), mode)
            if durable:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return True
