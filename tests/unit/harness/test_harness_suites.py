"""The pure parts of the test cluster harness's Debian suites: image keys, per-host suites, systemd's version
from a manifest, which cached images a build prunes."""

import pytest

from cluster.harness import image
from cluster.harness.cluster import Cluster, host_suites, systemd_major


def test_the_image_key_includes_the_suite_and_keeps_bookworms():
    setup = b"#!/bin/sh\n"
    bookworm = image.image_key(suite="bookworm", setup_text=setup)
    trixie = image.image_key(suite="trixie", setup_text=setup)
    assert bookworm != trixie and len(trixie) == 16
    assert image.image_key(setup_text=setup) == bookworm  # the default suite
    assert image.image_key(suite="trixie", setup_text=setup + b"# x\n") != trixie
    assert image.image_key(packages=["python3"], suite="trixie", setup_text=setup) != trixie
    # the inputs of the bookworm key are the ones before suites became a parameter: its cached image stays valid
    import hashlib
    import json
    old = hashlib.sha256(json.dumps({"suite": "bookworm", "variant": image.VARIANT, "packages": sorted(image.PACKAGES),
                                     "builder": image.BUILDER_VERSION}, sort_keys=True).encode() + setup)
    assert bookworm == old.hexdigest()[:16]


def test_an_unknown_suite_is_refused():
    with pytest.raises(ValueError, match="unknown suite 'sid'"):
        image.image_key(suite="sid", setup_text=b"")


@pytest.mark.parametrize("hosts, suites, mixed, expected", [
    (3, None, False, ["bookworm"] * 3),
    (2, "trixie", False, ["trixie", "trixie"]),
    (3, "bookworm,trixie,bookworm", False, ["bookworm", "trixie", "bookworm"]),
    (3, " bookworm , trixie,trixie", False, ["bookworm", "trixie", "trixie"]),
    (3, ["trixie", "bookworm", "trixie"], False, ["trixie", "bookworm", "trixie"]),
    (3, None, True, ["bookworm", "trixie", "bookworm"]),
    (1, None, True, ["bookworm"]),
])
def test_host_suites(hosts, suites, mixed, expected):
    assert host_suites(hosts, suites, mixed) == expected


@pytest.mark.parametrize("hosts, suites, mixed, words", [
    (3, "bookworm,trixie", False, "2 suites for 3 hosts"),
    (2, "bookworm,jessie", False, "unknown suite 'jessie'"),
    (2, "trixie", True, "not both"),
])
def test_host_suites_refused(hosts, suites, mixed, words):
    with pytest.raises(ValueError, match=words):
        host_suites(hosts, suites, mixed)


def test_each_host_records_its_suite(tmp_path):
    c = Cluster(str(tmp_path), hosts=3, suites="bookworm,trixie,bookworm")
    assert c.suites == {"flh1": "bookworm", "flh2": "trixie", "flh3": "bookworm"}
    assert c.state["hosts"]["flh2"]["suite"] == "trixie"
    assert Cluster(str(tmp_path / "d"), hosts=2).suites == {"flh1": "bookworm", "flh2": "bookworm"}


def test_systemd_major_from_a_manifest():
    assert systemd_major(["sudo 1.9", "systemd 257.9-1~deb13u1", "systemd-sysv 257.9-1~deb13u1"]) == 257
    assert systemd_major(["systemd 252.39-1~deb12u1"]) == 252
    assert systemd_major(["systemd 1:300.1"]) == 300
    assert systemd_major(["dbus 1.16"]) is None and systemd_major(None) is None


def test_a_build_prunes_only_unused_images_of_its_own_suite():
    suites = {"a" * 16: "bookworm", "b" * 16: "bookworm", "c" * 16: "trixie", "d" * 16: "trixie",
              "e" * 16: None, "f" * 16: "bookworm"}
    names = list(suites) + ["debs", "x.build-12"]
    used = {"b" * 16}
    assert image.prune_candidates(names, "a" * 16, "bookworm", used, suites.get) == ["f" * 16]
    assert image.prune_candidates(names, "c" * 16, "trixie", used, suites.get) == ["d" * 16]
