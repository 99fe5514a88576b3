"""A Debian 13 controller for the tests: Python 3.13 with ansible-core 2.20 and 2.21 (stdlib only).

ansible-core 2.20 and 2.21 need Python 3.12 or newer on the controller; the
machine that runs the suite is Debian 12 (3.11). The controller is a copy of
the Debian 13 (trixie) root filesystem the harness builds for the test hosts
(image.py), entered with chroot in the ROOT network namespace: it reaches the
package index for its own virtual environments and the test hosts over the
test underlay as this machine does. Built once and cached under
/var/cache/overlay-flannel/controllers/<key>/ (<key> hashes the trixie image's
key, the pins requirements/controller-2.20.txt and controller-2.21.txt and this
builder's version; the wrappers are rewritten at every ensure_controller()):

    <key>/rootfs/                 the controller: Debian's python3-venv and git from its
                                  own apt, /opt/ansible-2.20 and /opt/ansible-2.21 (pip,
                                  from the pins), this machine's CA bundle copied in
    <key>/venv-2.20/bin/, venv-2.21/bin/
                                  wrappers (python, ansible-playbook, ansible, ansible-galaxy,
                                  ansible-test, ...) that run that command inside the
                                  controller: usable wherever the tests take a virtualenv
                                  (OVERLAY_FLANNEL_ANSIBLE_VENV, support/ansible_under_test.py)
    <key>/manifest.json, build.log

A wrapper enters the controller in a mount namespace of its own (unshare -m,
private propagation): /proc, /dev, /tmp and the working directory's top
directory (the checkout, the cluster's state dir) are bound at the same paths,
so the paths the tests pass mean the same inside. Nothing of the host's
configuration (/etc, ...) is ever bound in: the controller's package scripts
only ever see its own. The namespace, and its mounts, end with the command.

    python3 tests/cluster/harness/controller.py build     build (or find) it, print its directory
    python3 tests/cluster/harness/controller.py path      the same without building (exit 1 if none)
"""

import fcntl
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
if __package__:
    from . import image  # type: ignore
else:  # run as a script: tests/cluster/harness/controller.py
    sys.path.insert(0, HERE)
    import image  # type: ignore  # noqa: E402

SUITE = "trixie"
CACHE_ROOT = os.environ.get("OVERLAY_FLANNEL_CONTROLLER_CACHE",
                            os.path.join(os.path.dirname(image.CACHE_ROOT), "controllers"))
BUILDER_VERSION = "2"  # bump when the build steps in this file change
# ansible-core minor release -> its pins (requirements/), one virtualenv each in the controller
VERSIONS = {"2.20": "controller-2.20.txt", "2.21": "controller-2.21.txt"}
APT_PACKAGES = ["python3-venv", "git"]
# This machine's CA bundle (the package index's certificate is trusted through it), copied in.
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
TOOLS = ["python", "python3", "pip", "ansible", "ansible-playbook", "ansible-galaxy", "ansible-doc",
         "ansible-config", "ansible-inventory", "ansible-test"]
ENTER = os.path.join(HERE, "controller-enter.sh")


def controller_key(trixie_key):
    h = hashlib.sha256()
    head = "builder=%s suite=%s image=%s apt=%s\n" % (BUILDER_VERSION, SUITE, trixie_key, " ".join(APT_PACKAGES))
    h.update(head.encode())
    for version, req in sorted(VERSIONS.items()):
        with open(os.path.join(REPO, "requirements", req), "rb") as fh:
            h.update(version.encode() + b"\0" + fh.read() + b"\0")
    return h.hexdigest()[:16]


class Controller:
    def __init__(self, path):
        self.path = path
        self.rootfs = os.path.join(path, "rootfs")

    def venv(self, version):
        """The wrapper directory of ansible-core `version` ('2.21'): its bin/ runs the controller's tools."""
        return os.path.join(self.path, "venv-%s" % version)

    def manifest(self):
        with open(os.path.join(self.path, "manifest.json")) as fh:
            return json.load(fh)


def _run(argv, log, **kw):
    return image._run(argv, log, what="controller", **kw)  # pylint: disable=protected-access


def write_wrappers(path, final=None):
    """venv-X.Y/bin/<tool>: `<key>/enter.sh <key>/rootfs /opt/ansible-X.Y/bin/<tool> "$@"`, where enter.sh
    is a copy of controller-enter.sh (the cache outlives the checkout that built it). Inside the
    controller <key>/venv-X.Y is a link to /opt/ansible-X.Y, so a path the tests hand to ansible
    (ansible_python_interpreter: <key>/venv-2.20/bin/python) means the same there (the virtualenv
    itself: Python finds its pyvenv.cfg beside the bin/ it was started from).
    Idempotent; every file is replaced atomically."""
    final = final or path  # where the directory will be (a build is renamed into place)
    rootfs = os.path.join(final, "rootfs")
    enter = os.path.join(final, "enter.sh")

    def put(target, text=None, link=None, mode=0o755):
        tmp = target + ".tmp-%d" % os.getpid()
        if link:
            os.symlink(link, tmp)
        else:
            with open(tmp, "w") as fh:
                fh.write(text)
            os.chmod(tmp, mode)
        os.replace(tmp, target)

    with open(ENTER) as fh:
        put(os.path.join(path, "enter.sh"), fh.read())
    for version in VERSIONS:
        bindir = os.path.join(path, "venv-%s" % version, "bin")
        inside = os.path.join(path, "rootfs") + os.path.join(final, "venv-%s" % version)
        os.makedirs(bindir, exist_ok=True)
        os.makedirs(os.path.dirname(inside), exist_ok=True)
        if os.path.isdir(inside) and not os.path.islink(inside):
            shutil.rmtree(inside)
        put(inside, link="/opt/ansible-%s" % version)
        for tool in TOOLS:
            inner = "/opt/ansible-%s/bin/%s" % (version, tool)
            put(os.path.join(bindir, tool),
                "#!/bin/sh\n# %s inside the Debian 13 controller (tests/cluster/harness/controller.py)\n"
                "exec %s %s %s \"$@\"\n" % (tool, shlex.quote(enter), shlex.quote(rootfs), inner))


def _build(final, log, trixie):
    build = final + ".build-%d" % os.getpid()
    rootfs = os.path.join(build, "rootfs")
    os.makedirs(build)
    t0 = time.monotonic()
    _run(["cp", "-a", "--reflink=auto", trixie.rootfs, rootfs], log)
    env = dict(PATH="/usr/sbin:/usr/bin:/sbin:/bin", DEBIAN_FRONTEND="noninteractive", LANG="C.UTF-8",
               HOME="/root", PIP_CERT=CA_BUNDLE, SSL_CERT_FILE=CA_BUNDLE, PIP_DISABLE_PIP_VERSION_CHECK="1",
               PIP_DEFAULT_TIMEOUT="180")
    shutil.copy("/etc/resolv.conf", os.path.join(rootfs, "etc/resolv.conf"))
    # the host image has no apt sources (its hosts have no network); the controller has its own
    with open(os.path.join(rootfs, "etc/apt/sources.list"), "w") as fh:
        fh.write("deb %s %s main\ndeb %s %s-updates main\ndeb %s %s-security main\n"
                 % (image.MIRROR, SUITE, image.MIRROR, SUITE, image.SECURITY_MIRROR, SUITE))
    with open(os.path.join(rootfs, "usr/sbin/policy-rc.d"), "w") as fh:
        fh.write("#!/bin/sh\nexit 101\n")
    os.chmod(os.path.join(rootfs, "usr/sbin/policy-rc.d"), 0o755)
    try:
        _run(["mount", "-t", "proc", "proc", os.path.join(rootfs, "proc")], log)
        _run(["mount", "--bind", "/dev", os.path.join(rootfs, "dev")], log)
        _run(["chroot", rootfs, "apt-get", "update"], log, env=env)
        _run(["chroot", rootfs, "apt-get", "-y", "--no-install-recommends",
              "-o", "Dpkg::Options::=--force-confold", "install"] + APT_PACKAGES, log, env=env)
        _run(["chroot", rootfs, "apt-get", "clean"], log, env=env)
        # After apt (whose ca-certificates trigger would rewrite it): the bundle this machine trusts.
        shutil.copy(CA_BUNDLE, rootfs + CA_BUNDLE)
        os.makedirs(os.path.join(rootfs, "opt", "requirements"), exist_ok=True)
        for version, req in sorted(VERSIONS.items()):
            shutil.copy(os.path.join(REPO, "requirements", req), os.path.join(rootfs, "opt", "requirements", req))
            venv = "/opt/ansible-%s" % version
            _run(["chroot", rootfs, "python3", "-m", "venv", venv], log, env=env)
            _run(["chroot", rootfs, venv + "/bin/python", "-m", "pip", "install", "-q",
                  "-r", "/opt/requirements/" + req], log, env=env)
        pkgs = subprocess.run(["chroot", rootfs, "/bin/sh", "-c",
                               "for v in /opt/ansible-*; do echo \"$v: $($v/bin/ansible --version | head -1)\"; done; "
                               "python3 --version"],
                              capture_output=True, text=True, check=True, env=env).stdout.splitlines()
    finally:
        image.umount_all_under(rootfs)
    os.unlink(os.path.join(rootfs, "usr/sbin/policy-rc.d"))
    write_wrappers(build, final)
    seconds = time.monotonic() - t0
    manifest = {"key": os.path.basename(final), "image": trixie.key, "builder": BUILDER_VERSION,
                "versions": VERSIONS, "apt": APT_PACKAGES, "found": pkgs,
                "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "build_seconds": round(seconds, 1)}
    with open(os.path.join(build, "manifest.json"), "w") as fh:
        json.dump(manifest, fh, indent=1)
    os.rename(build, final)
    return seconds


def find_controller():
    """The cached Controller for today's pins and trixie image, or None (builds nothing)."""
    key = controller_key(image.image_key(suite=SUITE))
    final = os.path.join(CACHE_ROOT, key)
    return Controller(final) if os.path.isfile(os.path.join(final, "manifest.json")) else None


def ensure_controller(verbose=True):
    """The cached Controller, building the trixie image and then it first when they are not cached."""
    trixie = image.ensure_image(verbose=verbose, suite=SUITE)
    key = controller_key(trixie.key)
    os.makedirs(CACHE_ROOT, exist_ok=True)
    final = os.path.join(CACHE_ROOT, key)
    with open(os.path.join(CACHE_ROOT, ".lock"), "w") as lockf:
        fcntl.flock(lockf, fcntl.LOCK_EX)
        for name in os.listdir(CACHE_ROOT):
            if ".build-" in name:
                path = os.path.join(CACHE_ROOT, name)
                image.umount_all_under(path)
                image.safe_rmtree(path)
        if not os.path.isfile(os.path.join(final, "manifest.json")):
            if os.path.isdir(final):
                image.safe_rmtree(final)
            log_path = os.path.join(CACHE_ROOT, key + ".build.log")
            if verbose:
                print("building the Debian 13 controller %s (log: %s)" % (key, log_path), flush=True)
            with open(log_path, "wb") as log:
                seconds = _build(final, log, trixie)
            shutil.move(log_path, os.path.join(final, "build.log"))
            if verbose:
                print("controller %s built in %.1fs" % (key, seconds), flush=True)
            # older controllers (other pins) go; none is ever mounted outside a running command
            for name in os.listdir(CACHE_ROOT):
                path = os.path.join(CACHE_ROOT, name)
                if name != key and os.path.isdir(path) and not image.mounts_under(path):
                    image.safe_rmtree(path)
        write_wrappers(final)  # as this checkout writes them (cheap; a cached entry may predate a fix)
    return Controller(final)


def main(argv):
    if argv == ["build"]:
        print(ensure_controller().path)
        return 0
    if argv == ["path"]:
        found = find_controller()
        if not found:
            print("no controller built for today's pins (controller.py build)", file=sys.stderr)
            return 1
        print(found.path)
        return 0
    print(__doc__.strip().rsplit("\n\n", maxsplit=1)[-1], file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
