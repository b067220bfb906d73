"""The training progress bar: its rate and ETA, and messages printed above it.

tqdm's own rate counts every step since the bar appeared, the first one
included; the first step of a process compiles the train step (seconds to
minutes), so tqdm's first estimate is that step's time multiplied by the steps
left, many times the real remaining time.
`Progress` measures the rate from the end of the first step the process runs,
so the ETA reads "?" until a second step has finished and covers the running
steps (evaluations included) from then on.

While a bar is open, records of the root logger's handlers (absl's included)
and Python warnings print through `tqdm.external_write_mode`: the bar's line is
cleared first and drawn again after, so a warning (an optional extra missing,
a library's deprecation) gets its own line instead of being glued onto the
bar's.

Importing this module imports tqdm (slow), and changes nothing; the routing
lasts from `Progress(...)` to `close()`.
"""

from __future__ import annotations

import logging
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

import tqdm


class _Bar(tqdm.tqdm):
  """tqdm, with the elapsed time and rate that `Progress` measures."""

  def __init__(self, progress: Progress, **kwargs: Any):
    self.progress = progress  # before tqdm's __init__, which draws the bar
    super().__init__(**kwargs)

  @property
  def format_dict(self) -> dict[str, Any]:
    values = super().format_dict
    elapsed, rate = self.progress.timing(self.n)
    # A rate of 0 shows "?" for both the rate and the remaining time; None
    # would make tqdm fall back to its own average from the bar's start.
    return {**values, "elapsed": elapsed, "rate": rate or 0}


class _AboveBar(logging.Handler):
  """Emits through `inner` with the bars cleared, then draws them again."""

  def __init__(self, inner: logging.Handler):
    super().__init__()
    self.inner = inner

  def emit(self, record: logging.LogRecord) -> None:
    if record.levelno >= self.inner.level:
      with tqdm.tqdm.external_write_mode():
        self.inner.handle(record)


def bar_file() -> Any:
  """Where the progress bar is drawn: stdout in a Jupyter kernel, else stderr.

  A notebook shows stdout and stderr as separate outputs, a new one wherever
  the two interleave; on stderr, the clearing of the bar before each eval line
  (stdout) would leave an empty output behind. On stdout the bar and the eval
  lines share one output, in which the bar redraws in place.
  """
  return sys.stdout if type(sys.stdout).__module__.startswith("ipykernel") else None


class Progress:
  """A tqdm bar of finished steps whose ETA excludes the compiling step.

  Args:
    total: the run's last step (the bar's length).
    initial: the step the run starts (or resumes) from.
    clock: seconds, monotonic (tests pass a fake one).
    file: where the bar is drawn (default: `bar_file()`).
  """

  def __init__(
    self,
    total: int,
    initial: int = 0,
    clock: Callable[[], float] = time.perf_counter,
    file: Any = None,
  ):
    self._clock = clock
    self._start = clock()
    self._first: tuple[float, int] | None = None  # (time, step) after the first step
    self._initial = self._step = initial
    self._fields: dict[str, str] = {}
    self._bar = _Bar(
      self,
      total=total,
      initial=initial,
      unit="step",
      dynamic_ncols=True,
      file=file or bar_file(),
    )
    self._route()

  @property
  def text(self) -> str:
    """The bar's current line, as drawn."""
    return str(self._bar)

  def timing(self, n: int) -> tuple[float, float | None]:
    """(seconds since the bar started, steps/s since the first step or None)."""
    now = self._clock()
    rate = None
    if self._first is not None and n > self._first[1] and now > self._first[0]:
      rate = (n - self._first[1]) / (now - self._first[0])
    return now - self._start, rate

  def advance(self, step: int) -> None:
    """Moves the bar to `step` (a finished step); the first move starts the rate."""
    if step <= self._step:
      return
    if self._first is None:
      self._first = (self._clock(), step)
    self._bar.update(step - self._step)
    self._step = step

  def set(self, name: str, value: str) -> None:
    """Shows `name=value` after the bar (drawn at the next move)."""
    self._fields[name] = value
    self._bar.set_postfix(self._fields, refresh=False)

  def write(self, line: str) -> None:
    """Prints `line` above the bar."""
    self._bar.write(line)

  def close(self) -> None:
    self._unroute()
    self._bar.close()

  def _route(self) -> None:
    root = logging.getLogger()
    self._handlers = list(root.handlers)
    root.handlers = [_AboveBar(h) for h in self._handlers]
    self._last_resort = logging.lastResort
    if self._last_resort is not None:
      logging.lastResort = _AboveBar(self._last_resort)
    self._showwarning = warnings.showwarning

    def show(*args: Any, **kwargs: Any) -> None:
      with tqdm.tqdm.external_write_mode():
        self._showwarning(*args, **kwargs)

    self._show = show
    warnings.showwarning = show

  def _unroute(self) -> None:
    root = logging.getLogger()
    root.handlers = [h.inner if isinstance(h, _AboveBar) else h for h in root.handlers]
    if isinstance(logging.lastResort, _AboveBar):
      logging.lastResort = self._last_resort
    if warnings.showwarning is self._show:
      warnings.showwarning = self._showwarning
