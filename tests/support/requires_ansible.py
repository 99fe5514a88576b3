"""The ansible-core range the collection claims (meta/runtime.yml requires_ansible) and the pins it is tested with."""

import os
import re

import yaml
from packaging.specifiers import SpecifierSet

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def specifier():
    with open(os.path.join(REPO, "meta", "runtime.yml"), encoding="utf-8") as fh:
        return SpecifierSet(yaml.safe_load(fh)["requires_ansible"])


def claimed_range():
    """(lowest version claimed, first version not claimed): ('2.16.0', '2.20.0') for ">=2.16.0,<2.20.0"."""
    spec = specifier()
    lower = [s.version for s in spec if s.operator == ">="]
    upper = [s.version for s in spec if s.operator == "<"]
    if len(lower) != 1 or len(upper) != 1 or len(spec) != 2:
        raise AssertionError("requires_ansible must be '>=X.Y.0,<X.Z.0', got %r" % str(spec))
    return lower[0], upper[0]


def pinned_core(requirements):
    """The ansible-core version pinned in requirements/<requirements> (ansible-core==X.Y.Z)."""
    with open(os.path.join(REPO, "requirements", requirements), encoding="utf-8") as fh:
        pins = re.findall(r"^ansible-core==(\S+)", fh.read(), re.M)
    if len(pins) != 1:
        raise AssertionError("requirements/%s pins ansible-core %d times" % (requirements, len(pins)))
    return pins[0]
