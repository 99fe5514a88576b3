"""The repository as the collection overlay.flannel, for the benchmark scripts (run as scripts, not tests).

Importing this links the checkout under .cache/collections/ansible_collections/overlay/flannel (as
tests/conftest.py does for the tests) and puts that collections path on sys.path, so that a script can
import `ansible_collections.overlay.flannel...` next.
"""

import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS = os.path.join(REPO, ".cache", "collections")


def link_collection() -> None:
    """The repository as the collection overlay.flannel under .cache/ (replaced atomically when it points
    elsewhere)."""
    parent = os.path.join(COLLECTIONS, "ansible_collections", "overlay")
    link = os.path.join(parent, "flannel")
    if os.path.realpath(link) != REPO:
        os.makedirs(parent, exist_ok=True)
        tmp = f"{link}.{os.getpid()}"
        os.symlink(REPO, tmp)
        os.replace(tmp, link)


if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)
link_collection()
