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


# -- targets and the wheelhouse ----------------------------------------------------------------------------


@pytest.mark.parametrize("text, want", [
    ("3.11-x86_64-2.36", {"python": "3.11", "machine": "x86_64", "glibc": "2.36"}),
    ("3.13-aarch64-2.41", {"python": "3.13", "machine": "aarch64", "glibc": "2.41"}),
    (" 3.12-aarch64-2.17 ", {"python": "3.12", "machine": "aarch64", "glibc": "2.17"}),
])
def test_targets_are_parsed_for_both_machines(text, want):
    assert stage_release.parse_target(text) == want
    assert stage_release.target_name(want) == text.strip()


@pytest.mark.parametrize("text, words", [
    ("3.11-x86_64", "is not <python>-<machine>-<glibc>"),
    ("3.11-x86-64-2.36", "is not <python>-<machine>-<glibc>"),
    ("py3-x86_64-2.36", "a CPython 3.x is needed"),
    ("3.11-armv7l-2.36", "no binary wheels are staged for machine 'armv7l'"),
    ("3.11-aarch64-2.12", "the host has glibc 2.12"),
])
def test_bad_targets_are_refused_by_name(text, words):
    with pytest.raises(stage_release.StageError) as err:
        stage_release.parse_target(text)
    assert words in str(err.value)


def t(text):
    return stage_release.parse_target(text)


@pytest.mark.parametrize("have, want, ok", [
    ("3.11-x86_64-2.36", "3.11-x86_64-2.36", True),
    ("3.11-x86_64-2.36", "3.11-x86_64-2.41", True),    # manylinux wheels load on a newer glibc
    ("3.11-x86_64-2.36", "3.11-x86_64-2.31", False),   # not on an older one
    ("3.11-x86_64-2.36", "3.13-x86_64-2.36", False),   # another Python's extension modules
    ("3.13-x86_64-2.41", "3.13-aarch64-2.41", False),  # another machine
    ("3.13-aarch64-2.38", "3.13-aarch64-2.41", True),
])
def test_which_wheels_serve_which_host(have, want, ok):
    assert stage_release.covers(t(have), t(want)) is ok


PINS = {"numpy": "2.4.6", "etcd3": "0.12.0"}


def test_a_wheelhouse_that_covers_the_target_is_taken():
    manifest = {"pins": PINS, "targets": [t("3.11-x86_64-2.36"), t("3.13-aarch64-2.41")]}
    assert stage_release.check_wheelhouse(manifest, "/srv/w", PINS, t("3.13-aarch64-2.41")) is None
    assert stage_release.check_wheelhouse(manifest, "/srv/w", PINS, t("3.11-x86_64-2.39")) is None


@pytest.mark.parametrize("manifest, words", [
    (None, "the wheelhouse /srv/w has no wheelhouse.json"),
    ({"pins": dict(PINS, numpy="2.0.0"), "targets": [t("3.13-aarch64-2.41")]},
     "holds other versions of numpy than requirements/forwarder.txt pins"),
    ({"pins": PINS, "targets": [t("3.11-x86_64-2.36")]},
     "has no wheels for Python 3.13 on aarch64 with glibc 2.41 (it has: 3.11-x86_64-2.36)"),
    ({"pins": PINS, "targets": []}, "(it has: none)"),
])
def test_a_wheelhouse_without_the_target_names_it_and_the_command_that_fills_it(manifest, words):
    with pytest.raises(stage_release.StageError) as err:
        stage_release.check_wheelhouse(manifest, "/srv/w", PINS, t("3.13-aarch64-2.41"))
    assert words in str(err.value)
    assert ("ansible-playbook overlay.flannel.wheelhouse -e flannel_forwarder_wheelhouse=/srv/w "
            "-e flannel_wheelhouse_targets=3.13-aarch64-2.41") in str(err.value)


def test_the_build_requirements_come_from_pyproject():
    assert stage_release.build_requires(REPO) == ["setuptools>=68", "wheel"]


def test_staging_from_a_wheelhouse_never_asks_an_index():
    assert stage_release.index_args("/srv/w") == ["--no-index", "--find-links", "/srv/w"]
    assert stage_release.index_args(None) == []


def test_a_pin_without_a_wheel_for_the_target_is_named_with_what_to_do():
    out = ("ERROR: Could not find a version that satisfies the requirement python-pytun==2.4.2 (from versions: none)\n"
           "ERROR: No matching distribution found for python-pytun==2.4.2\n")
    hint = stage_release.no_wheel_hint(out)
    assert "python-pytun==2.4.2 is published with no wheel for this Python and machine" in hint
    assert "pip wheel --no-deps python-pytun==2.4.2" in hint and "flannel_forwarder_wheelhouse" in hint
    assert stage_release.no_wheel_hint("ERROR: some other failure") == ""
