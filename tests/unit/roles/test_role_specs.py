"""Each role's defaults and its argument spec say the same: every default is declared, with the same value."""

import os

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
ROLES = ["common", "network", "forwarder", "docker"]


def load(role, path):
    with open(os.path.join(REPO, "roles", role, path)) as fh:
        return yaml.safe_load(fh) or {}


@pytest.mark.parametrize("role", ROLES)
def test_every_default_is_declared_with_its_value(role):
    defaults = load(role, "defaults/main.yml")
    options = load(role, "meta/argument_specs.yml")["argument_specs"]["main"]["options"]
    for name, value in defaults.items():
        assert name in options, "%s: %s has a default but no argument spec" % (role, name)
        if isinstance(value, str) and "{{" in value:
            continue  # computed on the controller (a path under $HOME): the spec documents it
        assert options[name].get("default") == value, (role, name, value, options[name].get("default"))


@pytest.mark.parametrize("role", ROLES)
def test_a_setting_has_one_definition(role):
    """A variable is a default of one role only (overlay.flannel.common holds what the roles share)."""
    mine = set(load(role, "defaults/main.yml"))
    for other in ROLES:
        if other != role:
            assert not mine & set(load(other, "defaults/main.yml")), (role, other, mine & set(load(other, "defaults/main.yml")))


def test_the_probe_reads_the_paths_of_the_shared_settings():
    """The paths the probe reads are overlay.flannel.common's, so every role and playbook reads the same host."""
    common = load("common", "defaults/main.yml")
    for name in ("flannel_forwarder_python", "flannel_forwarder_prefix", "flannel_forwarder_config_dir",
                 "flannel_docker_daemon_json", "flannel_docker_dropin", "flannel_docker_bridge"):
        assert name in common, name
    with open(os.path.join(REPO, "roles", "common", "tasks", "probe.yml")) as fh:
        probe = fh.read()
    for name in ("flannel_forwarder_python", "flannel_forwarder_prefix", "flannel_docker_daemon_json",
                 "flannel_docker_dropin", "flannel_docker_bridge", "flannel_subnet_file", "flannel_docker_opts_file"):
        assert "{{ %s }}" % name in probe, name
