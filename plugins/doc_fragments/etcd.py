# -*- coding: utf-8 -*-
# Copyright: overlay.flannel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    DOCUMENTATION = r"""
attributes:
  action_group:
    support: full
    membership:
      - overlay.flannel.etcd
    description: Use C(group/overlay.flannel.etcd) in C(module_defaults) to set the etcd options once.
options:
  etcd_endpoints:
    description:
      - etcd client URLs, C(http://host:port) or C(https://host:port).
      - They are tried in order; when one cannot be reached the next one is used.
    type: list
    elements: str
    default: ["http://127.0.0.1:2379"]
  etcd_prefix:
    description:
      - The key prefix of the overlay network, flanneld's C(--etcd-prefix).
      - The config lives at C(<prefix>/config) and the leases under C(<prefix>/subnets/).
    type: str
    default: /coreos.com/network
  etcd_ca_cert:
    description:
      - Path to the CA certificate that signed the etcd server certificates (PEM), for C(https) endpoints.
      - When omitted with C(https) endpoints, the system trust store is used.
    type: path
  etcd_client_cert:
    description:
      - Path to the client certificate (PEM) for etcd client certificate authentication.
    type: path
  etcd_client_key:
    description:
      - Path to the private key (PEM) of O(etcd_client_cert).
    type: path
  etcd_user:
    description:
      - User name for etcd authentication.
    type: str
  etcd_password:
    description:
      - Password of O(etcd_user).
    type: str
  etcd_timeout:
    description:
      - Seconds to wait for each etcd request before trying the next endpoint.
      - A cluster whose members answer but cannot serve now (no leader during an election, overloaded) is
        asked again, with a growing, jittered pause, for up to 60 seconds or three times this, whichever is
        longer. Members that all refuse the connection fail at once.
    type: float
    default: 5
requirements:
  - python-etcd3 >= 0.12.0 (the C(etcd3) package) and grpcio, on the host that runs the module (usually the controller)
notes:
  - The etcd v3 API is used. python-etcd3 0.12 with protobuf 4 or newer works without setting anything.
"""
