# Run on each host by the forwarder role's preflight (python3 -c): what the
# forwarder needs there, and which release the controller must stage for it.
# Prints one JSON object; "missing" names what the host lacks.
import json
import os
import platform
import sys

missing = []
if sys.version_info[:2] < (3, 9):
    missing.append("Python 3.9 or newer (this is %d.%d)" % sys.version_info[:2])
if not os.path.exists("/dev/net/tun"):
    missing.append("/dev/net/tun (the tun kernel module)")
libc, libc_version = platform.libc_ver()
if libc != "glibc":
    missing.append("the GNU C library (found %r)" % (libc or "none"))
print(json.dumps({"python": "%d.%d" % sys.version_info[:2], "machine": platform.machine(),
                  "glibc": libc_version, "executable": sys.executable, "missing": missing}))
