"""pyroute2's IPRoute, the one place the daemon imports pyroute2 from (cli.py, kernel.py, udp/tun/device.py).

``from pyroute2 import IPRoute`` runs pyroute2/__init__.py, which imports the
whole library (NDB, IPDB, ipset, nftables, wireguard, ...): about 6 MiB
resident that the daemon keeps for its lifetime and never uses. Here
pyroute2.iproute (the module that pyroute2/__init__ takes IPRoute from) is
imported without that __init__ (module_utils/submodule_import.py). Anything
else in this process that asks the package for one of its names
(``from pyroute2 import NDB``) then fails with ImportError instead of
loading it: import pyroute2 here only. tests/unit/forwarder/test_lean_imports.py
proves, for the pinned pyroute2, that the modules this loads never ask the
package for such a name, that NDB and the others stay out, and that IPRoute
works; a pyroute2 that breaks it fails that test or this import, loudly.
"""

from __future__ import annotations

from ansible_collections.overlay.flannel.plugins.module_utils.submodule_import import import_submodule

# pyroute2/__init__.py imports its logging setup first (the "pyroute2" logger at level 0, with a NullHandler):
# so does this, before anything of pyroute2 logs.
import_submodule("pyroute2", "config.log")
IPRoute = import_submodule("pyroute2", "iproute").IPRoute

__all__ = ["IPRoute"]
