"""The collection's version is written in three places; a release bumps all three (CONTRIBUTING.md)."""

import os
import re

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def read(path):
    with open(os.path.join(REPO, path), encoding="utf-8") as fh:
        return fh.read()


def test_galaxy_pyproject_and_the_daemon_carry_one_version():
    galaxy = re.search(r"^version:\s*(\S+)$", read("galaxy.yml"), re.M).group(1)
    pyproject = re.search(r'^version\s*=\s*"([^"]+)"$', read("pyproject.toml"), re.M).group(1)
    daemon = re.search(r'^__version__\s*=\s*"([^"]+)"$', read("forwarder/flannel_forwarder/__init__.py"),
                       re.M).group(1)
    assert re.fullmatch(r"\d+\.\d+\.\d+", galaxy), galaxy
    assert (pyproject, daemon) == (galaxy, galaxy)
