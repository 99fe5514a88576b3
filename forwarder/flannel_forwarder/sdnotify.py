"""systemd's sd_notify protocol, without libsystemd: one datagram to $NOTIFY_SOCKET."""

import os
import socket


def notify(state, environ=None):
    """Send e.g. 'READY=1' or 'STOPPING=1'; returns False when not run by systemd (no socket)."""
    path = (environ or os.environ).get("NOTIFY_SOCKET")
    if not path:
        return False
    if path.startswith("@"):
        path = "\0" + path[1:]  # abstract namespace
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.connect(path)
        sock.sendall(state.encode("utf-8"))
    return True
