"""tests/sanity/ignore-X.Y.txt are generated from the one list, tests/sanity/ignores.txt
(tools/sanity_ignores.py), for exactly the ansible-core versions the suite pins."""

import importlib.util
import os
import shutil

import pytest

from support.requires_ansible import REPO, pinned_core

spec = importlib.util.spec_from_file_location("sanity_ignores", os.path.join(REPO, "tools", "sanity_ignores.py"))
sanity_ignores = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sanity_ignores)

PINS = ("controller-min.txt", "controller.txt", "controller-2.20.txt", "controller-2.21.txt")


def test_the_committed_ignore_files_are_the_generated_ones():
    assert sanity_ignores.stale() == [], "run tools/sanity_ignores.py"


def test_one_file_for_every_pinned_ansible_core():
    minors = {".".join(pinned_core(r).split(".")[:2]) for r in PINS}
    assert sanity_ignores.tested_versions() == minors
    assert set(sanity_ignores.expected()) == {"ignore-%s.txt" % m for m in minors}
    assert set(sanity_ignores.SANITY_PYTHON) >= minors


@pytest.fixture
def repo(tmp_path):
    """A copy of the parts of the repository the generator reads and writes."""
    shutil.copytree(os.path.join(REPO, "requirements"), tmp_path / "requirements")
    shutil.copytree(os.path.join(REPO, "tests", "sanity"), tmp_path / "tests" / "sanity")
    return tmp_path


def write_list(repo, text):
    (repo / "tests" / "sanity" / "ignores.txt").write_text(text)


def test_an_edit_of_the_list_makes_the_files_stale_until_written(repo):
    write_list(repo, "a.py pep8:E501 # long\nb.py import-{python} only=2.16,2.21 # b imports c\n")
    assert sanity_ignores.stale(str(repo)) == ["ignore-2.16.txt", "ignore-2.19.txt", "ignore-2.20.txt", "ignore-2.21.txt"]
    sanity_ignores.write(str(repo))
    assert sanity_ignores.stale(str(repo)) == []
    out = repo / "tests" / "sanity"
    assert (out / "ignore-2.16.txt").read_text() == "a.py pep8:E501 # long\nb.py import-3.11 # b imports c\n"
    assert (out / "ignore-2.19.txt").read_text() == "a.py pep8:E501 # long\n"
    assert (out / "ignore-2.21.txt").read_text() == "a.py pep8:E501 # long\nb.py import-3.13 # b imports c\n"


def test_a_hand_edit_of_a_generated_file_is_stale(repo):
    with open(repo / "tests" / "sanity" / "ignore-2.20.txt", "a") as fh:
        fh.write("x.py pep8 # by hand\n")
    assert sanity_ignores.stale(str(repo)) == ["ignore-2.20.txt"]


def test_the_file_of_a_version_no_longer_pinned_is_stale_and_removed(repo):
    (repo / "tests" / "sanity" / "ignore-2.17.txt").write_text("")
    assert sanity_ignores.stale(str(repo)) == ["ignore-2.17.txt"]
    sanity_ignores.write(str(repo))
    assert not (repo / "tests" / "sanity" / "ignore-2.17.txt").exists()


@pytest.mark.parametrize("line, message", [
    ("a.py pep8\n", "needs its reason"),
    ("a.py pep8 extra # why\n", "unknown field 'extra'"),
    ("a.py pep8 only=2.18 # why\n", "only= names 2.18"),
    ("a.py # why\n", "expected '<path> <test>"),
])
def test_a_wrong_line_is_named(repo, line, message):
    write_list(repo, "# comment\n" + line)
    with pytest.raises(sanity_ignores.ListError, match="line 2: .*" + message):
        sanity_ignores.expected(str(repo))
