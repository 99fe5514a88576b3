"""The host-gw backend: a route "peer subnet via its public IP" on the underlay, per peer.

flanneld's host-gw: no device and no encapsulation; the hosts must share
one L2 network (a peer that is not on the underlay's network is logged and
counted, never routed). The routes are kernel_state.desired's, kept by
../kernel.py's sync.
"""

from __future__ import annotations

from ansible_collections.overlay.flannel.plugins.module_utils import backends

from ..kernel import KernelBackend


class HostGwBackend(KernelBackend):
    TYPE = backends.HOST_GW

    def describe(self):
        return "routes via %s" % self.underlay


BACKEND = HostGwBackend
