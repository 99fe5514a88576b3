# -*- coding: utf-8 -*-
# Copyright: overlay.flannel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Import one module of a library without the rest of it (its package's ``__init__`` is not run), or a package
without one of its submodules.

Some libraries' ``__init__`` imports everything they have: ``import
pyroute2`` loads NDB, IPDB, ipset, nftables, wireguard and more (about 6 MiB
resident) when the forwarder needs only IPRoute; ``import etcd3`` loads its
client, tenacity and six (about 1.5 MiB) when etcd_client.py needs only the
generated stubs in etcd3.etcdrpc. A daemon that runs on every host for years
keeps all of it.

``import_submodule("pyroute2", "iproute")`` puts an empty module object
for the package in sys.modules (made from the package's own spec, so its
``__path__`` finds the submodules as usual) and imports the submodule; the
package's ``__init__`` never runs. When the package is already imported (whole,
or empty by an earlier call), the submodule is imported as usual.

What that changes: the names the package's ``__init__`` would have set
(``pyroute2.IPRoute``, ``etcd3.Etcd3Client``) do not exist in that process,
and code that asks for one fails loudly (ImportError, AttributeError), never
silently. So a process imports such a library through one place only, and a
test of that place proves that the library's modules it loads never ask the
package for such a name (tests/unit/forwarder/test_lean_imports.py).

``import_without("grpc", "aio")`` imports grpc, whose ``__init__`` ends by
importing grpc.aio (the asyncio API, about 1 MiB resident; etcd_client.py
uses the synchronous one) only so that the name is there: grpc.aio is held
back while grpc's ``__init__`` runs (an empty module stands in for it), then
forgotten, so that a later ``import grpc.aio`` imports the real one.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import importlib
import importlib.util
import sys
import types


def import_submodule(package, name):
    """Import and return the module `package`.`name` without running `package`'s __init__ if `package` is
    not imported yet. ImportError when the package or the module is missing."""
    if package not in sys.modules:
        spec = importlib.util.find_spec(package)
        if spec is None:
            raise ImportError("No module named %r" % package, name=package)
        if spec.submodule_search_locations is None:
            raise ImportError("%r is a module, not a package" % package, name=package)
        sys.modules[package] = importlib.util.module_from_spec(spec)  # not executed: __init__ does not run
        try:
            return importlib.import_module(package + "." + name)
        except BaseException:
            # as a failed import: the next `import package` finds nothing of ours and runs __init__ as usual
            del sys.modules[package]
            raise
    return importlib.import_module(package + "." + name)


def import_without(package, submodule):
    """Import and return `package` without its `submodule` (which its __init__ imports only to have the
    name), when neither is imported yet; `package`.`submodule` is left to be imported when asked for. Code
    that uses the stand-in while the package's __init__ runs fails (AttributeError)."""
    full = package + "." + submodule
    if package in sys.modules or full in sys.modules:
        return importlib.import_module(package)
    stand_in = types.ModuleType(full, "held back while %s was imported (submodule_import.py)" % package)
    sys.modules[full] = stand_in
    try:
        module = importlib.import_module(package)
    finally:
        if sys.modules.get(full) is stand_in:
            del sys.modules[full]
    if getattr(module, submodule, None) is stand_in:
        delattr(module, submodule)
    return module
