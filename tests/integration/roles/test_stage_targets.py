"""roles/forwarder/files/stage_release.py against the real package index: releases for hosts unlike the controller.

No aarch64 host is available here, so what is checked for aarch64 is what the controller makes: the wheels
chosen for that target (read from the ELF headers of the extension modules in the release), through the
wheelhouse path an arm64 fleet needs (python-pytun 2.4.2 publishes x86_64 wheels only; a stand-in wheel
under an aarch64 name takes the place of the one a user builds on an arm64 machine). The x86_64 release for
another Python than the controller's is checked the same way, with no index at all once the wheelhouse is
filled.
"""

import glob
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tarfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
STAGE = os.path.join(REPO, "roles", "forwarder", "files", "stage_release.py")
ELF_MACHINE = {62: "x86_64", 183: "aarch64"}
OFFLINE = {"PIP_CONFIG_FILE": os.devnull, "PIP_INDEX_URL": "http://127.0.0.1:9/simple"}


def stage_release(*args, env=None):
    environ = dict(os.environ, **(env or {}))
    if env:
        environ.pop("PIP_FIND_LINKS", None)
        environ.pop("PIP_EXTRA_INDEX_URL", None)
    return subprocess.run([sys.executable, STAGE] + list(args), capture_output=True, text=True, env=environ,
                          timeout=600, check=False)


def extension_machines(archive):
    """{member: machine} of the release's compiled extension modules, from their ELF headers."""
    out = {}
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            if member.isfile() and ".so" in os.path.basename(member.name):
                head = tar.extractfile(member).read(20)
                if head[:4] == b"\x7fELF":
                    out[member.name] = ELF_MACHINE.get(struct.unpack("<H", head[18:20])[0], "other")
    return out


def release_json(archive):
    with tarfile.open(archive) as tar:
        name = next(n for n in tar.getnames() if n.endswith("/release.json"))
        return json.load(tar.extractfile(name))


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory):
    return str(tmp_path_factory.mktemp("wheels"))


def test_aarch64_without_a_pytun_wheel_is_refused_with_what_to_do(wheelhouse):
    res = stage_release("fill", REPO, wheelhouse, "--target", "3.11-aarch64-2.36")
    assert res.returncode == 1
    assert "python-pytun==2.4.2 is published with no wheel for this Python and machine" in res.stderr, res.stderr
    assert not os.path.exists(os.path.join(wheelhouse, "wheelhouse.json"))


def test_an_aarch64_release_holds_aarch64_extensions_only(wheelhouse, tmp_path):
    # The stand-in for the python-pytun wheel a user builds on an arm64 machine (its content is not used here).
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                    "--python-version", "3.11", "--platform", "manylinux_2_28_x86_64", "--dest", str(tmp_path / "x86"),
                    "python-pytun==2.4.2"], check=True, timeout=300)
    built = glob.glob(str(tmp_path / "x86" / "python_pytun-2.4.2-cp311-*.whl"))
    shutil.copy(built[0], os.path.join(wheelhouse, "python_pytun-2.4.2-cp311-cp311-manylinux_2_17_aarch64.whl"))
    res = stage_release("fill", REPO, wheelhouse, "--target", "3.11-aarch64-2.36")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["targets"] == [{"python": "3.11", "machine": "aarch64", "glibc": "2.36"}]
    res = stage_release("stage", REPO, str(tmp_path / "cache"), "--python", "3.11", "--machine", "aarch64",
                        "--glibc", "2.38", "--wheelhouse", wheelhouse, env=OFFLINE)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["built"] and out["name"].startswith("0.1.0-py3.11-aarch64-")
    machines = extension_machines(out["archive"])
    numpy = [m for n, m in machines.items() if "/lib/numpy/" in n]
    grpc = [m for n, m in machines.items() if "/lib/grpc/" in n]
    assert numpy and grpc and set(numpy) == set(grpc) == {"aarch64"}, machines
    assert release_json(out["archive"])["target"] == {"python": "3.11", "machine": "aarch64", "glibc": "2.38"}


OTHER_PYTHON = "3.13" if sys.version_info[:2] != (3, 13) else "3.12"


@pytest.fixture(scope="module")
def other_wheels(tmp_path_factory):
    """A wheelhouse filled for an x86_64 host whose Python is not the controller's."""
    wheels = str(tmp_path_factory.mktemp("other-wheels"))
    res = stage_release("fill", REPO, wheels, "--target", "%s-x86_64-2.41" % OTHER_PYTHON)
    assert res.returncode == 0, res.stderr
    return wheels


def test_a_release_for_another_python_than_the_controllers_from_the_wheelhouse_alone(other_wheels, tmp_path):
    other = OTHER_PYTHON
    res = stage_release("stage", REPO, str(tmp_path / "cache"), "--python", other, "--machine", "x86_64",
                        "--glibc", "2.41", "--wheelhouse", other_wheels, env=OFFLINE)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    tag = "cpython-%s-x86_64-linux-gnu" % other.replace(".", "")
    with tarfile.open(out["archive"]) as tar:
        numpy = [n for n in tar.getnames() if "/lib/numpy/_core/_multiarray_umath" in n]
    assert numpy and all(tag in n for n in numpy), numpy
    assert set(extension_machines(out["archive"]).values()) == {"x86_64"}


STAGE_PLAY = """- name: Stage as the forwarder's preflight does
  hosts: all
  gather_facts: false
  tasks:
    - name: Stage the forwarder release for this host
      overlay.flannel.stage_release:
        target: "{{ target }}"
        cache: %(cache)s
        wheelhouse: %(wheels)s
      register: staged

    - name: Show it
      ansible.builtin.debug:
        msg: "staged {{ staged.name }} built={{ staged.built }}"
"""


def test_forks_of_one_run_stage_each_kind_of_host_once_and_a_bad_host_fails_alone(other_wheels, tmp_path):
    """overlay.flannel.stage_release through ansible-playbook: five hosts of one kind in five forks on an empty
    cache build one release, every host gets it; a host of a machine no release is made for fails with the
    stager's reason, and the others go on."""
    cache = str(tmp_path / "cache")
    book = tmp_path / "stage.yml"
    book.write_text(STAGE_PLAY % dict(cache=cache, wheels=other_wheels))
    same = "{'python': '%s', 'machine': 'x86_64', 'glibc': '2.41'}" % OTHER_PYTHON
    inventory = tmp_path / "inventory.ini"
    inventory.write_text("".join('h%d ansible_connection=local target="%s"\n' % (i, same) for i in range(5))
                         + "odd ansible_connection=local target=\"{'python': '%s', 'machine': 'sparc64', "
                         "'glibc': '2.41'}\"\n" % OTHER_PYTHON)
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_STDOUT_CALLBACK="default", ANSIBLE_RETRY_FILES_ENABLED="0",
               ANSIBLE_FORKS="6", **OFFLINE)
    ansible_playbook = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    proc = subprocess.run([ansible_playbook, "-i", str(inventory), str(book)], capture_output=True, text=True,
                          env=env, timeout=600, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    staged = re.findall(r'ok: \[(h\d)\] => \{\s*"msg": "staged (\S+) built=(\w+)"', out)
    assert sorted(h for h, _name, _built in staged) == ["h%d" % i for i in range(5)], out
    assert len({name for _h, name, _built in staged}) == 1, staged
    assert [built for _h, _name, built in staged].count("True") == 1, staged
    assert re.search(r"changed: \[h\d\]", out) and len(re.findall(r"changed: \[h\d\]", out)) == 1, out
    assert ("odd (Python %s, sparc64, glibc 2.41): stage_release: the wheelhouse %s has no wheels for Python %s on "
            "sparc64 with glibc 2.41" % (OTHER_PYTHON, other_wheels, OTHER_PYTHON)) in out, out
    archives = os.listdir(os.path.join(cache, "releases"))
    assert archives == [staged[0][1] + ".tar.gz"], archives
    # The run's note of what it staged goes with the next run that finds it ended.
    assert not [n for n in os.listdir(os.path.join(cache, ".runs")) if n.endswith(".partial")]
