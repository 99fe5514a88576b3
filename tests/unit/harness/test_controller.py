"""The Debian 13 controller's wrappers and cache key (tests/cluster/harness/controller.py), without building it."""

import os
import subprocess

from cluster.harness import controller


def test_the_wrappers_enter_the_controller_and_the_same_paths_mean_the_venv_inside(tmp_path):
    final = str(tmp_path / "key")
    os.makedirs(os.path.join(final, "rootfs"))
    controller.write_wrappers(final)
    for version in ("2.20", "2.21"):
        wrapper = os.path.join(final, "venv-%s" % version, "bin", "ansible-playbook")
        assert os.access(wrapper, os.X_OK)
        with open(wrapper) as fh:
            last = fh.read().splitlines()[-1]
        assert last == 'exec %s/enter.sh %s/rootfs /opt/ansible-%s/bin/ansible-playbook "$@"' % (final, final, version)
        # inside the controller, the wrapper directory's path is the virtualenv itself
        assert os.readlink(os.path.join(final, "rootfs") + os.path.join(final, "venv-%s" % version)) == \
            "/opt/ansible-%s" % version
    assert os.access(os.path.join(final, "enter.sh"), os.X_OK)
    # again (every ensure_controller does it): the same, nothing left over
    before = sorted(os.listdir(os.path.join(final, "venv-2.21", "bin")))
    controller.write_wrappers(final)
    assert sorted(os.listdir(os.path.join(final, "venv-2.21", "bin"))) == before == sorted(controller.TOOLS)


def test_a_build_writes_wrappers_for_where_it_will_be_renamed_to(tmp_path):
    build, final = str(tmp_path / "key.build-1"), str(tmp_path / "key")
    os.makedirs(os.path.join(build, "rootfs"))
    controller.write_wrappers(build, final)
    with open(os.path.join(build, "venv-2.21", "bin", "python")) as fh:
        assert "%s/enter.sh %s/rootfs " % (final, final) in fh.read()
    assert os.path.islink(os.path.join(build, "rootfs") + os.path.join(final, "venv-2.21"))


def test_the_key_follows_the_pins_and_the_image():
    assert controller.controller_key("a" * 16) == controller.controller_key("a" * 16)
    assert controller.controller_key("a" * 16) != controller.controller_key("b" * 16)
    assert set(controller.VERSIONS.values()) == {"controller-2.20.txt", "controller-2.21.txt"}


def test_enter_refuses_to_bind_host_configuration(tmp_path):
    root = tmp_path / "rootfs"
    for d in ("proc", "dev", "tmp", "etc"):
        (root / d).mkdir(parents=True)
    proc = subprocess.run([controller.ENTER, str(root), "/bin/true"], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, OVERLAY_FLANNEL_CONTROLLER_BIND="/etc"), check=False)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "refusing to bind /etc into the controller" in proc.stderr
