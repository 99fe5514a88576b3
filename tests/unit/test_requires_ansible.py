"""meta/runtime.yml claims exactly the ansible-core range that `make test` tests.

The lower bound is the minor release pinned for .venv-min
(requirements/controller-min.txt), the upper bound the one after the newest
minor release pinned for a controller the suite runs (requirements/controller*.txt:
the Debian 12 .venv's controller.txt, the Debian 13 controller's
controller-2.20.txt and controller-2.21.txt, tests/cluster/harness/controller.py).
"""

import glob
import os

from packaging.version import Version

from support.requires_ansible import REPO, claimed_range, pinned_core, specifier

PINS = sorted(os.path.basename(p) for p in glob.glob(os.path.join(REPO, "requirements", "controller*.txt")))


def minor(version):
    return Version(version).release[:2]


def test_every_controller_the_suite_runs_is_pinned():
    assert PINS == ["controller-2.20.txt", "controller-2.21.txt", "controller-min.txt", "controller.txt"], PINS


def test_the_range_starts_at_the_minor_release_of_the_min_venv():
    lowest = claimed_range()[0]
    assert Version(lowest).release == minor(pinned_core("controller-min.txt")) + (0,), (lowest, specifier())
    assert all(minor(pinned_core(r)) >= minor(lowest) for r in PINS)


def test_the_range_ends_after_the_newest_pinned_minor_release():
    first_unclaimed = claimed_range()[1]
    major, minor_no = max(minor(pinned_core(r)) for r in PINS)
    assert Version(first_unclaimed).release == (major, minor_no + 1, 0), (first_unclaimed, specifier())


def test_every_pin_is_claimed():
    for requirements in PINS:
        assert pinned_core(requirements) in specifier(), requirements
