# -*- coding: utf-8 -*-
# Copyright: overlay.flannel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""overlay.flannel.stage_release: the forwarder release for a host, staged on the controller.

Each host's task runs in a fork of ansible-playbook. The cache is shared by
every fork and every run on the controller, so staging holds an exclusive
lock on it; a fork that finds the release of its kind of host already staged
in this run (by its sibling forks: the run's note, keyed by the
ansible-playbook process) takes it without hashing the sources again, so a
play of many hosts of one kind stages once, as a run_once task did.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import fcntl
import importlib.util
import json
import os

from ansible.plugins.action import ActionBase

COLLECTION_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STAGER = os.path.join(COLLECTION_ROOT, "roles", "forwarder", "files", "stage_release.py")

ARGUMENT_SPEC = dict(
    target=dict(type="dict", required=True, options=dict(
        python=dict(type="str", required=True), machine=dict(type="str", required=True),
        glibc=dict(type="str", required=True))),
    cache=dict(type="path", required=True),
    wheelhouse=dict(type="path"),
)


def load_stager():
    spec = importlib.util.spec_from_file_location("overlay_flannel_stage_release", STAGER)
    stager = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stager)
    return stager


def run_id():
    """The ansible-playbook process this fork belongs to, as (pid, start time): a pid alone can be reused."""
    ppid = os.getppid()
    try:
        with open("/proc/%d/stat" % ppid) as fh:
            start = fh.read().rsplit(")", 1)[1].split()[19]
    except (IOError, OSError, IndexError):
        return None
    return "%d-%s" % (ppid, start)


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM
    return True


class RunNote(object):
    """What this run staged already, per kind of host ({key: result}), in the cache's .runs/ directory; the
    notes of runs that ended are removed. Used under the cache's lock only."""

    def __init__(self, cache):
        self.dir = os.path.join(cache, ".runs")
        self.run = run_id()
        self.path = os.path.join(self.dir, self.run + ".json") if self.run else None

    def read(self):
        if not self.path:
            return {}
        try:
            with open(self.path) as fh:
                return json.load(fh)
        except (IOError, OSError, ValueError):
            return {}

    def write(self, notes):
        if not self.path:
            return
        if not os.path.isdir(self.dir):
            os.makedirs(self.dir)
        for name in os.listdir(self.dir):
            pid = name.split("-", 1)[0]
            if name != os.path.basename(self.path) and pid.isdigit() and not pid_alive(int(pid)):
                os.unlink(os.path.join(self.dir, name))
        partial = self.path + ".partial"
        with open(partial, "w") as fh:
            json.dump(notes, fh)
        os.rename(partial, self.path)


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(ARGUMENT_SPEC)

    def run(self, tmp=None, task_vars=None):
        self._supports_check_mode = True
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp
        _validation, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        target = dict((k, args["target"][k]) for k in ("python", "machine", "glibc"))
        cache = args["cache"]
        wheelhouse = args["wheelhouse"] or None
        host = (task_vars or {}).get("inventory_hostname", "")
        key = json.dumps([COLLECTION_ROOT, wheelhouse, target], sort_keys=True)
        stager = load_stager()
        try:
            if not os.path.isdir(cache):
                os.makedirs(cache)
            with open(os.path.join(cache, ".stage.lock"), "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                note = RunNote(cache)
                notes = note.read()
                staged = notes.get(key)
                if staged is None or not os.path.exists(staged["archive"]):
                    staged = stager.stage(COLLECTION_ROOT, cache, target["python"], target["machine"],
                                          target["glibc"], wheelhouse)
                    notes[key] = dict(staged, built=False)
                    note.write(notes)
        except stager.StageError as exc:
            result.update(failed=True, msg="%s (Python %s, %s, glibc %s): stage_release: %s"
                          % (host, target["python"], target["machine"], target["glibc"], exc))
            return result
        except (IOError, OSError) as exc:
            result.update(failed=True, msg="%s: staging the forwarder release in %s failed: %s" % (host, cache, exc))
            return result
        result.update(staged, changed=bool(staged["built"]))
        return result
