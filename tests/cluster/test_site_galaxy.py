"""The collection as a user gets it: the built tarball, installed (tests/cluster/conftest.py `built`).

`ansible-galaxy collection build` makes the tarball from this checkout (with
galaxy.yml's build_ignore) and `ansible-galaxy collection install` puts it into
an empty collections path. Here: what the tarball holds and that ansible sees
only the installed copy. site.yml from it (`ansible-playbook
overlay.flannel.site` from a temporary directory with only that path) runs in
test_site_mixed.py, on the mixed-release fleet, from the Debian 13 controller
(ansible-core 2.21, conftest.py `debian13`, which installs this tarball with its
own ansible-galaxy): it must converge, the overlay must work, and a second run
must change nothing; a file the roles or the forwarder need that build_ignore
left out fails there.
"""

import json
import os
import tarfile

from cluster.flannel_helpers import REPO, ansible_tool, run_checked


def test_tarball_holds_the_licence_and_names_it(built):
    tarball = built[0]
    with tarfile.open(tarball) as tar:
        names = set(tar.getnames())
        manifest = json.load(tar.extractfile("MANIFEST.json"))
        licence = tar.extractfile("LICENSE").read().decode()
    info = manifest["collection_info"]
    assert info["license_file"] == "LICENSE"
    assert "GNU GENERAL PUBLIC LICENSE" in licence and "Version 3, 29 June 2007" in licence
    with open(os.path.join(REPO, "LICENSE"), encoding="utf-8") as fh:
        assert licence == fh.read()
    # What the tarball must not carry: the checkout's tests, benchmarks, virtualenvs and caches.
    tops = {n.split("/", 1)[0] for n in names}
    assert not tops & {"tests", "bench", ".venv", ".cache", ".git", ".hypothesis", ".pytest_cache"}, tops
    assert not [n for n in names if n.startswith(".venv") or "__pycache__" in n]
    # What users run from it: every playbook, and what the forwarder role stages the daemon from.
    for need in ("playbooks/site.yml", "playbooks/wheelhouse.yml", "roles/forwarder/files/stage_release.py",
                 "pyproject.toml", "requirements/forwarder.txt", "forwarder/flannel_forwarder/cli.py"):
        assert need in names, need


def test_installed_collection_is_the_only_one_ansible_sees(built):
    _tarball, collections, work, env = built
    installed = os.path.join(collections, "ansible_collections", "overlay", "flannel")
    assert not os.path.islink(installed) and os.path.isfile(os.path.join(installed, "MANIFEST.json"))
    res = run_checked([ansible_tool("ansible-galaxy"), "collection", "list", "overlay.flannel", "--format", "json"],
                      cwd=work, env=env)
    found = json.loads(res.stdout)
    assert list(found) == [os.path.join(collections, "ansible_collections")], found
