"""The modules through a real ansible-playbook run: module_defaults group, idempotence, check and diff.

The ansible-playbook (and the Python of localhost) is the one of the ansible-core under test
(support/ansible_under_test.py).
"""

import json
import os
import re
import subprocess
import textwrap

from support.ansible_under_test import python, tool

PLAY = textwrap.dedent("""\
    - name: Seed and lease
      hosts: localhost
      gather_facts: false
      module_defaults:
        group/overlay.flannel.etcd:
          etcd_endpoints: ["{endpoint}"]
          etcd_prefix: "{prefix}"
      tasks:
        - name: Network config
          overlay.flannel.network:
            network: 10.5.0.0/16
            backend:
              port: "{{{{ 8285 + 1 }}}}"
        - name: Leases for three hosts
          overlay.flannel.subnet:
            public_ip: "192.0.2.{{{{ item }}}}"
          loop: [1, 2, 3]
          register: leases
        - name: Listing
          overlay.flannel.subnet_info:
          register: info
        - name: Write what was seen
          ansible.builtin.copy:
            content: "{{{{ info | to_json }}}}"
            dest: "{out}"
            mode: "0600"
          check_mode: false
          changed_when: false
    """)


def assert_no_deprecation(proc):
    """Whatever ansible-core runs the play (the newest, the oldest, 2.20 in the Debian 13 controller)
    finds nothing deprecated in our modules, roles and plays."""
    found = [line for line in (proc.stdout + proc.stderr).splitlines() if "[DEPRECATION WARNING]" in line]
    assert not found, found


def ansible_playbook():
    path = tool("ansible-playbook")
    assert path, "ansible-playbook not installed (make venv)"
    return path


def play(tmp_path, etcd, *extra):
    book = tmp_path / "play.yml"
    out = tmp_path / "info.json"
    book.write_text(PLAY.format(endpoint=etcd["etcd_endpoints"][0], prefix=etcd["etcd_prefix"], out=out))
    inventory = tmp_path / "inventory.ini"
    inventory.write_text("localhost ansible_connection=local ansible_python_interpreter=%s\n" % python())
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_STDOUT_CALLBACK="default", ANSIBLE_RETRY_FILES_ENABLED="0")
    proc = subprocess.run([ansible_playbook(), "-i", str(inventory),
                           str(book)] + list(extra), capture_output=True, text=True, env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert_no_deprecation(proc)
    recap = re.search(r"localhost\s+:\s+ok=(\d+)\s+changed=(\d+)", proc.stdout)
    return int(recap.group(2)), json.loads(out.read_text()), proc.stdout


def test_playbook_converges_then_reports_no_change(tmp_path, etcd):
    changed, info, _out = play(tmp_path, etcd)
    assert changed == 2  # the config, and the looped lease task
    assert info["config"]["Backend"] == {"Type": "udp", "Port": 8286}
    assert sorted(e["public_ip"] for e in info["leases"]) == ["192.0.2.1", "192.0.2.2", "192.0.2.3"]
    assert len(set(e["subnet"] for e in info["leases"])) == 3
    changed, again, _out = play(tmp_path, etcd)
    assert changed == 0
    assert [e["subnet"] for e in again["leases"]] == [e["subnet"] for e in info["leases"]]
    changed, _info, out = play(tmp_path, etcd, "--check", "--diff")
    assert changed == 0, out


def test_check_diff_on_an_empty_prefix_changes_nothing(tmp_path, etcd, client):
    changed, info, out = play(tmp_path, etcd, "--check", "--diff")
    assert changed == 2
    assert '"Network": "10.5.0.0/16"' in out  # the diff of the config
    assert info["leases"] == [] and info["config"] is None
    assert client.get(etcd["etcd_prefix"] + "/config") is None


ROLE_PLAY = textwrap.dedent("""\
    - name: The network role
      hosts: localhost
      gather_facts: false
      vars:
        flannel_etcd_endpoints: ["{endpoint}"]
        flannel_etcd_prefix: "{prefix}"
      roles:
        - role: overlay.flannel.network
    """)


def role_play(tmp_path, etcd, extra_vars):
    book = tmp_path / "role.yml"
    book.write_text(ROLE_PLAY.format(endpoint=etcd["etcd_endpoints"][0], prefix=etcd["etcd_prefix"]))
    inventory = tmp_path / "inventory.ini"
    inventory.write_text("localhost ansible_connection=local ansible_python_interpreter=%s\n" % python())
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_STDOUT_CALLBACK="default", ANSIBLE_RETRY_FILES_ENABLED="0")
    proc = subprocess.run([ansible_playbook(), "-i", str(inventory),
                           str(book), "-e", json.dumps(extra_vars)],
                          capture_output=True, text=True, env=env, timeout=300, check=False)
    recap = re.search(r"localhost\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=\d+\s+failed=(\d+)", proc.stdout)
    assert recap, proc.stdout + proc.stderr
    assert_no_deprecation(proc)
    return proc.returncode, int(recap.group(2)), proc.stdout + proc.stderr


def stored_backend(client, prefix):
    kv = client.get(prefix + "/config")
    return None if kv is None else json.loads(kv.value)["Backend"]


def test_network_role_backend_variables(tmp_path, etcd, client):
    prefix = etcd["etcd_prefix"]
    # The role's defaults: udp on its own port.
    rc, changed, out = role_play(tmp_path, etcd, {})
    assert rc == 0 and changed == 1, out
    assert stored_backend(client, prefix) == {"Type": "udp", "Port": 8285}
    # vxlan: the vxlan variables apply, and only those (the module refuses another type's options).
    vxlan = {"flannel_backend_type": "vxlan", "flannel_backend_vni": "42", "flannel_backend_direct_routing": "true"}
    rc, changed, out = role_play(tmp_path, etcd, vxlan)
    assert rc == 0 and changed == 1, out
    assert stored_backend(client, prefix) == {"Type": "vxlan", "VNI": 42, "Port": 0, "GBP": False, "Learning": False,
                                              "DirectRouting": True}
    rc, changed, out = role_play(tmp_path, etcd, dict(vxlan, flannel_backend_vni=42))
    assert rc == 0 and changed == 0, out
    rc, changed, out = role_play(tmp_path, etcd, dict(vxlan, flannel_backend_port=4789))
    assert rc == 0 and changed == 1, out
    assert stored_backend(client, prefix)["Port"] == 4789
    # host-gw: the port, VNI and direct routing are ignored.
    rc, changed, out = role_play(tmp_path, etcd, dict(vxlan, flannel_backend_type="host-gw", flannel_backend_port=4789))
    assert rc == 0 and changed == 1, out
    assert stored_backend(client, prefix) == {"Type": "host-gw"}
    # udp with a port of its own.
    rc, changed, out = role_play(tmp_path, etcd, {"flannel_backend_port": 9000})
    assert rc == 0 and changed == 1, out
    assert stored_backend(client, prefix) == {"Type": "udp", "Port": 9000}
    # A type the role does not know is refused by its argument spec, nothing written.
    rc, changed, out = role_play(tmp_path, etcd, {"flannel_backend_type": "wireguard"})
    assert rc != 0 and "flannel_backend_type" in out and "wireguard" in out, out
    rc, changed, out = role_play(tmp_path, etcd, {"flannel_backend_type": "vxlan", "flannel_backend_vni": 16777216})
    assert rc != 0 and "Backend.VNI of the vxlan backend must be an integer in 0..16777215" in out, out
    assert stored_backend(client, prefix) == {"Type": "udp", "Port": 9000}
