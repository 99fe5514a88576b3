"""meta/runtime.yml claims exactly the ansible-core range that `make test` tests.

The lower bound is the minor release pinned for .venv-min
(requirements/controller-min.txt), the upper bound the one after the minor
release pinned for .venv (requirements/controller.txt).
"""

from packaging.version import Version

from support.requires_ansible import claimed_range, pinned_core, specifier


def minor(version):
    return Version(version).release[:2]


def test_the_range_starts_at_the_minor_release_of_the_min_venv():
    lowest = claimed_range()[0]
    assert Version(lowest).release == minor(pinned_core("controller-min.txt")) + (0,), (lowest, specifier())


def test_the_range_ends_after_the_minor_release_of_the_main_venv():
    first_unclaimed = claimed_range()[1]
    major, minor_no = minor(pinned_core("controller.txt"))
    assert Version(first_unclaimed).release == (major, minor_no + 1, 0), (first_unclaimed, specifier())


def test_both_pins_are_claimed():
    for requirements in ("controller-min.txt", "controller.txt"):
        assert pinned_core(requirements) in specifier(), requirements
