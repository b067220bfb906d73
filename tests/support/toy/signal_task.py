"""The sign task (`sign_task.py`), except that loading its data sends the
process a real SIGINT, as a Ctrl-C during start-up would: the trainer must
exit cleanly (status 75, no traceback, nothing written) instead of training
on or dying with a KeyboardInterrupt. Used by `tests/system/preemption_test.py`.
"""

from __future__ import annotations

import os
import signal

from tests.support.toy import sign_task
from tests.support.toy.sign_task import (  # noqa: F401 - the task's interface
  RESUMABLE_KEYS,
  TOKEN_METRIC,
  loss_and_metrics,
  make_model,
  validate,
)


def make_datasets(config):
  os.kill(os.getpid(), signal.SIGINT)
  return sign_task.make_datasets(config)
