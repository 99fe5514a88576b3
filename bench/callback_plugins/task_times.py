# -*- coding: utf-8 -*-
# Copyright: overlay.flannel contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A callback of bench/converge.py: the wall time of each task of a play (all hosts), written as JSON to
$OVERLAY_FLANNEL_TASK_TIMES when the play ends ({task name: seconds, summed over its occurrences})."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: task_times
type: aggregate
short_description: Wall time per task, for bench/converge.py
description:
  - Writes the seconds each task took (all hosts, summed over repeated names) as JSON to the file named by
    the environment variable E(OVERLAY_FLANNEL_TASK_TIMES).
requirements:
  - enabled in the configuration (bench/converge.py does it)
"""

import json
import os
import time

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "task_times"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super(CallbackModule, self).__init__()
        self._name, self._start, self._times = None, None, {}

    def _close(self):
        if self._name is not None:
            self._times[self._name] = self._times.get(self._name, 0.0) + time.monotonic() - self._start
            self._name = None

    def _open(self, name):
        self._close()
        self._name, self._start = name, time.monotonic()

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._open(task.get_name())

    def v2_playbook_on_handler_task_start(self, task):
        self._open("handler: " + task.get_name())

    def v2_playbook_on_stats(self, stats):
        self._close()
        path = os.environ.get("OVERLAY_FLANNEL_TASK_TIMES")
        if path:
            with open(path, "w") as fh:
                json.dump(self._times, fh, indent=1, sort_keys=True)
