"""The forwarder's systemd unit as the role renders it (its template and vars, through ansible-playbook), rated by
`systemd-analyze security --offline=yes`: systemd 252 of this Debian 12 machine and, when it is cached, systemd 257
of the Debian 13 controller (tests/cluster/harness/controller.py). The cheap check of the combinations no cluster
scenario runs (ports below 1024, a host whose ping_group_range leaves the forwarder's group out, operator
settings); the cluster test reads the running daemon (tests/cluster/test_site.py)."""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from cluster.harness import controller

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
ROLES = os.path.join(REPO, "roles")
MAX_EXPOSURE = 2.5  # the bound, on Debian 12 and 13
GID = 998

# name: (host's net.ipv4.ping_group_range, the network config's backend port, role variables, capabilities)
CASES = {
    "debian12": ("1\t0", 8285, {}, ["CAP_NET_ADMIN"]),
    "debian13": ("0\t2147483647", 8285, {}, ["CAP_NET_ADMIN"]),
    "vxlan": ("0\t2147483647", 8472, {}, ["CAP_NET_ADMIN"]),
    "host-gw": ("1\t0", None, {}, ["CAP_NET_ADMIN"]),
    "low-ports-own-range": ("100\t200", 443, {"flannel_forwarder_healthz_port": 80},
                            ["CAP_NET_BIND_SERVICE", "CAP_NET_ADMIN", "CAP_NET_RAW"]),
    "probes-off-own-range": ("100\t200", 8285, {"flannel_forwarder_probe_interval": 0}, ["CAP_NET_ADMIN"]),
    "extra": ("1\t0", 8285, {"flannel_forwarder_unit_extra": {
        "Service": {"MemoryMax": "64M", "IPAddressDeny": ["any"], "IPAddressAllow": ["10.0.0.0/8", "localhost"]}}},
        ["CAP_NET_ADMIN"]),
}

PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  vars_files:
    - {roles}/common/defaults/main.yml
    - {roles}/common/vars/main.yml
    - {roles}/forwarder/defaults/main.yml
    - {roles}/forwarder/vars/main.yml
  tasks:
    - name: Render the unit of each case
      ansible.builtin.template:
        src: {roles}/forwarder/templates/flannel-forwarder.service.j2
        dest: "{{{{ out }}}}/{{{{ item.key }}}}/flannel-forwarder.service"
        mode: "0644"
      loop: "{{{{ cases | dict2items }}}}"
      vars:
        flannel_host_probe:
          host: {{ping_group_range: "{{{{ item.value.range }}}}", forwarder_account: {{uid: {gid}, gid: {gid}, user_gid: {gid}}}}}
        flannel_lease: {{backend_port: "{{{{ item.value.port }}}}", backend_type: udp}}
        flannel_forwarder_healthz_port: "{{{{ item.value.vars.flannel_forwarder_healthz_port | default(0) }}}}"
        flannel_forwarder_probe_interval: "{{{{ item.value.vars.flannel_forwarder_probe_interval | default(10.0) }}}}"
        flannel_forwarder_unit_extra: "{{{{ item.value.vars.flannel_forwarder_unit_extra | default({{}}) }}}}"
"""


@pytest.fixture(scope="module")
def units(tmp_path_factory):
    """{case: the rendered unit's path}, from one ansible-playbook run."""
    out = tmp_path_factory.mktemp("units")
    for name in CASES:
        (out / name).mkdir()
    book = out / "render.yml"
    book.write_text(PLAYBOOK.format(roles=ROLES, gid=GID))
    cases = dict((name, dict(range=r, port=port, vars=v)) for name, (r, port, v, _caps) in CASES.items())
    tool = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    run = subprocess.run([tool, "-i", "localhost,", "-c", "local", "-e", "ansible_python_interpreter=" + sys.executable,
                          "-e", json.dumps(dict(cases=cases, out=str(out))), str(book)],
                         capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    return dict((name, str(out / name / "flannel-forwarder.service")) for name in CASES)


def settings(path, key):
    with open(path) as fh:
        return [line.split("=", 1)[1] for line in fh.read().splitlines() if line.startswith(key + "=")]


def exposure(argv):
    run = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", run.stdout)
    assert found, run.stdout + run.stderr
    return float(found.group(1)), run.stdout


def local_offline_analyze():
    if shutil.which("systemd-analyze") is None:
        return None
    helptext = subprocess.run(["systemd-analyze", "--help"], capture_output=True, text=True, check=False).stdout
    return ["systemd-analyze"] if "--offline" in helptext else None  # systemd 250 and later


@pytest.mark.parametrize("name", list(CASES))
def test_each_case_holds_exactly_its_capabilities(units, name):
    caps = CASES[name][3]
    assert settings(units[name], "CapabilityBoundingSet") == [" ".join(caps)]
    assert settings(units[name], "AmbientCapabilities") == [" ".join(caps)]
    assert settings(units[name], "User") == ["flannel-forwarder"]


def test_operator_settings_are_added_in_their_section(units):
    assert settings(units["extra"], "MemoryMax") == ["64M"]
    assert settings(units["extra"], "IPAddressAllow") == ["10.0.0.0/8", "localhost"]
    assert "flannel_forwarder_unit_extra" not in open(units["debian12"]).read()


@pytest.mark.parametrize("name", list(CASES))
def test_exposure_at_most_2_5_on_this_machines_systemd(units, name):
    argv = local_offline_analyze()
    if argv is None:
        pytest.fail("this machine's systemd-analyze has no --offline (systemd older than 250; Debian 12 has 252)",
                    pytrace=False)
    score, text = exposure(argv + ["security", "--offline=yes", units[name]])
    assert score <= MAX_EXPOSURE, text


@pytest.mark.parametrize("name", list(CASES))
def test_exposure_at_most_2_5_on_debian_13s_systemd(units, name):
    found = controller.find_controller()
    if found is None:
        pytest.fail("no Debian 13 controller cached: make controller (make test builds it in its set-up)",
                    pytrace=False)
    score, text = exposure([controller.ENTER, found.rootfs, "systemd-analyze", "security", "--offline=yes",
                            units[name]])
    assert score <= MAX_EXPOSURE, text
