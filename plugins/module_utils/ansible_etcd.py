# -*- coding: utf-8 -*-
# Copyright: overlay.flannel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible glue shared by the modules: the etcd options and the client built from them."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.overlay.flannel.plugins.module_utils.etcd_client import (
    DEFAULT_ENDPOINTS,
    ETCD3_IMPORT_ERROR,
    HAS_ETCD3,
    EtcdClient,
    EtcdError,
)
from ansible_collections.overlay.flannel.plugins.module_utils.store import FlannelStore
from ansible_collections.overlay.flannel.plugins.module_utils.subnets import DEFAULT_PREFIX, SubnetError


def etcd_argument_spec():
    return dict(
        etcd_endpoints=dict(type="list", elements="str", default=list(DEFAULT_ENDPOINTS)),
        etcd_prefix=dict(type="str", default=DEFAULT_PREFIX),
        etcd_ca_cert=dict(type="path"),
        etcd_client_cert=dict(type="path"),
        etcd_client_key=dict(type="path", no_log=False),
        etcd_user=dict(type="str"),
        etcd_password=dict(type="str", no_log=True),
        etcd_timeout=dict(type="float", default=5.0),
    )


ETCD_REQUIRED_TOGETHER = [["etcd_client_cert", "etcd_client_key"], ["etcd_user", "etcd_password"]]
# The client's settings as a playbook names them, for the hints of its errors.
ETCD_SETTING_NAMES = {"ca_cert": "etcd_ca_cert", "client_cert": "etcd_client_cert", "client_key": "etcd_client_key"}


def connect(module):
    """A FlannelStore for the module's etcd options; fails the module with a clear message."""
    if not HAS_ETCD3:
        module.fail_json(msg=missing_required_lib("etcd3 (python-etcd3) and grpcio"), exception=ETCD3_IMPORT_ERROR)
    p = module.params
    try:
        client = EtcdClient(p["etcd_endpoints"], ca_cert=p["etcd_ca_cert"], client_cert=p["etcd_client_cert"],
                            client_key=p["etcd_client_key"], user=p["etcd_user"], password=p["etcd_password"],
                            timeout=p["etcd_timeout"], setting_names=ETCD_SETTING_NAMES)
        return FlannelStore(client, p["etcd_prefix"])
    except (EtcdError, SubnetError) as exc:
        module.fail_json(msg=str(exc))
