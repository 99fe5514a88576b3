"""The ansible-core that these tests run the modules with is one that meta/runtime.yml claims.

`make test` runs the module tests twice: with the test venv's ansible-core (the
newest claimed) and, with OVERLAY_FLANNEL_ANSIBLE_VENV=.venv-min, with the oldest
(support/ansible_under_test.py).
"""

import subprocess

from support.ansible_under_test import core_version, python, tool
from support.requires_ansible import specifier


def test_the_ansible_core_under_test_is_claimed_by_requires_ansible():
    version = core_version()
    print("ansible-core under test: %s (%s)" % (version, python()))
    assert version in specifier(), "ansible-core %s is outside requires_ansible %s" % (version, specifier())


def test_its_ansible_playbook_is_the_same_ansible_core():
    out = subprocess.run([tool("ansible-playbook"), "--version"], capture_output=True, text=True, check=True,
                         timeout=60).stdout
    assert "[core %s]" % core_version() in out.splitlines()[0], out
