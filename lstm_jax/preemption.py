"""Preemption: SIGTERM (what a Cloud TPU VM or spot instance gets before it is
taken away) becomes a flag that the training loop polls at step boundaries, so
the loop can save a checkpoint and exit cleanly instead of dying mid-step.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

from absl import logging


class PreemptionGuard:
  """Turns SIGTERM into a flag polled at step boundaries.

  Usage::

    with preemption.PreemptionGuard() as guard:
      for step in ...:
        ...
        if guard.requested:
          checkpoint.save(manager, step, state, force=True)
          manager.wait_until_finished()
          return

  The previous handler is restored on exit. Signal handlers can only be set
  from the main thread; elsewhere (e.g. a training thread in a notebook) the
  guard logs that and never fires.
  """

  def __init__(self, signum: int = signal.SIGTERM):
    self._signum = signum
    self._previous: Any = None
    self._installed = False
    self._event = threading.Event()

  @property
  def requested(self) -> bool:
    return self._event.is_set()

  def _handle(self, signum, frame) -> None:
    del frame
    logging.warning(
      "Received signal %d: will save a checkpoint at the next step boundary and exit.",
      signum,
    )
    self._event.set()

  def __enter__(self) -> PreemptionGuard:
    if threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(self._signum, self._handle)
      self._installed = True
    else:
      logging.info("PreemptionGuard: not the main thread; SIGTERM not handled.")
    return self

  def __exit__(self, *exc_info) -> None:
    if self._installed:
      signal.signal(self._signum, self._previous)
      self._installed = False
