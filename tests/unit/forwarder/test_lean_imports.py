"""Libraries imported without the rest of them (module_utils/submodule_import.py): pyroute2's IPRoute for the
daemon (flannel_forwarder/iproute.py) and etcd3's generated stubs (module_utils/etcd_client.py).

The pinned pyroute2 and etcd3 are checked in a fresh interpreter each, as the daemon imports them: what is
loaded and what stays out, that none of the library's loaded modules asks the package for a name its
__init__ would have set (those names do not exist), and that the imported part works (IPRoute against a
network namespace of its own, etcdrpc's messages). A pyroute2 or etcd3 that breaks this fails here.
"""

import ast
import json
import os
import subprocess
import sys
import textwrap

import pytest

from ansible_collections.overlay.flannel.plugins.module_utils.submodule_import import import_submodule, import_without

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
COLLECTIONS = os.path.join(REPO, ".cache", "collections")  # tests/conftest.py links the checkout there

# Run first in each fresh interpreter: which names a loaded module of `package` asks the package itself for
# (`from package import X`, `from .. import X` reaching it, `package.X`) that are not its submodules.
ASKS = r'''
import ast, importlib.util, sys

def asked(package):
    found = []
    for name, module in sorted(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if not (name == package or name.startswith(package + ".")) or not path or not path.endswith(".py"):
            continue
        with open(path, encoding="utf-8") as fh:
            tree = ast.parse(fh.read(), path)
        here = name if path.endswith("__init__.py") else name.rpartition(".")[0]
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(here.split(".")[:len(here.split(".")) - node.level + 1] + ([base] if base else []))
                if base == package:
                    names = [alias.name for alias in node.names]
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == package:
                names = [node.attr]
            for attr in names:
                if attr == "*" or importlib.util.find_spec(package + "." + attr) is None:
                    found.append("%s: %s" % (name, attr))
    return sorted(set(found))
'''


def fresh(script, prefix=()):
    """Run `script` (after ASKS) in a fresh interpreter that finds the collection and the daemon (after the
    command `prefix`); the JSON it printed last."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([COLLECTIONS, os.path.join(REPO, "forwarder")]))
    done = subprocess.run(list(prefix) + [sys.executable, "-c", ASKS + textwrap.dedent(script)], env=env,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_the_daemon_loads_ipr_route_without_the_rest_of_pyroute2():
    got = fresh('''
        import json, logging
        from flannel_forwarder.iproute import IPRoute
        import pyroute2
        loaded = sorted(m for m in sys.modules if m.startswith("pyroute2."))
        print(json.dumps({"loaded": loaded, "asked": asked("pyroute2"), "has_ndb": hasattr(pyroute2, "NDB"),
                          "ipr": IPRoute.__module__,
                          "handlers": [type(h).__name__ for h in logging.getLogger("pyroute2").handlers]}))
    ''')
    assert got["asked"] == []
    assert got["ipr"] == "pyroute2.iproute.linux"
    assert not got["has_ndb"]  # pyroute2/__init__.py did not run
    for left_out in ("pyroute2.ndb", "pyroute2.ipdb", "pyroute2.ipset", "pyroute2.nftables", "pyroute2.conntrack",
                     "pyroute2.iwutil", "pyroute2.netlink.generic.wireguard", "pyroute2.netlink.nfnetlink"):
        assert not any(m == left_out or m.startswith(left_out + ".") for m in got["loaded"]), left_out
    assert "pyroute2.config.log" in got["loaded"] and got["handlers"] == ["NullHandler"]  # as its __init__ does


def test_the_daemon_imports_pyroute2_in_one_place():
    """No module imports pyroute2 with an import statement (iproute.py loads it by import_submodule); every
    module that takes IPRoute from it imports (in a fresh interpreter: it needs the package as iproute.py
    leaves it)."""
    package = os.path.join(REPO, "forwarder", "flannel_forwarder")
    direct, users = [], []
    for folder, _dirs, files in os.walk(package):
        for name in sorted(f for f in files if f.endswith(".py")):
            path = os.path.join(folder, name)
            module = "flannel_forwarder." + os.path.relpath(path, package)[:-3].replace(os.sep, ".")
            with open(path, encoding="utf-8") as fh:
                tree = ast.parse(fh.read(), path)
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom):
                    names = [node.module or ""] if not node.level else []
                    if node.level and (node.module or "").endswith("iproute") or \
                            node.level and not node.module and any(a.name == "iproute" for a in node.names):
                        users.append(module)
                else:
                    continue
                if any(n == "pyroute2" or n.startswith("pyroute2.") for n in names):
                    direct.append(module)
    assert direct == []
    assert {"flannel_forwarder.cli", "flannel_forwarder.kernel", "flannel_forwarder.udp.tun.device"} <= set(users)
    got = fresh('''
        import importlib, json
        print(json.dumps([importlib.import_module(m).__name__ for m in %r]))
    ''' % sorted(set(users)))
    assert got == sorted(set(users))


def test_ipr_route_so_imported_programs_the_kernel():
    """What the kernel backends and the udp backend's TUN do with it, in a network namespace of its own."""
    got = fresh('''
        import json, socket
        from flannel_forwarder.iproute import IPRoute
        with IPRoute() as ipr:
            ipr.link("add", ifname="lean0", kind="veth", peer="lean1")
            index = ipr.link_lookup(ifname="lean0")[0]
            ipr.link("set", index=index, state="up", mtu=1400)
            ipr.addr("add", index=index, address="10.99.0.1", prefixlen=24)
            ipr.route("replace", dst="10.98.0.0", dst_len=24, gateway="10.99.0.2", oif=index, proto=0x46)
            ipr.link("add", ifname="flannel.7", kind="vxlan", vxlan_id=7, vxlan_port=8472, vxlan_learning=0)
            vxlan = ipr.link_lookup(ifname="flannel.7")[0]
            ipr.neigh("replace", ifindex=vxlan, dst="10.16.2.0", lladdr="02:00:00:00:00:03", state=0x80)
            ipr.fdb("replace", ifindex=vxlan, lladdr="02:00:00:00:00:03", dst="10.99.0.3", state=0x80, flags=0x02)
            links = {l.get_attr("IFLA_IFNAME"): (l.get_attr("IFLA_MTU"),
                                                 (l.get_attr("IFLA_LINKINFO") or l).get_attr("IFLA_INFO_KIND"))
                     for l in ipr.get_links()}
            addrs = [a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(family=socket.AF_INET, index=index)]
            routes = ["%s/%d via %s" % (r.get_attr("RTA_DST"), r["dst_len"], r.get_attr("RTA_GATEWAY"))
                      for r in ipr.get_routes(family=socket.AF_INET, table=254) if r["proto"] == 0x46]
            neigh = [(n.get_attr("NDA_DST"), n.get_attr("NDA_LLADDR"))
                     for n in ipr.get_neighbours(ifindex=vxlan, family=socket.AF_INET)]
            fdb = [(n.get_attr("NDA_LLADDR"), n.get_attr("NDA_DST")) for n in ipr.fdb("dump", ifindex=vxlan)
                   if n.get_attr("NDA_LLADDR") == "02:00:00:00:00:03"]
            ipr.route("del", dst="10.98.0.0", dst_len=24, gateway="10.99.0.2", oif=index, proto=0x46)
            after = [r for r in ipr.get_routes(family=socket.AF_INET, table=254) if r["proto"] == 0x46]
            try:
                ipr.link("del", ifname="no-such-link")
                error = None
            except Exception as exc:  # pyroute2's NetlinkError, from its own modules
                error = [type(exc).__module__, exc.code]
        print(json.dumps({"links": links, "addrs": addrs, "routes": routes, "neigh": neigh, "fdb": fdb, "after": len(after),
                          "error": error}))
    ''', prefix=["unshare", "--net"])
    assert got["links"] == {"lo": [65536, None], "lean0": [1400, "veth"], "lean1": [1500, "veth"],
                            "flannel.7": [1500, "vxlan"]}
    assert got["addrs"] == ["10.99.0.1"]
    assert got["routes"] == ["10.98.0.0/24 via 10.99.0.2"] and got["after"] == 0
    assert got["neigh"] == [["10.16.2.0", "02:00:00:00:00:03"]] and got["fdb"] == [["02:00:00:00:00:03", "10.99.0.3"]]
    assert got["error"] == ["pyroute2.netlink.exceptions", 19]  # ENODEV


def test_etcd_client_loads_the_generated_stubs_without_the_rest_of_etcd3():
    got = fresh('''
        import json
        from ansible_collections.overlay.flannel.plugins.module_utils import etcd_client as ec
        import etcd3
        req = ec.etcdrpc.RangeRequest(key=b"/coreos.com/network/", range_end=b"/coreos.com/network0")
        back = ec.etcdrpc.RangeRequest.FromString(req.SerializeToString())
        grpc_loaded = sorted(m for m in sys.modules if m.split(".")[0] == "grpc")
        no_aio = not hasattr(ec.grpc, "aio")
        import grpc.aio
        print(json.dumps({"has": ec.HAS_ETCD3, "error": ec.ETCD3_IMPORT_ERROR, "asked": asked("etcd3"),
                          "grpc": grpc_loaded, "no_aio": no_aio, "aio_later": hasattr(grpc.aio, "insecure_channel"),
                          "loaded": sorted(m for m in sys.modules if m.split(".")[0] in ("etcd3", "tenacity", "six")),
                          "client": hasattr(etcd3, "Etcd3Client"), "stub": hasattr(ec.etcdrpc, "KVStub"),
                          "back": [back.key.decode(), back.range_end.decode()]}))
    ''')
    assert got["has"] and got["error"] is None and got["asked"] == []
    assert got["loaded"] == ["etcd3", "etcd3.etcdrpc", "etcd3.etcdrpc.auth_pb2", "etcd3.etcdrpc.kv_pb2",
                             "etcd3.etcdrpc.rpc_pb2", "etcd3.etcdrpc.rpc_pb2_grpc"]
    assert not got["client"] and got["stub"]
    assert got["no_aio"] and not any(m.startswith("grpc.aio") for m in got["grpc"]) and "grpc._cython.cygrpc" in got["grpc"]
    assert got["aio_later"]  # asked for, grpc.aio is imported as usual
    assert got["back"] == ["/coreos.com/network/", "/coreos.com/network0"]


@pytest.fixture
def package(tmp_path, monkeypatch):
    """A package `leanpkg` whose __init__ leaves a mark, with a submodule `sub`; gone from sys.modules after."""
    root = tmp_path / "leanpkg"
    root.mkdir()
    (root / "__init__.py").write_text("import os\nopen(os.path.join(os.path.dirname(__file__), 'ran'), 'w').close()\n"
                                      "WHOLE = True\n")
    (root / "sub.py").write_text("from leanpkg import other\nVALUE = other.VALUE + 1\n")
    (root / "other.py").write_text("VALUE = 41\n")
    (root / "broken.py").write_text("from leanpkg import WHOLE\n")
    (root / "relative.py").write_text("from . import WHOLE, other\nimport leanpkg\nVALUE = leanpkg.other.VALUE\n")
    (root / "attribute.py").write_text("import leanpkg\nVALUE = leanpkg.WHOLE\n")
    (tmp_path / "withextra").mkdir()
    (tmp_path / "withextra" / "__init__.py").write_text("from withextra import extra\nBASE = 1\n")
    (tmp_path / "withextra" / "extra.py").write_text("VALUE = 2\n")
    (tmp_path / "needsextra").mkdir()
    (tmp_path / "needsextra" / "__init__.py").write_text("from needsextra import extra\nVALUE = extra.VALUE\n")
    (tmp_path / "needsextra" / "extra.py").write_text("VALUE = 2\n")
    (tmp_path / "single.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield root
    for name in [m for m in sys.modules if m.split(".")[0] in ("leanpkg", "single", "withextra", "needsextra")]:
        del sys.modules[name]


def test_a_submodule_is_imported_without_its_package_init(package):
    sub = import_submodule("leanpkg", "sub")
    assert sub.VALUE == 42
    assert not (package / "ran").exists() and not hasattr(sys.modules["leanpkg"], "WHOLE")
    assert import_submodule("leanpkg", "other") is sys.modules["leanpkg.other"]  # the package stays as it is
    assert not (package / "ran").exists()


def test_the_check_finds_modules_that_ask_the_package_for_its_names(package):
    import leanpkg  # pylint: disable=import-outside-toplevel,import-error,unused-import

    for name in ("sub", "broken", "relative", "attribute"):
        import_submodule("leanpkg", name)
    check = {}
    exec(ASKS, check)  # pylint: disable=exec-used
    assert check["asked"]("leanpkg") == ["leanpkg.attribute: WHOLE", "leanpkg.broken: WHOLE",
                                         "leanpkg.relative: WHOLE"]


def test_a_package_already_imported_whole_stays_whole(package):
    import leanpkg  # pylint: disable=import-outside-toplevel,import-error

    assert import_submodule("leanpkg", "sub").VALUE == 42 and sys.modules["leanpkg"] is leanpkg and leanpkg.WHOLE


def test_a_module_asking_the_package_for_its_names_fails_loudly(package):
    with pytest.raises(ImportError, match="WHOLE"):
        import_submodule("leanpkg", "broken")
    # nothing of ours is left: importing the package afterwards runs its __init__ as usual
    assert "leanpkg" not in sys.modules
    import leanpkg  # pylint: disable=import-outside-toplevel,import-error

    assert leanpkg.WHOLE and (package / "ran").exists()


def test_missing_packages_and_modules_are_import_errors(package):
    with pytest.raises(ImportError, match="No module named 'no_such_package_here'"):
        import_submodule("no_such_package_here", "x")
    with pytest.raises(ImportError, match="'single' is a module, not a package"):
        import_submodule("single", "x")
    with pytest.raises(ImportError, match="leanpkg.nothing"):
        import_submodule("leanpkg", "nothing")
    assert "leanpkg" not in sys.modules


def test_a_package_without_a_submodule_its_init_only_names(package):
    withextra = import_without("withextra", "extra")
    assert withextra.BASE == 1 and "withextra.extra" not in sys.modules and not hasattr(withextra, "extra")
    assert import_without("withextra", "extra") is withextra
    import withextra.extra  # pylint: disable=import-outside-toplevel,import-error,redefined-outer-name

    assert withextra.extra.VALUE == 2  # asked for, the real one
    # an __init__ that uses the submodule fails loudly, and leaves nothing behind
    with pytest.raises(AttributeError, match="VALUE"):
        import_without("needsextra", "extra")
    assert "needsextra" not in sys.modules and "needsextra.extra" not in sys.modules
