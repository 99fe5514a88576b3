"""Run the collection's modules the way Ansible does: a module process fed its arguments as JSON.

The module runs with the Python of the ansible-core under test (support/ansible_under_test.py:
OVERLAY_FLANNEL_ANSIBLE_VENV, else the tests' own), so its ansible.module_utils and etcd
libraries are that venv's.
"""

import json
import os
import subprocess
import tempfile

from support.ansible_under_test import python

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS = os.path.join(REPO, ".cache", "collections")


def run_module(name, args, check=False, diff=False, timeout=120):
    """Run plugins/modules/<name>.py with `args`; returns its JSON result (with 'failed' on failure)."""
    payload = dict(args)
    payload["_ansible_check_mode"] = check
    payload["_ansible_diff"] = diff
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump({"ANSIBLE_MODULE_ARGS": payload}, fh)
        path = fh.name
    try:
        env = dict(os.environ, PYTHONPATH=COLLECTIONS)
        proc = subprocess.run([python(), os.path.join(REPO, "plugins", "modules", name + ".py"), path],
                              capture_output=True, text=True, env=env, timeout=timeout, check=False)
    finally:
        os.unlink(path)
    try:
        result = json.loads(proc.stdout)
    except ValueError:
        raise AssertionError("module %s printed no JSON (rc=%s):\nstdout: %s\nstderr: %s"
                             % (name, proc.returncode, proc.stdout, proc.stderr))
    if proc.returncode != 0:
        result.setdefault("failed", True)
    return result


def lease_keys(client, prefix):
    """{key name under <prefix>/subnets/ (10.5.3.0-24): its KV} as etcd holds them."""
    _rev, kvs = client.get_prefix(prefix + "/subnets/")
    return {kv.key.rsplit("/", 1)[1]: kv for kv in kvs}
