"""Write tests/sanity/ignore-X.Y.txt for every ansible-core that the tests run sanity with, from ONE list.

    python3 tools/sanity_ignores.py           write the files (and remove those of versions no longer tested)
    python3 tools/sanity_ignores.py --check   exit 1, naming them, when the files are not what the list makes

The list is tests/sanity/ignores.txt (its header says the format). The versions are the
ansible-core pins of requirements/controller*.txt: each such file is a controller the
suite runs `ansible-test sanity` with (controller-min.txt: the oldest claimed,
controller.txt: the Debian 12 one, controller-2.20.txt / controller-2.21.txt: the
Debian 13 controller's). ansible-test reads only the file of its own minor release,
and rejects entries for tests it does not have or that no longer find anything, so
an entry can be limited to some versions (only=2.16) and a test name can hold
{python}, the Python that version's sanity run uses (SANITY_PYTHON).
"""

import glob
import os
import re
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCE = os.path.join(REPO, "tests", "sanity", "ignores.txt")
OUT_DIR = os.path.join(REPO, "tests", "sanity")
OUT_RE = re.compile(r"^ignore-(\d+\.\d+)\.txt$")

# The Python each version's sanity run uses (tests/sanity/run.sh SANITY_PYTHON): the
# Debian 12 machine's 3.11 for 2.16 and 2.19, the Debian 13 controller's 3.13 for 2.20
# and 2.21 (which need 3.12 or newer on the controller).
SANITY_PYTHON = {"2.16": "3.11", "2.19": "3.11", "2.20": "3.13", "2.21": "3.13"}

# The generated files carry no header: ansible-test rejects a line that is only a comment.


class ListError(ValueError):
    pass


def tested_versions(repo=REPO):
    """{'2.16', '2.19', ...}: the minor release of every ansible-core pin in requirements/controller*.txt."""
    versions = set()
    for path in sorted(glob.glob(os.path.join(repo, "requirements", "controller*.txt"))):
        with open(path, encoding="utf-8") as fh:
            pins = re.findall(r"^ansible-core==(\d+)\.(\d+)\.", fh.read(), re.M)
        if len(pins) != 1:
            raise ListError("%s pins ansible-core %d times" % (os.path.relpath(path, repo), len(pins)))
        versions.add("%s.%s" % pins[0])
    return versions


def parse(text, versions):
    """[(path, test, only, reason)] from the list's text; ListError naming the line when one is wrong."""
    entries = []
    for no, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        entry, sep, reason = line.partition(" #")
        reason = reason.strip()
        if not sep or not reason:
            raise ListError("ignores.txt line %d: an entry needs its reason after ' # '" % no)
        fields = entry.split()
        if len(fields) not in (2, 3):
            raise ListError("ignores.txt line %d: expected '<path> <test> [only=X.Y,...] # reason', got %r" % (no, entry))
        only = None
        if len(fields) == 3:
            if not fields[2].startswith("only="):
                raise ListError("ignores.txt line %d: unknown field %r (only=X.Y,... expected)" % (no, fields[2]))
            only = set(fields[2][len("only="):].split(","))
            unknown = sorted(only - set(versions))
            if unknown:
                raise ListError("ignores.txt line %d: only= names %s, which no requirements/controller*.txt pins"
                                % (no, ", ".join(unknown)))
        entries.append((fields[0], fields[1], only, reason))
    return entries


def render(entries, version):
    """The text of ignore-<version>.txt."""
    try:
        python = SANITY_PYTHON[version]
    except KeyError:
        raise ListError("no sanity Python known for ansible-core %s: add it to SANITY_PYTHON" % version)
    lines = []
    for path, test, only, reason in entries:
        if only is None or version in only:
            lines.append("%s %s # %s\n" % (path, test.replace("{python}", python), reason))
    return "".join(lines)


def expected(repo=REPO):
    """{file name: text} of every ignore file the list makes."""
    versions = tested_versions(repo)
    with open(os.path.join(repo, "tests", "sanity", "ignores.txt"), encoding="utf-8") as fh:
        entries = parse(fh.read(), versions)
    return {"ignore-%s.txt" % v: render(entries, v) for v in sorted(versions)}


def stale(repo=REPO):
    """The file names under tests/sanity/ that differ from what the list makes (missing, changed or extra)."""
    want = expected(repo)
    out_dir = os.path.join(repo, "tests", "sanity")
    have = {n for n in os.listdir(out_dir) if OUT_RE.match(n)}
    wrong = sorted(have - set(want))
    for name, text in sorted(want.items()):
        try:
            with open(os.path.join(out_dir, name), encoding="utf-8") as fh:
                if fh.read() == text:
                    continue
        except FileNotFoundError:
            pass
        wrong.append(name)
    return sorted(wrong)


def write(repo=REPO):
    out_dir = os.path.join(repo, "tests", "sanity")
    want = expected(repo)
    for name in os.listdir(out_dir):
        if OUT_RE.match(name) and name not in want:
            os.unlink(os.path.join(out_dir, name))
    for name, text in want.items():
        tmp = os.path.join(out_dir, "." + name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, os.path.join(out_dir, name))
    return sorted(want)


def main(argv):
    try:
        if argv == ["--check"]:
            wrong = stale()
            if wrong:
                print("tests/sanity: %s not generated from tests/sanity/ignores.txt; run python3 tools/sanity_ignores.py"
                      % ", ".join(wrong), file=sys.stderr)
                return 1
            return 0
        if argv:
            print(__doc__.strip().split("\n\n", maxsplit=1)[0], file=sys.stderr)
            return 2
        print("wrote " + ", ".join("tests/sanity/" + n for n in write()))
        return 0
    except ListError as err:
        print("sanity_ignores: %s" % err, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
