"""The settings table (plugins/module_utils/settings.py) against everything that cannot derive from it.

The roles' YAML (argument specs, defaults, vars, the forwarder's environment file, the common role's checks), the
modules' DOCUMENTATION and argument specs, and the daemon's flags are read as they are and compared with the table.
Each comparison is a function of the table that returns what does not agree, so a test can also show that a
changed default in one place is caught (test_a_changed_default_is_caught)."""

import copy
import importlib
import os
import re

import pytest
import yaml

from ansible_collections.overlay.flannel.plugins.module_utils import settings as table
from ansible_collections.overlay.flannel.plugins.module_utils.settings import MISSING, SETTINGS

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
ROLES = ["common", "network", "forwarder", "docker"]
ETCD_MODULES = ["network", "subnet", "subnet_info"]  # the action group overlay.flannel.etcd (meta/runtime.yml)
ROLE_TYPES = {"path": "str"}  # a path is a str in a role's argument spec (a controller path, copied to the hosts)


def read(*path):
    with open(os.path.join(REPO, *path)) as fh:
        return fh.read()


def load(*path):
    return yaml.safe_load(read(*path)) or {}


def role_specs():
    """{var: (role, its argument spec)} over the roles' entry points `main`."""
    found = {}
    for role in ROLES:
        for var, spec in load("roles", role, "meta", "argument_specs.yml")["argument_specs"]["main"]["options"].items():
            found.setdefault(var, []).append((role, spec))
    return found


def role_defaults():
    return {role: load("roles", role, "defaults", "main.yml") for role in ROLES}


def same(a, b):
    """Equal, and a boolean only where the other is one (0 == False in Python, not in a role's spec)."""
    return a == b and isinstance(a, bool) == isinstance(b, bool)


# --- the roles ----------------------------------------------------------------------------------------------------

def role_mismatches(settings):
    """Each inventory variable of the table: declared by one role, with the table's type, choices and default, and
    the same default in that role's defaults/main.yml; a role's internal variable (__flannel_*) in its vars."""
    wrong, specs, defaults = [], role_specs(), role_defaults()
    common_vars = load("roles", "common", "vars", "main.yml")
    for s in settings:
        if s.var is None:
            continue
        if s.var.startswith("__"):
            if common_vars.get(s.var) != s.var_default:
                wrong.append("roles/common/vars: %s is %r, the table says %r"
                             % (s.var, common_vars.get(s.var), s.var_default))
            continue
        declared = specs.get(s.var, [])
        if len(declared) != 1:
            wrong.append("%s is declared by %d roles (%s), not one" % (s.var, len(declared), [pair[0] for pair in declared]))
            continue
        role, spec = declared[0]
        where = "roles/%s: %s" % (role, s.var)
        if spec.get("type") != ROLE_TYPES.get(s.type, s.type):
            wrong.append("%s has type %s, the table %s" % (where, spec.get("type"), s.type))
        if s.type == "list" and spec.get("elements") != "str":
            wrong.append("%s: elements %s, not str" % (where, spec.get("elements")))
        if spec.get("choices") != s.choices:
            wrong.append("%s has choices %s, the table %s" % (where, spec.get("choices"), s.choices))
        if bool(spec.get("no_log")) != bool(s.no_log):
            wrong.append("%s: no_log %s, the table %s" % (where, spec.get("no_log"), s.no_log))
        expected = s.var_default
        if expected is MISSING:
            if "default" in spec or s.var in defaults[role]:
                wrong.append("%s has a default; the table says it has none" % where)
            continue
        if not same(spec.get("default"), expected):
            wrong.append("%s: argument spec default %r, the table %r" % (where, spec.get("default"), expected))
        if not same(defaults[role].get(s.var, MISSING), expected):
            wrong.append("%s: defaults/main.yml %r, the table %r" % (where, defaults[role].get(s.var), expected))
    return wrong


def test_the_roles_declare_each_setting_as_the_table_does():
    assert role_mismatches(SETTINGS) == []


def test_the_common_role_checks_the_tables_rules():
    """The checks that stay in YAML (roles/common/tasks/main.yml): the MTU floor, the margin below the TTL, the
    pairs that go together and a non-empty endpoint list, with the table's values."""
    tasks = read("roles", "common", "tasks", "main.yml")
    mtu = table.by("var", "flannel_mtu")
    assert mtu.minimum == table.MIN_MTU
    assert "%s | int == 0 or %s | int >= %d" % (mtu.var, mtu.var, mtu.minimum) in tasks
    assert "or at least %d" % mtu.minimum in tasks  # its message
    for s in SETTINGS:
        if s.var and s.below:
            assert "%s | int == 0 or %s | int < %s | int" % (s.below, s.var, s.below) in tasks, s
        if s.var and s.together and s.var < s.together:
            assert re.search(r"\(%s \| length > 0\) == \(%s \| length > 0\)" % (s.var, s.together), tasks) \
                or re.search(r"\(%s \| length > 0\) == \(%s \| length > 0\)" % (s.together, s.var), tasks), s
    endpoints = table.by("var", "flannel_etcd_endpoints")
    assert "%s | length > %d" % (endpoints.var, endpoints.minimum - 1) in tasks


# where the roles and playbooks pass a variable to a module option: `option: "{{ var ...` (a task) or
# `'option': var` (a dict built in vars/); the common role passes some as its __flannel_* form
BINDING = r"""(?:^|[\s{,])'?%s'?:\s*(?:"\{\{\s*)?(?:__)?(flannel_\w+)"""


def binding_mismatches(settings):
    """Each module option of the table is passed the table's variable somewhere in roles/ or playbooks/, and
    never another variable of the table."""
    texts = []
    for top in ("roles", "playbooks"):
        for root, _dirs, files in os.walk(os.path.join(REPO, top)):
            texts += [read(root, name) for name in files if name.endswith(".yml")]
    text = "\n".join(texts)
    table_vars = set(s.var.lstrip("_") for s in settings if s.var)
    wrong = []
    for s in settings:
        if not (s.var and s.option):
            continue
        leaf = s.option.split(".")[-1]
        bound = set(m.group(1) for m in re.finditer(BINDING % re.escape(leaf), text, re.M)) & table_vars
        if s.var.lstrip("_") not in bound:
            wrong.append("%s (%s) is never passed %s" % (s.option, s.module, s.var))
        if leaf not in ("port", "type") and bound - {s.var.lstrip("_")}:  # leaves that other options share
            wrong.append("%s is also passed %s" % (s.option, sorted(bound - {s.var.lstrip("_")})))
    return wrong


def test_the_roles_pass_each_variable_to_its_option():
    assert binding_mismatches(SETTINGS) == []


# --- the modules --------------------------------------------------------------------------------------------------

class _Captured(Exception):
    pass


def argument_spec_of(module):
    """The argument spec a module builds in main(), taken from the AnsibleModule it creates (validate-modules does
    the same)."""
    mod = importlib.import_module("ansible_collections.overlay.flannel.plugins.modules." + module)

    def fake(**kwargs):
        raise _Captured(kwargs)

    real, mod.AnsibleModule = mod.AnsibleModule, fake
    try:
        mod.main()
    except _Captured as got:
        return got.args[0]["argument_spec"]
    finally:
        mod.AnsibleModule = real
    raise AssertionError("%s.main() built no AnsibleModule" % module)


def documented_options(module):
    """The options of a module's DOCUMENTATION, with those of its doc fragments; "etcd": the fragment's."""
    fragment = importlib.import_module("ansible_collections.overlay.flannel.plugins.doc_fragments.etcd")
    etcd = yaml.safe_load(fragment.ModuleDocFragment.DOCUMENTATION)["options"]
    if module == "etcd":
        return etcd
    doc = yaml.safe_load(importlib.import_module("ansible_collections.overlay.flannel.plugins.modules."
                                                 + module).DOCUMENTATION)
    options = dict(doc["options"])
    if "overlay.flannel.etcd" in doc.get("extends_documentation_fragment", []):
        options.update(etcd)
    return options


def lookup(options, option):
    """The entry of `option` ("backend.vni": a suboption) in a dict of options, or None."""
    head, _dot, rest = option.partition(".")
    entry = options.get(head)
    if entry is not None and rest:
        return lookup(entry.get("suboptions") or entry.get("options") or {}, rest)
    return entry


def module_mismatches(settings):
    """Each module option of the table: documented and specified with the table's type, default and choices."""
    wrong = []
    for s in settings:
        if not s.module:
            continue
        modules = ETCD_MODULES if s.module == "etcd" else [s.module]
        sources = [("doc fragment etcd" if s.module == "etcd" else "%s DOCUMENTATION" % s.module,
                    documented_options(s.module))]
        sources += [("%s argument_spec" % m, argument_spec_of(m)) for m in modules]
        for where, options in sources:
            entry = lookup(options, s.option)
            if entry is None:
                wrong.append("%s has no option %s" % (where, s.option))
                continue
            if entry.get("type", "str") != s.type:
                wrong.append("%s: %s has type %s, the table %s" % (where, s.option, entry.get("type"), s.type))
            if entry.get("default") != s.option_default:
                wrong.append("%s: %s defaults to %r, the table %r"
                             % (where, s.option, entry.get("default"), s.option_default))
            if (list(entry["choices"]) if entry.get("choices") else None) != s.choices:
                wrong.append("%s: %s has choices %s, the table %s" % (where, s.option, entry.get("choices"), s.choices))
    return wrong


def test_the_modules_document_and_take_each_option_as_the_table_does():
    assert module_mismatches(SETTINGS) == []


# --- the daemon ---------------------------------------------------------------------------------------------------

# The daemon's kinds of flag (flannel_forwarder.config._convert) and the table's type and range each stands for.
DAEMON_KINDS = {"list": ("list", None, None), "str": ("str", None, None), "path0": ("str", None, None),
                "int": ("int", 0, None), "port": ("int", 1, 65535), "port0": ("int", 0, 65535),
                "ip": ("str", None, None), "ip6": ("str", None, None), "level": ("str", None, None),
                "bool": ("bool", None, None), "float": ("float", None, None)}  # float: its range is read from the table itself


def daemon_mismatches(settings):
    """The daemon has exactly the table's flags, each with the table's default, type, range and choices, and
    reads each from the table's environment name."""
    from flannel_forwarder import config
    wrong = []
    flags = dict((flag, kind) for flag, kind, _help in config.FLAGS)
    table_flags = dict((s.flag, s) for s in settings if s.flag)
    if set(flags) != set(table_flags):
        wrong.append("the daemon's flags %s and the table's %s differ"
                     % (sorted(set(flags) - set(table_flags)), sorted(set(table_flags) - set(flags))))
    defaults = config.Settings()
    for flag in set(flags) & set(table_flags):
        s = table_flags[flag]
        attr = flag.replace("-", "_")
        if getattr(defaults, attr) != s.flag_default:
            wrong.append("--%s defaults to %r, the table %r" % (flag, getattr(defaults, attr), s.flag_default))
        kind_type, low, high = DAEMON_KINDS[flags[flag]]
        if kind_type != ("str" if s.type == "path" else s.type):
            wrong.append("--%s is a %s, the table a %s" % (flag, flags[flag], s.type))
        if low is not None and s.minimum is not None and low > s.minimum and not s.zero:
            wrong.append("--%s refuses %d, the table's least value" % (flag, s.minimum))
        if (low, high) != (None, None) and s.maximum is not None and high != s.maximum:
            wrong.append("--%s goes up to %s, the table to %s" % (flag, high, s.maximum))
        if flags[flag] == "level" and list(config.LOG_LEVELS) != s.choices:
            wrong.append("--%s takes %s, the table %s" % (flag, config.LOG_LEVELS, s.choices))
    return wrong


def test_the_daemon_has_the_tables_flags_and_defaults():
    assert daemon_mismatches(SETTINGS) == []


# A value of each kind of flag, as text and as the daemon takes it.
SAMPLES = {"list": ("http://192.0.2.1:2379", ["http://192.0.2.1:2379"]), "str": ("/x", "/x"), "path0": ("/x", "/x"),
           "int": ("7", 7), "port": ("7", 7), "port0": ("7", 7), "ip": ("192.0.2.1", "192.0.2.1"),
           "ip6": ("2001:db8::1", "2001:db8::1"),
           "level": ("debug", "debug"), "bool": ("true", True), "float": ("2.5", 2.5)}


@pytest.mark.parametrize("s", [s for s in SETTINGS if s.flag], ids=lambda s: s.flag)
def test_the_daemon_reads_each_flag_from_the_tables_environment_name(s):
    from flannel_forwarder.config import FLAGS, parse
    kind = dict((flag, kind) for flag, kind, _help in FLAGS)[s.flag]
    text, value = SAMPLES[kind]
    environ = {s.env: text}
    if s.together:  # set with its partner, or the daemon refuses it
        environ[table.by("var", s.together).env] = "/partner"
    settings, _action = parse([], environ)
    assert getattr(settings, s.flag.replace("-", "_")) == value


def template_mismatches(settings):
    """The forwarder's environment file (roles/forwarder/templates/forwarder.env.j2) sets the table's environment
    name of each setting that has a variable and a flag, from that variable (on the line, or in the {% if %} that
    guards it: a TLS file is the copy on the host; the key's guard is the certificate's, which it goes with), and
    nothing else."""
    wrong, guard, seen = [], "", {}
    for line in read("roles", "forwarder", "templates", "forwarder.env.j2").splitlines():
        if line.startswith("{% if"):
            guard = line
        elif line.startswith("{% endif"):
            guard = ""
        m = re.match(r'^(FLANNELD_[A-Z0-9_]+)=(.*)$', line)
        if m:
            seen[m.group(1)] = line + " " + guard
    expected = dict((s.env, s) for s in settings if s.var and s.flag)
    if set(seen) != set(expected):
        wrong.append("forwarder.env.j2 sets %s, the table has %s"
                     % (sorted(set(seen) - set(expected)), sorted(set(expected) - set(seen))))
    for env in set(seen) & set(expected):
        names = [expected[env].var.lstrip("_")] + ([expected[env].together] if expected[env].together else [])
        if not any(re.search(r"\b(__)?%s\b" % var, seen[env]) for var in names):
            wrong.append("forwarder.env.j2: %s is not set from %s" % (env, expected[env].var))
    return wrong


def test_the_forwarder_env_file_uses_the_tables_names():
    assert template_mismatches(SETTINGS) == []


def test_the_common_role_passes_the_etcd_options_by_the_tables_names():
    """__flannel_etcd (roles/common/vars/main.yml), the modules' module_defaults: every etcd option of the table,
    from its variable, and no other."""
    text = load("roles", "common", "vars", "main.yml")["__flannel_etcd"]
    pairs = dict(re.findall(r"'(etcd_\w+)': (flannel_\w+)", text))
    assert pairs == dict((s.option, s.var) for s in table.of_module("etcd"))


# --- the table itself ---------------------------------------------------------------------------------------------

def test_each_name_names_one_setting():
    for name in ("var", "option", "flag", "client"):
        names = [(getattr(s, name), s.module if name == "option" else None) for s in SETTINGS if getattr(s, name)]
        assert len(names) == len(set(names)), name
    for s in SETTINGS:
        assert s.type in ("str", "path", "list", "int", "float", "bool"), s
        assert not s.below or table.by("var", s.below), s
        assert not s.together or table.by("var", s.together).together == s.var, s


def test_the_renew_margin_in_minutes_is_flanneld_s_and_the_same_as_the_seconds():
    seconds = table.by("flag", "subnet-lease-renew-margin-seconds")
    minutes = table.by("flag", "subnet-lease-renew-margin")
    assert (seconds.unit, seconds.var, seconds.option) == ("seconds", "flannel_subnet_renew_margin", "renew_margin")
    assert (minutes.unit, minutes.var, minutes.option) == ("minutes", None, None)
    assert minutes.default * 60 == seconds.default == table.DEFAULT_RENEW_MARGIN
    assert seconds.flag_default is None  # unset in the daemon: the minutes apply unless the seconds are given


def test_the_constants_are_the_tables():
    from ansible_collections.overlay.flannel.plugins.module_utils import etcd_client, store, subnets
    from flannel_forwarder import cli
    assert etcd_client.DEFAULT_ENDPOINTS == ("http://127.0.0.1:2379",) and etcd_client.DEFAULT_TIMEOUT == 5.0
    assert subnets.DEFAULT_PREFIX == "/coreos.com/network"
    assert (store.DEFAULT_TTL, store.DEFAULT_RENEW_MARGIN) == (86400, 3600)
    assert cli.MIN_MTU == 576


def test_the_backend_choices_are_the_backends():
    from ansible_collections.overlay.flannel.plugins.module_utils import backends
    assert table.by("var", "flannel_backend_type").choices == list(backends.TYPES)
    assert table.by("var", "flannel_backend_type").default == backends.DEFAULT_TYPE


@pytest.mark.parametrize("values, name, messages", [
    (dict(ttl=86400, renew_margin=3600), "option", []),
    (dict(ttl=0, renew_margin=999999), "option", []),  # a reservation is never renewed
    (dict(ttl=100, renew_margin=100), "option",
     ["renew_margin (100) must be smaller than ttl (100), unless that is 0"]),
    (dict(ttl=-5, renew_margin=1), "option", ["ttl must be 0 (a reservation) or at least 1 second, got -5"]),
    (dict(ttl=10, renew_margin=-1), "option", ["renew_margin must be at least 0 seconds, got -1"]),
    ({"flannel_mtu": 0}, "var", []),
    ({"flannel_mtu": 576}, "var", []),
    ({"flannel_mtu": 575}, "var",
     ["flannel_mtu must be 0 (the underlay MTU less the backend's encapsulation) or at least 576 bytes, got 575"]),
    ({"mtu": 100, "log-level": "loud"}, "flag",
     ["mtu must be 0 (the underlay MTU less the backend's encapsulation) or at least 576 bytes, got 100",
      "log-level must be one of debug, info, warning, error, got 'loud'"]),
    ({"flannel_etcd_user": "flannel"}, "var", ["flannel_etcd_password and flannel_etcd_user go together"]),
    ({"flannel_etcd_user": "flannel", "flannel_etcd_password": "pw"}, "var", []),
    ({"flannel_etcd_endpoints": []}, "var", ["flannel_etcd_endpoints must not be empty"]),
    ({"flannel_backend_vni": 16777216}, "var", ["flannel_backend_vni must be at most 16777215, got 16777216"]),
])
def test_the_rules(values, name, messages):
    assert table.problems(values, name) == messages


def test_derived_specs_and_names():
    from ansible_collections.overlay.flannel.plugins.module_utils import ansible_etcd
    from flannel_forwarder import config
    assert ansible_etcd.ETCD_REQUIRED_TOGETHER == [["etcd_client_cert", "etcd_client_key"],
                                                   ["etcd_user", "etcd_password"]]
    assert ansible_etcd.ETCD_SETTING_NAMES == {"ca_cert": "etcd_ca_cert", "client_cert": "etcd_client_cert",
                                               "client_key": "etcd_client_key"}
    assert config.ETCD_SETTING_NAMES["ca_cert"] == "--etcd-cafile / FLANNELD_ETCD_CAFILE"
    spec = table.argument_spec("subnet", ("ttl", "renew_margin"))
    assert spec == {"ttl": {"type": "int", "default": 86400}, "renew_margin": {"type": "int", "default": 3600}}
    with pytest.raises(KeyError):
        table.argument_spec("subnet", ("no_such_option",))
    spec["ttl"]["default"] = 1  # a copy: the table is not changed through it
    assert table.by("option", "ttl").default == 86400


# --- the checks can fail ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("var, check", [
    ("flannel_subnet_ttl", role_mismatches), ("flannel_subnet_ttl", module_mismatches),
    ("flannel_mtu", daemon_mismatches), ("flannel_etcd_timeout", module_mismatches),
    ("flannel_forwarder_tun_name", role_mismatches), ("flannel_subnet_file", module_mismatches),
])
def test_a_changed_default_is_caught(var, check):
    """A table whose default differs from the one written in the roles, the modules or the daemon is caught."""
    changed = copy.copy(table.by("var", var))
    changed.default = 1234 if isinstance(changed.default, (int, float)) else "/changed"
    assert check([changed]) != []


def test_a_renamed_variable_or_flag_is_caught():
    renamed = copy.copy(table.by("var", "flannel_etcd_ca_cert"))
    renamed.flag = "etcd-ca-file"
    assert template_mismatches([renamed]) != [] and daemon_mismatches([renamed]) != []
    moved = copy.copy(table.by("var", "flannel_subnet_renew_margin"))
    moved.option = "ttl"
    assert binding_mismatches([moved]) != []
