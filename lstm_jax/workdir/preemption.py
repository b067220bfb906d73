"""Preemption: SIGTERM (what a Cloud TPU VM or spot instance gets about 30 s
before it is taken away) and SIGINT (Ctrl-C) become a flag that the trainer
polls, so it can save a checkpoint and exit cleanly instead of dying mid-step.

`train.train_and_evaluate` installs the guard first thing, so a signal during
data loading, compilation or restore is honoured too: before the loop there is
nothing new to save, and `raise_if_requested` ends the run with `Preempted`.
In the loop the flag is polled before each step is dispatched, and dispatch
runs at most `metrics.TrainLog.max_in_flight` steps ahead of the device, so the
save lands within a couple of steps of the signal.

A second signal of the same kind while the first is being honoured (Ctrl-C
twice) gives up on the save: it raises `KeyboardInterrupt`; the checkpoints
already committed are intact (saves are atomic).

Exit status (`lstm_jax.cli.main`): `EXIT_PREEMPTED` (75, `EX_TEMPFAIL` of
sysexits.h: "try again later") for a run that stopped on a signal, so a
launcher can tell it from a finished run (0) and rerun the same command.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

from absl import logging

EXIT_PREEMPTED = 75
SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Preempted(Exception):  # noqa: N818 - it is not an error of the user
  """A signal arrived before training began: nothing new to save."""


class PreemptionGuard:
  """Turns SIGTERM and SIGINT into a flag polled by the trainer.

  Usage::

    with preemption.PreemptionGuard() as guard:
      ...
      guard.raise_if_requested()  # before the loop
      for step in ...:
        if guard.requested:
          checkpoint.save(manager, step, state, force=True)
          break

  The previous handlers are restored on exit. Signal handlers can only be set
  from the main thread; elsewhere (e.g. a training thread in a notebook) the
  guard logs that and never fires.

  Attributes:
    signal_name: "SIGTERM" or "SIGINT" once one arrived, else None.
    completed_at_signal: what `progress()` returned when the signal arrived
      (the loop's count of finished steps), to report how late the save is.
  """

  def __init__(self, signums: tuple[int, ...] = SIGNALS):
    self._signums = signums
    self._previous: dict[int, Any] = {}
    self._event = threading.Event()
    self.signal_name: str | None = None
    self.completed_at_signal: int | None = None
    # Set by the trainer: () -> steps known to be finished on the device.
    self.progress = lambda: None

  @property
  def requested(self) -> bool:
    return self._event.is_set()

  def _handle(self, signum, frame) -> None:
    del frame
    name = signal.Signals(signum).name
    if self._event.is_set():
      if name == self.signal_name:
        raise KeyboardInterrupt(f"second {name}: exiting without saving")
      return
    self.signal_name = name
    self.completed_at_signal = self.progress()
    logging.warning(
      "Received %s after step %s: saving a checkpoint at the next step and "
      "exiting (send it again to exit at once without saving).",
      name,
      self.completed_at_signal,
    )
    self._event.set()

  def raise_if_requested(self) -> None:
    """Raises `Preempted` if a signal has arrived (use before the loop)."""
    if self.requested:
      raise Preempted(f"{self.signal_name} before training began")

  def __enter__(self) -> PreemptionGuard:
    if threading.current_thread() is threading.main_thread():
      for signum in self._signums:
        self._previous[signum] = signal.signal(signum, self._handle)
    else:
      logging.info("PreemptionGuard: not the main thread; signals not handled.")
    return self

  def __exit__(self, *exc_info) -> None:
    for signum, previous in self._previous.items():
      signal.signal(signum, previous)
    self._previous.clear()
