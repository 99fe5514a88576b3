"""The shared Debian root filesystems of the test hosts, one per suite (stdlib only).

A stock host: Debian's base system as debootstrap makes it by default (every
package of priority required and important: systemd, iproute2, nftables, ...)
plus exactly what the README says a host needs (python3, docker.io) and an ssh
server, without recommends: no python3-venv, no pip. Built once per suite
(SUITES: bookworm = Debian 12, the default; trixie = Debian 13) with
debootstrap + apt-get inside a chroot, configured by image-setup.sh, and cached
under /var/cache/overlay-flannel/images/<key>/ where <key> hashes the suite,
the package list, image-setup.sh and this builder's version.  Layout of a
cache entry:

    <key>/rootfs/          the root filesystem (lower layer of every host)
    <key>/busybox.tar      a `docker import`-able busybox root filesystem
    <key>/manifest.json    key inputs, build time, installed packages
    <key>/build.log        debootstrap/apt output
"""

import fcntl
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SETUP_SCRIPT = os.path.join(HERE, "image-setup.sh")
CACHE_ROOT = os.environ.get("OVERLAY_FLANNEL_IMAGE_CACHE", "/var/cache/overlay-flannel/images")
DEB_CACHE = os.path.join(os.path.dirname(CACHE_ROOT), "debs")
DEFAULT_SUITE = "bookworm"
# The suites a host image can be built for: Debian's codename -> its release number.
# bookworm's debootstrap and debian-archive-keyring (2023.3+deb12u2) both know trixie.
SUITES = {"bookworm": "12", "trixie": "13"}
MIRROR = os.environ.get("OVERLAY_FLANNEL_MIRROR", "http://deb.debian.org/debian")
SECURITY_MIRROR = os.environ.get("OVERLAY_FLANNEL_SECURITY_MIRROR", "http://deb.debian.org/debian-security")
BUILDER_VERSION = "4"  # bump when the build steps in this file change

PACKAGES = sorted([
    # what the README says a host needs, and how Ansible reaches it
    "python3", "docker.io", "openssh-server",
    # priority standard: on every Debian install with "standard system utilities"
    "dbus", "ca-certificates",
])
# What a suite needs beyond PACKAGES for the same host.  Debian 13 split the docker command out of
# docker.io into docker-cli, which docker.io only recommends: an install with recommends (apt's
# default) has it, one without does not, and the docker role and the tests run `docker`.
SUITE_PACKAGES = {"trixie": ["docker-cli"]}
VARIANT = "default"  # debootstrap's default: priorities required + important
# The test containers' image: a static busybox of the controller's (Debian's
# busybox-static), not a package of the hosts.
CONTROLLER_BUSYBOX = "/bin/busybox"

BUSYBOX_IN_IMAGE = "/usr/local/share/test-cluster/busybox.tar"


def check_suite(suite):
    if suite not in SUITES:
        raise ValueError("unknown suite %r (known: %s)" % (suite, ", ".join(sorted(SUITES))))
    return suite


def suite_packages(suite):
    """The packages installed into the image of `suite` (sorted)."""
    return sorted(set(PACKAGES) | set(SUITE_PACKAGES.get(check_suite(suite), [])))


def image_key(packages=None, suite=DEFAULT_SUITE, setup_text=None):
    """The cache key of the image of `suite`: the first 16 hex digits of the sha256 of the suite,
    variant, sorted package list, BUILDER_VERSION and image-setup.sh's text (`setup_text`, read
    from the file when None)."""
    check_suite(suite)
    packages = sorted(packages or suite_packages(suite))
    h = hashlib.sha256()
    h.update(json.dumps({"suite": suite, "variant": VARIANT, "packages": packages,
                         "builder": BUILDER_VERSION}, sort_keys=True).encode())
    if setup_text is None:
        with open(SETUP_SCRIPT, "rb") as fh:
            setup_text = fh.read()
    h.update(setup_text if isinstance(setup_text, bytes) else setup_text.encode())
    return h.hexdigest()[:16]


def mounts_under(path):
    """Mount points at or below `path` (from /proc/self/mountinfo), deepest first."""
    path = os.path.realpath(path)
    found = []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            mp = line.split()[4].encode().decode("unicode_escape")
            if mp == path or mp.startswith(path.rstrip("/") + "/"):
                found.append(mp)
    return sorted(set(found), key=len, reverse=True)


def safe_rmtree(path):
    """rm -rf that refuses to cross into anything still mounted below `path`."""
    if not os.path.lexists(path):
        return
    left = mounts_under(path)
    if left:
        raise RuntimeError("refusing to remove %s: still mounted: %s" % (path, left))
    shutil.rmtree(path, ignore_errors=False)


def umount_all_under(path):
    for mp in mounts_under(path):
        if subprocess.run(["umount", mp], capture_output=True, check=False).returncode != 0:
            subprocess.run(["umount", "-l", mp], capture_output=True, check=False)


class Image:
    def __init__(self, key, path, suite=DEFAULT_SUITE):
        self.key = key
        self.path = path
        self.suite = suite
        self.rootfs = os.path.join(path, "rootfs")
        self.busybox_tar = os.path.join(path, "busybox.tar")
        self.manifest_path = os.path.join(path, "manifest.json")

    def manifest(self):
        with open(self.manifest_path) as fh:
            return json.load(fh)

    def to_dict(self):
        return {"key": self.key, "path": self.path, "rootfs": self.rootfs,
                "busybox_tar": self.busybox_tar, "suite": self.suite}


def _run(argv, log, what="image", **kw):
    """One build step, its output appended to `log`; raises naming the step (of the `what` being built)."""
    log.write(("\n$ %s\n" % " ".join(argv)).encode())
    log.flush()
    res = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, check=False, **kw)
    if res.returncode != 0:
        raise RuntimeError("%s build step failed (rc=%d): %s; see %s"
                           % (what, res.returncode, " ".join(argv), log.name))


def make_busybox_tar(busybox_binary, applets, out_path):
    """A minimal root filesystem: busybox + one symlink per applet, as a tar."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        def add_dir(name, mode=0o755):
            ti = tarfile.TarInfo(name)
            ti.type = tarfile.DIRTYPE
            ti.mode = mode
            tar.addfile(ti)
        for d in ("bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc", "root", "proc", "sys",
                  "dev", "var", "var/run"):
            add_dir(d)
        add_dir("tmp", 0o1777)
        with open(busybox_binary, "rb") as fh:
            data = fh.read()
        ti = tarfile.TarInfo("bin/busybox")
        ti.size = len(data)
        ti.mode = 0o755
        tar.addfile(ti, io.BytesIO(data))
        for applet in applets:
            applet = applet.strip().lstrip("/")
            if not applet or applet == "bin/busybox":
                continue
            ti = tarfile.TarInfo(applet)
            ti.type = tarfile.SYMTYPE
            ti.linkname = "/bin/busybox"
            tar.addfile(ti)
        for name, text in (("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"),
                           ("etc/group", "root:x:0:\nnogroup:x:65534:\n")):
            raw = text.encode()
            ti = tarfile.TarInfo(name)
            ti.size = len(raw)
            ti.mode = 0o644
            tar.addfile(ti, io.BytesIO(raw))
    tmp = out_path + ".tmp"
    with open(tmp, "wb") as fh:
        fh.write(buf.getvalue())
    os.rename(tmp, out_path)


def _build(key, final, log, suite):
    build = final + ".build-%d" % os.getpid()
    rootfs = os.path.join(build, "rootfs")
    os.makedirs(build)
    os.makedirs(DEB_CACHE, exist_ok=True)
    t0 = time.monotonic()
    try:
        _run(["debootstrap", "--cache-dir=" + DEB_CACHE,
              suite, rootfs, MIRROR], log)
        with open(os.path.join(rootfs, "etc/apt/sources.list"), "w") as fh:
            fh.write("deb %s %s main\ndeb %s %s-updates main\ndeb %s %s-security main\n"
                     % (MIRROR, suite, MIRROR, suite, SECURITY_MIRROR, suite))
        with open(os.path.join(rootfs, "usr/sbin/policy-rc.d"), "w") as fh:
            fh.write("#!/bin/sh\nexit 101\n")
        os.chmod(os.path.join(rootfs, "usr/sbin/policy-rc.d"), 0o755)
        shutil.copy("/etc/resolv.conf", os.path.join(rootfs, "etc/resolv.conf"))
        _run(["mount", "-t", "proc", "proc", os.path.join(rootfs, "proc")], log)
        _run(["mount", "--bind", "/dev", os.path.join(rootfs, "dev")], log)
        _run(["mount", "--bind", DEB_CACHE, os.path.join(rootfs, "var/cache/apt/archives")], log)
        env = dict(PATH="/usr/sbin:/usr/bin:/sbin:/bin", DEBIAN_FRONTEND="noninteractive",
                   LANG="C.UTF-8", HOME="/root")
        _run(["chroot", rootfs, "apt-get", "update"], log, env=env)
        _run(["chroot", rootfs, "apt-get", "-y", "--no-install-recommends",
              "-o", "Dpkg::Options::=--force-confold", "install"] + suite_packages(suite), log, env=env)
        umount_all_under(os.path.join(rootfs, "var/cache/apt/archives"))
        shutil.copy(SETUP_SCRIPT, os.path.join(rootfs, "tmp/image-setup.sh"))
        _run(["chroot", rootfs, "/bin/sh", "/tmp/image-setup.sh"], log, env=env)
        os.unlink(os.path.join(rootfs, "tmp/image-setup.sh"))
        applets = subprocess.run([CONTROLLER_BUSYBOX, "--list-full"],
                                 capture_output=True, text=True, check=True).stdout.split()
        pkgs = subprocess.run(["chroot", rootfs, "dpkg-query", "-W", "-f", "${Package} ${Version}\n"],
                              capture_output=True, text=True, check=True, env=env).stdout.split("\n")
    finally:
        umount_all_under(rootfs)
    os.unlink(os.path.join(rootfs, "usr/sbin/policy-rc.d"))
    with open(os.path.join(rootfs, "etc/resolv.conf"), "w"):
        pass
    make_busybox_tar(CONTROLLER_BUSYBOX, applets, os.path.join(build, "busybox.tar"))
    os.makedirs(os.path.dirname(rootfs + BUSYBOX_IN_IMAGE), exist_ok=True)
    shutil.copy(os.path.join(build, "busybox.tar"), rootfs + BUSYBOX_IN_IMAGE)
    seconds = time.monotonic() - t0
    manifest = {"key": key, "suite": suite, "variant": VARIANT, "packages": suite_packages(suite),
                "builder": BUILDER_VERSION, "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "build_seconds": round(seconds, 1), "installed": [p for p in pkgs if p]}
    with open(os.path.join(build, "manifest.json"), "w") as fh:
        json.dump(manifest, fh, indent=1)
    os.rename(build, final)
    return seconds


def images_in_use():
    """Cache entries that some overlay mount uses as its lower layer."""
    used = set()
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            if " - overlay " in line and CACHE_ROOT in line:
                rest = line.split(CACHE_ROOT + "/", 1)[1]
                used.add(rest.split("/", 1)[0])
    return used


def entry_suite(path):
    """The suite of a cache entry (from its manifest; None when it has none or cannot be read)."""
    try:
        with open(os.path.join(path, "manifest.json")) as fh:
            return json.load(fh).get("suite")
    except (OSError, ValueError):
        return None


def prune_candidates(names, keep_key, suite, used, suite_of):
    """The cache entries to remove after `keep_key` (an image of `suite`) was built: the other
    entries of the same suite that no mounted host uses.  An image of another suite is kept: it
    is current for its own suite, and another cluster may be about to mount it."""
    return sorted(n for n in names if n != keep_key and len(n) == 16 and n not in used
                  and suite_of(n) == suite)


def prune_images(keep_key, verbose=True, suite=DEFAULT_SUITE):
    """Remove cached images of `suite` other than `keep_key` that no mounted host uses."""
    used = images_in_use()
    names = [n for n in os.listdir(CACHE_ROOT) if os.path.isdir(os.path.join(CACHE_ROOT, n))]
    for name in prune_candidates(names, keep_key, suite, used, lambda n: entry_suite(os.path.join(CACHE_ROOT, n))):
        path = os.path.join(CACHE_ROOT, name)
        if mounts_under(path):
            continue
        if verbose:
            print("pruning old %s image %s" % (suite, name), flush=True)
        safe_rmtree(path)


def ensure_image(rebuild=False, verbose=True, suite=DEFAULT_SUITE):
    """Return the cached Image of `suite`, building it first if its key is not cached."""
    key = image_key(suite=suite)
    os.makedirs(CACHE_ROOT, exist_ok=True)
    final = os.path.join(CACHE_ROOT, key)
    with open(os.path.join(CACHE_ROOT, ".lock"), "w") as lockf:
        fcntl.flock(lockf, fcntl.LOCK_EX)
        # leftovers of interrupted builds (never remove anything still mounted)
        for name in os.listdir(CACHE_ROOT):
            if ".build-" in name:
                path = os.path.join(CACHE_ROOT, name)
                umount_all_under(path)
                safe_rmtree(path)
        if rebuild and os.path.isdir(final):
            umount_all_under(final)
            safe_rmtree(final)
        if not os.path.isfile(os.path.join(final, "manifest.json")):
            if os.path.isdir(final):
                safe_rmtree(final)
            log_path = os.path.join(CACHE_ROOT, key + ".build.log")
            if verbose:
                print("building %s image %s (log: %s)" % (suite, key, log_path), flush=True)
            with open(log_path, "wb") as log:
                seconds = _build(key, final, log, suite)
            shutil.move(log_path, os.path.join(final, "build.log"))
            if verbose:
                print("%s image %s built in %.1fs" % (suite, key, seconds), flush=True)
            prune_images(key, verbose, suite)
    return Image(key, final, suite)
