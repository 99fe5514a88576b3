"""Which ansible-core the tests run the collection with.

By default the one of the Python that runs the tests (.venv: the newest
ansible-core meta/runtime.yml claims). OVERLAY_FLANNEL_ANSIBLE_VENV=DIR names
another virtualenv (make's .venv-min: the oldest claimed ansible-core), whose
python then runs the modules (tests/support/modules.py) and whose
ansible-playbook and ansible run the plays (tests/integration/etcd,
tests/cluster/flannel_helpers.py), while pytest itself, its fixtures and the
test harnesses stay in the test venv.
"""

import os
import shutil
import subprocess
import sys

ENV = "OVERLAY_FLANNEL_ANSIBLE_VENV"


def venv_dir(venv=None):
    """The virtualenv under test: `venv`, else $OVERLAY_FLANNEL_ANSIBLE_VENV, else None (the test venv)."""
    venv = venv or os.environ.get(ENV) or None
    if venv and not os.access(os.path.join(venv, "bin", "python"), os.X_OK):
        raise RuntimeError("%s=%s is not a virtualenv (no bin/python); build it with make (.venv-min)" % (ENV, venv))
    return venv


def python(venv=None):
    """The Python that runs the modules on the controller: the venv's, else the tests' own."""
    venv = venv_dir(venv)
    return os.path.join(venv, "bin", "python") if venv else sys.executable


def tool(name, venv=None):
    """An ansible command (ansible-playbook, ansible, ...) of the venv under test; None when there is none."""
    venv = venv_dir(venv)
    if venv:
        path = os.path.join(venv, "bin", name)
        return path if os.access(path, os.X_OK) else None
    beside = os.path.join(os.path.dirname(sys.executable), name)
    return beside if os.access(beside, os.X_OK) else shutil.which(name)


def core_version(venv=None):
    """ansible-core's version in the venv under test, e.g. '2.16.19'."""
    out = subprocess.run([python(venv), "-c", "from ansible.release import __version__; print(__version__)"],
                         capture_output=True, text=True, check=True, timeout=60)
    return out.stdout.strip()
