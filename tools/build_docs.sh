#!/usr/bin/env bash
# The collection's HTML docs site, built the way docs.ansible.com builds a
# collection's docs (antsibull-docs sphinx-init, antsibull-docs collection,
# sphinx-build):
#
#   ANSIBLE_COLLECTIONS_PATH=DIR tools/build_docs.sh VENV OUT
#
# VENV has requirements/docs.txt (make docs makes it: build/docs-venv), DIR
# holds ansible_collections/overlay/flannel (make docs: .cache/collections, a
# link to this checkout). Writes OUT/site (the Sphinx project), OUT/html (the
# site: OUT/html/index.html) and OUT/warnings.log.
#
# The guide pages, docs/*.md (Markdown, readable in the repository; the README
# links to them), are added to the site as they are: antsibull-docs takes only
# RST extra docs (docs/docsite/rst/*.rst), so Sphinx reads them itself with MyST
# (myst-parser, requirements/docs.txt) from rst/guide/, listed in the site's
# index in the order of their file names. A new page needs no registration.
#
# Offline by default: the links into the Python, Jinja and Ansible docs
# (intersphinx) are not fetched, and the three labels of the Ansible docs that
# the generated pages refer to are the only warnings allowed. With
# DOCS_INTERSPHINX=1 the inventories are fetched (internet needed) and every
# warning fails the build.
set -euo pipefail

if [ $# -ne 2 ]; then
  echo "usage: ANSIBLE_COLLECTIONS_PATH=DIR $0 VENV OUT" >&2
  exit 2
fi
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=$(realpath "$1")
out=$(realpath -m "$2")
: "${ANSIBLE_COLLECTIONS_PATH:?set ANSIBLE_COLLECTIONS_PATH to the path that holds ansible_collections/overlay/flannel}"
# antsibull-docs runs ansible-doc and ansible from PATH.
export PATH="$venv/bin:$PATH"

rm -rf "$out"
mkdir -p "$out/site"
chmod og-w "$out/site"  # antsibull-docs writes only into directories no one else may write to
antsibull-docs sphinx-init --use-current --fail-on-error --dest-dir "$out/site" \
  --project overlay.flannel --copyright "overlay.flannel contributors" --title overlay.flannel \
  overlay.flannel
if [ "${DOCS_INTERSPHINX:-0}" != 1 ]; then
  printf '\n# make docs: offline (tools/build_docs.sh; DOCS_INTERSPHINX=1 fetches the inventories)\nintersphinx_mapping = {}\n' \
    >> "$out/site/conf.py"
fi
printf '\n# make docs: the guide pages, docs/*.md (tools/build_docs.sh)\nextensions.append("myst_parser")\nmyst_heading_anchors = 3\n' \
  >> "$out/site/conf.py"

cd "$out/site"
mkdir -p rst
chmod og-w rst
antsibull-docs --config-file antsibull-docs.cfg collection --cleanup everything --fail-on-error \
  --use-current --dest-dir rst overlay.flannel
mkdir -p rst/guide
cp "$repo"/docs/*.md rst/guide/
printf '\n.. toctree::\n   :maxdepth: 1\n   :caption: Guide:\n   :glob:\n\n   guide/*\n' >> rst/index.rst
if [ "${DOCS_INTERSPHINX:-0}" = 1 ]; then
  sphinx-build -b html -c . -W --keep-going -w "$out/warnings.log" rst "$out/html"
else
  sphinx-build -b html -c . --keep-going -w "$out/warnings.log" rst "$out/html"
  unexpected=$(grep -v -e "undefined label: 'common_return_values'" \
                       -e "undefined label: 'ansible_configuration_settings'" \
                       -e "undefined label: 'action_plugins'" "$out/warnings.log" || true)
  if [ -n "$unexpected" ]; then
    echo "sphinx-build warnings:" >&2
    echo "$unexpected" >&2
    exit 1
  fi
fi
echo "docs: $out/html/index.html"
