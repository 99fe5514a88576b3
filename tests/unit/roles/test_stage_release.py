"""The pure parts of roles/forwarder/files/stage_release.py: wheel tags per host, pins, names."""

import importlib.util
import os

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
SPEC = importlib.util.spec_from_file_location("stage_release",
                                              os.path.join(REPO, "roles", "forwarder", "files", "stage_release.py"))
stage_release = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(stage_release)


def test_platform_tags_cover_every_glibc_from_the_hosts_down_to_manylinux2014():
    tags = stage_release.platform_tags("x86_64", "2.36")
    assert tags[0] == "manylinux_2_36_x86_64" and tags[-2:] == ["manylinux_2_17_x86_64", "manylinux2014_x86_64"]
    assert len(tags) == 36 - 17 + 2
    arm = stage_release.platform_tags("aarch64", "2.41")
    assert arm[0] == "manylinux_2_41_aarch64" and arm[-1] == "manylinux2014_aarch64"
    assert all(tag.endswith("_aarch64") for tag in arm)


@pytest.mark.parametrize("machine, glibc, words", [
    ("armv7l", "2.36", "no binary wheels are staged for machine 'armv7l'"),
    ("x86_64", "", "the binary wheels need glibc 2.17 or newer"),
    ("x86_64", "2.12", "the host has glibc 2.12: the binary wheels need 2.17 or newer"),
])
def test_hosts_without_wheels_are_refused_by_name(machine, glibc, words):
    with pytest.raises(stage_release.StageError) as err:
        stage_release.platform_tags(machine, glibc)
    assert words in str(err.value)


def test_pins_and_version_come_from_the_repository():
    pins = stage_release.pins(REPO)
    assert pins["etcd3"] == "0.12.0" and "numpy" in pins and "typing_extensions" in pins
    assert stage_release.project_version(REPO) == "0.1.0"
    assert set(stage_release.SOURCE_ONLY) <= set(pins)


def test_the_release_key_follows_the_sources_and_not_the_readme(tmp_path):
    root = tmp_path / "c"
    for rel in stage_release.source_files(REPO):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(open(os.path.join(REPO, rel), "rb").read())
    files = stage_release.source_files(str(root))
    first = stage_release.content_digest(str(root), files).hexdigest()
    (root / "README.md").write_text("edited")
    assert stage_release.content_digest(str(root), stage_release.source_files(str(root))).hexdigest() == first
    cli = root / "forwarder" / "flannel_forwarder" / "cli.py"
    cli.write_text(cli.read_text() + "\n# edited\n")
    assert stage_release.content_digest(str(root), files).hexdigest() != first
