#!/usr/bin/env bash
# Run ansible-lint (production profile) over the whole collection: galaxy.yml,
# meta/, plugins/ and, as they appear, roles/ and playbooks/. Settings and
# excluded paths are in .ansible-lint at the repo root.
#
#   VENV=/path/to/venv tests/lint/run.sh [extra ansible-lint args]
#   PATH=/path/to/venv/bin:$PATH tests/lint/run.sh
#
# Exit status: ansible-lint's; non-zero when it reports anything (set -e).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

if [[ -n "${VENV:-}" ]]; then
    PATH="$VENV/bin:$PATH"
    export PATH
fi
if ! command -v ansible-lint >/dev/null 2>&1; then
    echo "run.sh: ansible-lint not found; put the venv's bin/ on PATH or set VENV" >&2
    exit 2
fi

# Offline (also set in .ansible-lint): no Galaxy, no schema refresh, no
# version check over the network. Offline, ansible-lint does not install the
# collection it lints, so playbooks and roles that use overlay.flannel (its
# modules, the group/overlay.flannel.etcd module_defaults group) would fail
# the syntax check: make the checkout visible as overlay.flannel through a
# temporary collections path instead.
LINK=$(mktemp -d "${TMPDIR:-/tmp}/flannel-lint.XXXXXX")
trap 'rm -rf "$LINK"' EXIT
mkdir -p "$LINK/ansible_collections/overlay"
ln -s "$REPO" "$LINK/ansible_collections/overlay/flannel"
export ANSIBLE_COLLECTIONS_PATH="$LINK:${ANSIBLE_COLLECTIONS_PATH:-$HOME/.ansible/collections:/usr/share/ansible/collections}"
export ANSIBLE_LINT_SKIP_SCHEMA_UPDATE=1
export NO_COLOR=1

cd "$REPO"
# With no arguments ansible-lint finds every file of the project itself
# (through git, so files that are not committed yet count too).
ansible-lint --offline --profile production --config-file "$REPO/.ansible-lint" "$@"
