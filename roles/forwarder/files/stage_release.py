# Copyright: overlay.flannel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Stage a self-contained release of flannel-forwarder for one kind of host, on the controller.

    stage_release.py stage COLLECTION_ROOT CACHE_DIR --python 3.11 --machine x86_64 --glibc 2.36 [--wheelhouse DIR]
    stage_release.py fill COLLECTION_ROOT WHEELHOUSE --target 3.11-x86_64-2.36 [--target ...]

A release is a directory that the host's own python3 runs, with no pip, venv
or network on the host:

    <name>/bin/flannel-forwarder   launcher: puts <name>/lib first on sys.path
    <name>/lib/                    flannel_forwarder, the collection's module_utils and every
                                   dependency, unpacked from wheels for that host's Python,
                                   machine and C library (byte-compiled, when the controller's
                                   Python is the host's: else the host compiles it)
    <name>/release.json            what it was made of

It is packed as CACHE_DIR/releases/<name>.tar.gz, where <name> hashes the
files the daemon is made of, the pinned requirements, this builder and the
target, so a release is built once per content and target and reused after.
The pure-Python wheels (the daemon itself, and the pins published only as a
source archive) are built once per content, whatever the target; the binary
ones are wheels of the target's tags from the package index. Prints one JSON
object: name, archive, built, target.

With --wheelhouse, nothing but that directory is used (pip --no-index): it is
filled beforehand, on a machine that reaches a package index, by `fill`
(playbooks/wheelhouse.yml, `make wheelhouse`) for a list of targets
(<python>-<machine>-<glibc>), and its wheelhouse.json says for which. A target
it does not cover is refused with the command that fills it.
"""

import argparse
import compileall
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile

BUILDER_VERSION = "2"
MANIFEST = "wheelhouse.json"
FILL_COMMAND = "ansible-playbook overlay.flannel.wheelhouse -e flannel_forwarder_wheelhouse=%s -e flannel_wheelhouse_targets=%s"
TOP_FILES = ("pyproject.toml", "requirements/forwarder.txt")
TREES = ("forwarder/flannel_forwarder", "plugins/module_utils")
REQUIREMENTS = "requirements/forwarder.txt"
# Pins published only as a source archive: built into a (pure) wheel here once.
# (pip download --only-binary would silently pick an old release of etcd3.)
SOURCE_ONLY = ("etcd3",)
# pyproject.toml names README.md as the long description; the collection's README
# changes often and says nothing the daemon needs, so a stub stands in for it
# (an edit of the README must not restart every forwarder).
README_STUB = "flannel-forwarder, the udp-backend forwarder of the overlay.flannel Ansible collection.\n"
OLDEST_MANYLINUX = 17  # manylinux2014 = manylinux_2_17: the oldest glibc the binary wheels are built for

LAUNCHER = '''"""flannel-forwarder from this release directory (run by the host's python3 -I)."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.realpath(__file__))), "lib"))

from flannel_forwarder.cli import main  # noqa: E402

sys.exit(main())
'''


class StageError(Exception):
    pass


def source_files(root):
    files = [f for f in TOP_FILES if os.path.exists(os.path.join(root, f))]
    for tree in TREES:
        for dirpath, dirnames, filenames in os.walk(os.path.join(root, tree)):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
            for name in sorted(filenames):
                if not name.endswith((".pyc", ".pyo")):
                    files.append(os.path.relpath(os.path.join(dirpath, name), root))
    return sorted(files)


def content_digest(root, files):
    digest = hashlib.sha256(("builder %s\0" % BUILDER_VERSION).encode())
    for rel in files:
        digest.update(rel.encode() + b"\0")
        with open(os.path.join(root, rel), "rb") as fh:
            digest.update(fh.read())
        digest.update(b"\0")
    return digest


def pins(root):
    """{name: version} of the requirements file (name==version lines only)."""
    found = {}
    with open(os.path.join(root, REQUIREMENTS), encoding="utf-8") as fh:
        for line in fh:
            match = re.match(r"^\s*([A-Za-z0-9_.-]+)==([^\s;#]+)", line)
            if match:
                found[match.group(1).lower()] = match.group(2)
    return found


def project_version(root):
    with open(os.path.join(root, "pyproject.toml"), encoding="utf-8") as fh:
        match = re.search(r'(?m)^version\s*=\s*"([^"]+)"', fh.read())
    if not match:
        raise StageError("no version in pyproject.toml")
    return match.group(1)


def platform_tags(machine, glibc):
    """pip --platform values a host with this machine and glibc can load, newest first."""
    if machine not in ("x86_64", "aarch64"):
        raise StageError("no binary wheels are staged for machine %r (x86_64 and aarch64 are)" % machine)
    minor = glibc_minor(glibc)
    if minor < 0:
        raise StageError("the host's C library is %r: the binary wheels need glibc 2.%d or newer"
                         % (glibc, OLDEST_MANYLINUX))
    if minor < OLDEST_MANYLINUX:
        raise StageError("the host has glibc %s: the binary wheels need 2.%d or newer" % (glibc, OLDEST_MANYLINUX))
    tags = ["manylinux_2_%d_%s" % (m, machine) for m in range(minor, OLDEST_MANYLINUX - 1, -1)]
    return tags + ["manylinux2014_%s" % machine]


def check_python(python):
    if not re.match(r"^3\.\d+$", python or ""):
        raise StageError("the host's Python is %r: a CPython 3.x is needed" % python)


def glibc_minor(glibc):
    match = re.match(r"^2\.(\d+)", glibc or "")
    return int(match.group(1)) if match else -1


def parse_target(text):
    """'3.13-aarch64-2.41' -> {"python": "3.13", "machine": "aarch64", "glibc": "2.41"}, checked."""
    parts = (text or "").strip().split("-")
    if len(parts) != 3:
        raise StageError("target %r is not <python>-<machine>-<glibc>, e.g. 3.11-x86_64-2.36" % text)
    target = dict(zip(("python", "machine", "glibc"), parts))
    check_python(target["python"])
    platform_tags(target["machine"], target["glibc"])
    return target


def target_name(target):
    return "%(python)s-%(machine)s-%(glibc)s" % target


def covers(have, want):
    """Wheels fetched for target `have` load on a host of target `want`: same Python and machine, and the
    host's glibc at least the one they were chosen for (manylinux wheels run on newer glibc)."""
    return (have["python"] == want["python"] and have["machine"] == want["machine"]
            and 0 <= glibc_minor(have["glibc"]) <= glibc_minor(want["glibc"]))


def read_manifest(wheelhouse):
    path = os.path.join(wheelhouse, MANIFEST)
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise StageError("%s is not JSON (%s): fill the wheelhouse again" % (path, exc))


def check_wheelhouse(manifest, wheelhouse, want_pins, target):
    """None when the wheelhouse (its manifest) can stage `target` with these pins, else StageError."""
    command = FILL_COMMAND % (wheelhouse, target_name(target))
    if manifest is None:
        raise StageError("the wheelhouse %s has no %s (it is filled by playbooks/wheelhouse.yml): on a machine "
                         "that reaches a package index, run: %s" % (wheelhouse, MANIFEST, command))
    if manifest.get("pins") != want_pins:
        differ = sorted(name for name in set(want_pins) | set(manifest.get("pins") or {})
                        if (manifest.get("pins") or {}).get(name) != want_pins.get(name))
        raise StageError("the wheelhouse %s holds other versions of %s than requirements/forwarder.txt pins: "
                         "fill it again for this collection with: %s" % (wheelhouse, ", ".join(differ), command))
    if not any(covers(have, target) for have in manifest.get("targets", [])):
        raise StageError("the wheelhouse %s has no wheels for Python %s on %s with glibc %s (it has: %s): on a "
                         "machine that reaches a package index, run: %s"
                         % (wheelhouse, target["python"], target["machine"], target["glibc"],
                            ", ".join(target_name(t) for t in manifest.get("targets", [])) or "none", command))


def build_requires(root):
    """The [build-system] requires of pyproject.toml (what building the daemon's wheel needs)."""
    with open(os.path.join(root, "pyproject.toml"), encoding="utf-8") as fh:
        match = re.search(r"(?ms)^\[build-system\].*?^requires\s*=\s*\[(.*?)\]", fh.read())
    if not match:
        raise StageError("no [build-system] requires in pyproject.toml")
    return re.findall(r'"([^"]+)"', match.group(1))


def index_args(wheelhouse):
    return ["--no-index", "--find-links", wheelhouse] if wheelhouse else []


def no_wheel_hint(output):
    """What to do about a pin that has no wheel for the target (pip: 'No matching distribution found for X')."""
    missing = re.findall(r"No matching distribution found for (\S+)", output)
    if not missing:
        return ""
    return ("\n%s is published with no wheel for this Python and machine (python-pytun 2.4.2, for one, has x86_64 "
            "wheels only): build it on such a machine (pip wheel --no-deps %s) into the wheelhouse, fill the "
            "wheelhouse for this target (the wheel put there is taken) and set flannel_forwarder_wheelhouse to it"
            % (", ".join(missing), " ".join(missing)))


def pip(args, what):
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check"] + args
    res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, check=False)
    if res.returncode != 0:
        raise StageError("%s failed (%s):\n%s%s" % (what, " ".join(cmd), res.stdout[-4000:], no_wheel_hint(res.stdout)))


def pure_wheels(root, cache, files, digest, wheelhouse=None):
    """The directory of the pure-Python wheels of this content (built once)."""
    target = os.path.join(cache, "pure", digest.hexdigest()[:16])
    if os.path.exists(os.path.join(target, ".complete")):
        return target
    os.makedirs(os.path.dirname(target), exist_ok=True)
    work = tempfile.mkdtemp(prefix=".build-", dir=os.path.dirname(target))
    try:
        src = os.path.join(work, "src")
        for rel in files:
            os.makedirs(os.path.dirname(os.path.join(src, rel)), exist_ok=True)
            shutil.copy2(os.path.join(root, rel), os.path.join(src, rel))
        with open(os.path.join(src, "README.md"), "w", encoding="utf-8") as fh:
            fh.write(README_STUB)
        out = os.path.join(work, "wheels")
        versions = pins(root)
        specs = ["%s==%s" % (name, versions[name]) for name in SOURCE_ONLY if name in versions]
        pip(["wheel", "--quiet", "--no-deps", "--wheel-dir", out] + index_args(wheelhouse) + [src] + specs,
            "building the pure-Python wheels")
        open(os.path.join(out, ".complete"), "w").close()
        shutil.rmtree(target, ignore_errors=True)
        os.rename(out, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def require_pip():
    if importlib.util.find_spec("pip") is None:
        raise StageError("the controller's Python (%s) has no pip, which stages the forwarder for the hosts: "
                         "install it (Debian: python3-pip) or run ansible-playbook from a virtualenv" % sys.executable)


def stage(root, cache, python, machine, glibc, wheelhouse=None):
    require_pip()
    check_python(python)
    target = dict(python=python, machine=machine, glibc=glibc)
    if wheelhouse:
        check_wheelhouse(read_manifest(wheelhouse), wheelhouse, pins(root), target)
    files = source_files(root)
    digest = content_digest(root, files)
    pure = pure_wheels(root, cache, files, digest.copy(), wheelhouse)
    digest.update(json.dumps(target, sort_keys=True).encode())
    name = "%s-py%s-%s-%s" % (project_version(root), python, machine, digest.hexdigest()[:12])
    archive = os.path.join(cache, "releases", name + ".tar.gz")
    if os.path.exists(archive):
        return dict(name=name, archive=archive, built=False, target=target)
    os.makedirs(os.path.dirname(archive), exist_ok=True)
    work = tempfile.mkdtemp(prefix=".build-", dir=os.path.dirname(archive))
    try:
        top = os.path.join(work, name)
        platform_args = []
        for tag in platform_tags(machine, glibc):
            platform_args += ["--platform", tag]
        pip(["install", "--quiet", "--no-compile", "--target", os.path.join(top, "lib"),
             "--only-binary=:all:", "--implementation", "cp", "--python-version", python] + platform_args
            + index_args(wheelhouse)
            + ["--find-links", pure, "-r", os.path.join(root, REQUIREMENTS), "flannel-forwarder==%s" % project_version(root)],
            "staging the release for Python %s on %s (glibc %s)%s"
            % (python, machine, glibc, " from the wheelhouse " + wheelhouse if wheelhouse else ""))
        shutil.rmtree(os.path.join(top, "lib", "bin"), ignore_errors=True)  # console scripts for another Python
        precompile(os.path.join(top, "lib"), python)
        os.makedirs(os.path.join(top, "bin"))
        with open(os.path.join(top, "bin", "flannel-forwarder"), "w", encoding="utf-8") as fh:
            fh.write(LAUNCHER)
        with open(os.path.join(top, "release.json"), "w", encoding="utf-8") as fh:
            json.dump(dict(name=name, target=target, version=project_version(root), pins=pins(root),
                           builder=BUILDER_VERSION), fh, indent=1, sort_keys=True)
        partial = archive + ".partial"
        with tarfile.open(partial, "w:gz", compresslevel=3) as tar:
            tar.add(top, arcname=name)
        os.rename(partial, archive)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return dict(name=name, archive=archive, built=True, target=target)


def precompile(lib, python):
    """Byte-compile the release here once when this Python is the host's (major.minor: one bytecode format),
    instead of on every host: the host's compile pass (unpack_release.py) then finds every file up to date. The
    archive keeps the files' times, which the bytecode is checked against."""
    if python != "%d.%d" % sys.version_info[:2]:
        return False
    if not compileall.compile_dir(lib, quiet=1, rx=re.compile(r"/tests?/")):
        raise StageError("byte-compiling the release in %s failed" % lib)
    return True


def fill(root, wheelhouse, targets):
    """Download into `wheelhouse` the binary wheels of every target, build the source-only pins into wheels,
    add what building the daemon's wheel needs, and record it all in wheelhouse.json (added to what an
    earlier fill recorded, while the pins are the same)."""
    require_pip()
    versions = pins(root)
    os.makedirs(wheelhouse, exist_ok=True)
    manifest = read_manifest(wheelhouse)
    known = manifest["targets"] if manifest and manifest.get("pins") == versions else []
    with tempfile.TemporaryDirectory(prefix=".fill-", dir=wheelhouse) as work:
        binary = os.path.join(work, "binary.txt")
        with open(binary, "w", encoding="utf-8") as fh:
            fh.writelines("%s==%s\n" % (name, version) for name, version in sorted(versions.items())
                          if name not in SOURCE_ONLY)
        for target in targets:
            platform_args = []
            for tag in platform_tags(target["machine"], target["glibc"]):
                platform_args += ["--platform", tag]
            # --find-links: a wheel put there by hand (built on a machine of that kind) is taken as it is.
            pip(["download", "--quiet", "--dest", wheelhouse, "--find-links", wheelhouse, "--only-binary=:all:",
                 "--implementation", "cp", "--python-version", target["python"]] + platform_args + ["-r", binary],
                "downloading the wheels for %s" % target_name(target))
        specs = ["%s==%s" % (name, versions[name]) for name in SOURCE_ONLY if name in versions]
        pip(["wheel", "--quiet", "--no-deps", "--wheel-dir", wheelhouse] + specs, "building %s" % ", ".join(specs))
        pip(["download", "--quiet", "--dest", wheelhouse, "--only-binary=:all:"] + build_requires(root),
            "downloading what building the daemon's wheel needs")
    merged = list(known) + [t for t in targets if t not in known]
    out = dict(pins=versions, targets=merged, builder=BUILDER_VERSION)
    partial = os.path.join(wheelhouse, MANIFEST + ".partial")
    with open(partial, "w", encoding="utf-8") as fh:
        json.dump(out, fh, indent=1, sort_keys=True)
    os.replace(partial, os.path.join(wheelhouse, MANIFEST))
    return dict(wheelhouse=wheelhouse, targets=merged, target_names=[target_name(t) for t in merged],
                added=[t for t in targets if t not in known])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_stage = sub.add_parser("stage", help="stage (or find) the release for one kind of host")
    p_stage.add_argument("root")
    p_stage.add_argument("cache")
    p_stage.add_argument("--python", required=True, help="the hosts' Python, major.minor")
    p_stage.add_argument("--machine", required=True, help="the hosts' machine (uname -m)")
    p_stage.add_argument("--glibc", required=True, help="the hosts' glibc version")
    p_stage.add_argument("--wheelhouse", default="", help="use only the wheels of this directory (see fill)")
    p_fill = sub.add_parser("fill", help="fill a wheelhouse for air-gapped controllers")
    p_fill.add_argument("root")
    p_fill.add_argument("wheelhouse")
    p_fill.add_argument("--target", action="append", required=True,
                        help="<python>-<machine>-<glibc>, e.g. 3.11-x86_64-2.36 (repeat, or separate with commas)")
    args = parser.parse_args(argv)
    expand = os.path.abspath(os.path.expanduser(args.wheelhouse)) if args.wheelhouse else None
    try:
        if args.cmd == "stage":
            out = stage(os.path.realpath(args.root), os.path.abspath(os.path.expanduser(args.cache)),
                        args.python, args.machine, args.glibc, expand)
        else:
            targets = [parse_target(t) for arg in args.target for t in re.split(r"[\s,]+", arg) if t]
            out = fill(os.path.realpath(args.root), expand, targets)
    except StageError as exc:
        sys.stderr.write("stage_release: %s\n" % exc)
        return 1
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
