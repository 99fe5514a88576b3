# Copyright: overlay.flannel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Build the forwarder's wheels on the controller, once per content.

    build_wheels.py COLLECTION_ROOT CACHE_DIR

The wheel of flannel-forwarder (forwarder/ plus plugins/module_utils, see
pyproject.toml) and those of requirements/forwarder.txt go into
CACHE_DIR/<key>/, where <key> hashes the files the wheel is made of, the
pinned requirements and this Python's version and platform. A directory that
is already complete is reused. The sources are copied to a temporary tree
first, so a read-only collection (or a checkout) is never written to.
Prints one JSON object: key, dir, wheels, built.
"""

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile

TOP_FILES = ("pyproject.toml", "requirements/forwarder.txt")
# pyproject.toml names README.md as the long description; the collection's README
# changes often and says nothing the daemon needs, so a stub stands in for it
# (an edit of the README must not reinstall and restart every forwarder).
README_STUB = "flannel-forwarder, the udp-backend forwarder of the overlay.flannel Ansible collection.\n"
TREES = ("forwarder/flannel_forwarder", "plugins/module_utils")


def source_files(root):
    files = [f for f in TOP_FILES if os.path.exists(os.path.join(root, f))]
    for tree in TREES:
        for dirpath, dirnames, filenames in os.walk(os.path.join(root, tree)):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
            for name in sorted(filenames):
                if not name.endswith((".pyc", ".pyo")):
                    files.append(os.path.relpath(os.path.join(dirpath, name), root))
    return sorted(files)


def content_key(root, files):
    digest = hashlib.sha256()
    digest.update(("%d.%d %s\0" % (sys.version_info[0], sys.version_info[1], platform.machine())).encode())
    for rel in files:
        digest.update(rel.encode() + b"\0")
        with open(os.path.join(root, rel), "rb") as fh:
            digest.update(fh.read())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def main():
    root, cache = os.path.realpath(sys.argv[1]), os.path.abspath(sys.argv[2])
    files = source_files(root)
    key = content_key(root, files)
    target = os.path.join(cache, key)
    built = False
    if not os.path.exists(os.path.join(target, ".complete")):
        os.makedirs(cache, exist_ok=True)
        work = tempfile.mkdtemp(prefix=".build-", dir=cache)
        try:
            src = os.path.join(work, "src")
            for rel in files:
                os.makedirs(os.path.dirname(os.path.join(src, rel)), exist_ok=True)
                shutil.copy2(os.path.join(root, rel), os.path.join(src, rel))
            with open(os.path.join(src, "README.md"), "w") as fh:
                fh.write(README_STUB)
            out = os.path.join(work, "wheels")
            cmd = [sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check",
                   "--wheel-dir", out, src, "-r", os.path.join(src, "requirements/forwarder.txt")]
            res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                                 check=False)
            if res.returncode != 0:
                sys.stderr.write("pip wheel failed (%s):\n%s" % (" ".join(cmd), res.stdout[-4000:]))
                return 1
            open(os.path.join(out, ".complete"), "w").close()
            shutil.rmtree(target, ignore_errors=True)
            os.rename(out, target)
            built = True
        finally:
            shutil.rmtree(work, ignore_errors=True)
    wheels = sorted(n for n in os.listdir(target) if n.endswith(".whl"))
    print(json.dumps(dict(key=key, dir=target, wheels=wheels, built=built)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
