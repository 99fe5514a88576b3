# -*- coding: utf-8 -*-
# Copyright: overlay.flannel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

# The work is done on the controller by the action plugin of the same name
# (plugins/action/stage_release.py); this file holds its documentation.

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: stage_release
short_description: Stage the forwarder release for a host, on the controller
version_added: 0.3.0
description:
  - Finds, or builds once, the self-contained release of flannel-forwarder for the kind of host given (its Python,
    machine and C library), in a cache on the controller, and returns it. The role C(overlay.flannel.forwarder)
    then unpacks it on the host, whose own python3 runs it with no pip, virtualenv or network there.
  - A release is built once per content and kind of host; every host of a play with the same kind gets the one
    release (the first fork builds it, the others wait and reuse it). Forks and concurrent runs share the cache
    under a lock.
  - Only the controller needs pip, and a package index unless O(wheelhouse) names a directory filled beforehand
    (C(playbooks/wheelhouse.yml)).
  - The work is done by C(roles/forwarder/files/stage_release.py) of the collection, which also runs on its own
    (see its help).
author:
  - overlay.flannel maintainers (@overlay-flannel)
options:
  target:
    description:
      - The kind of host, as M(overlay.flannel.host_probe) returns it in RV(overlay.flannel.host_probe#module:host.target).
    type: dict
    required: true
    suboptions:
      python:
        description: The host's Python, major.minor (for example V(3.11)).
        type: str
        required: true
      machine:
        description: The host's machine (C(uname -m)); V(x86_64) and V(aarch64) are staged.
        type: str
        required: true
      glibc:
        description: The host's glibc version (for example V(2.36)).
        type: str
        required: true
  cache:
    description: The controller directory of the staged releases.
    type: path
    required: true
  wheelhouse:
    description:
      - A controller directory of wheels to stage from, instead of a package index (C(pip --no-index)).
      - A kind of host it was not filled for is refused, with the command that fills it.
    type: path
attributes:
  check_mode:
    support: full
    description: Staging writes only the controller's cache, also in check mode (the release is what a real run installs).
  diff_mode:
    support: none
    description: Nothing on the host changes.
  action:
    support: full
    description: Runs on the controller (an action plugin), whatever the host.
  platform:
    support: full
    platforms: posix
    description: The controller stages for Linux hosts (x86_64 and aarch64).
notes:
  - Runs on the controller only, whatever the host; the host is not contacted.
  - Returns C(changed) on the host whose task built the release.
"""

EXAMPLES = r"""
- name: Stage the forwarder release for this host
  overlay.flannel.stage_release:
    target: "{{ flannel_host_probe.host.target }}"
    cache: ~/.cache/overlay-flannel
  register: flannel_forwarder_release
"""

RETURN = r"""
name:
  description: The release's name (version, Python, machine and a hash of its content).
  returned: success
  type: str
  sample: 0.1.0-py3.11-x86_64-829a41b8422a
archive:
  description: The release's archive in the cache, on the controller.
  returned: success
  type: str
  sample: /root/.cache/overlay-flannel/releases/0.1.0-py3.11-x86_64-829a41b8422a.tar.gz
built:
  description: Whether this run built the release (false when the cache had it).
  returned: success
  type: bool
target:
  description: The kind of host it was staged for.
  returned: success
  type: dict
  sample: {"python": "3.11", "machine": "x86_64", "glibc": "2.36"}
"""
