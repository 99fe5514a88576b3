# -*- coding: utf-8 -*-
# Copyright: overlay.flannel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible glue shared by the modules: the etcd options and the client built from them."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.overlay.flannel.plugins.module_utils import settings
from ansible_collections.overlay.flannel.plugins.module_utils.etcd_client import (
    ETCD3_IMPORT_ERROR,
    HAS_ETCD3,
    EtcdClient,
    EtcdError,
)
from ansible_collections.overlay.flannel.plugins.module_utils.store import FlannelStore
from ansible_collections.overlay.flannel.plugins.module_utils.subnets import SubnetError


def etcd_argument_spec():
    """The etcd options of every module of the group overlay.flannel.etcd, from the settings table."""
    return settings.argument_spec("etcd")


ETCD_REQUIRED_TOGETHER = settings.required_together("etcd")
# The client's settings as a playbook names them, for the hints of its errors.
ETCD_SETTING_NAMES = settings.client_names("option")


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
