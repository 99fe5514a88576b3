"""The modules through a real ansible-playbook run: module_defaults group, idempotence, check and diff."""

import json
import os
import re
import subprocess
import sys
import textwrap

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


def play(tmp_path, etcd, *extra):
    book = tmp_path / "play.yml"
    out = tmp_path / "info.json"
    book.write_text(PLAY.format(endpoint=etcd["etcd_endpoints"][0], prefix=etcd["etcd_prefix"], out=out))
    inventory = tmp_path / "inventory.ini"
    inventory.write_text("localhost ansible_connection=local ansible_python_interpreter=%s\n" % sys.executable)
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_STDOUT_CALLBACK="default", ANSIBLE_RETRY_FILES_ENABLED="0")
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", str(inventory),
                           str(book)] + list(extra), capture_output=True, text=True, env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
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
