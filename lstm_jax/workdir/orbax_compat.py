"""Workarounds for Orbax and TensorStore, each with the version it targets.

Written against orbax-checkpoint 0.12.8 and tensorstore 0.1.86 (the pins in
constraints.txt). On an upgrade, check each item: the way to tell it can go
is given with it; the tests named there must stay green without it.

1. `TolerantMetricsManager._get_metrics` overrides a private method of
   `orbax.checkpoint.CheckpointManager`. Orbax reads every step's
   `metrics/metrics` while it lists the steps and tolerates only a missing
   file, so one damaged file (not JSON, unreadable) raises out of the
   constructor and blocks every resume and every reader. Here such a step is
   remembered in `unreadable_metrics` and skipped like any damaged step.
   Drop when Orbax skips (or reports per step) an unreadable metrics file;
   follow the rename if `_get_metrics` changes.
   `tests/system/damaged_workdir_test.py::test_a_bad_metrics_file_falls_back_for_readers_and_resume`
   fails without it.
2. `describe` reduces an exception to its innermost cause's first line:
   Orbax wraps TensorStore's read errors in "Encountered error while reading
   array index ..." with a spec of several kilobytes; the cause names the
   file and the problem. Drop when Orbax's own message names the file in
   one line (bad_input_test's `none_restorable` message says).
3. `silence_unraisable` keeps the reads that Orbax abandons after a failed
   restore from printing tracebacks around the one `error:` line: un-awaited
   Orbax coroutines reported by `sys.unraisablehook` when collected
   ("Exception ignored in: <coroutine ...>"), the same "Encountered error
   while reading array index" with no coroutine object (unraisable hook,
   `sys.excepthook` or asyncio's "Task exception was never retrieved" log),
   and TensorStore callbacks that complete on Orbax's closed event loop
   ("RuntimeError: Event loop is closed", through the unraisable hook with
   no object, 1 run in 6 after "none restorable", or through
   `sys.excepthook`). Drop when a failed restore cancels or awaits its other
   reads: bad_input_test's `none_restorable` and `sample_none_restorable`
   cases then print no traceback without it, over repeated runs under load
   (the reports are timing-dependent).
4. `os_error_message` finds a full or read-only disk that Orbax and
   TensorStore pass on only as text (a ValueError holding "RESOURCE_EXHAUSTED:
   ... No space left on device"), beside the OSError chain that
   `errors.os_error_message` searches. Drop when the OSError survives as a
   cause: bad_input_test's `test_disk_full_during_a_save_then_rerun_is_bit_identical`
   (root only) then passes with `errors.os_error_message` alone.
5. `QuietSaveThreadOsErrors` drops the log records (with tracebacks) that
   Orbax's background save threads write for that same full or read-only
   disk (a full disk printed 456 lines and 5 tracebacks); the `error:` line
   says it once. Drop when Orbax stops logging the error it also raises (the
   disk-full test above).
6. `ReadOnlyNoticeFilter` drops Orbax's warnings that a read-only manager is
   read-only (its directory, its save interval): that is what
   `reader.open_run` asks for. `checkpoint.make_manager` drops them while it
   creates a read-only manager (`read_only_notices_dropped`), so a notebook
   that opens a run prints none either. Drop when Orbax stops warning about
   options a read-only manager implies: with this filter removed,
   `python -m lstm_jax.sample` on a finished run prints no Orbax warning.

Elsewhere, because they are arguments or exit paths rather than functions:
`checkpoint.make_manager` passes `save_interval_steps=0` to a read-only
manager and `checkpoint.save` passes `metrics={}` rather than None (Orbax
warns otherwise), and `cli.common.fail` ends the process with `os._exit`
(TensorStore's reader threads of a failed restore complete futures on
Orbax's closed loop during interpreter shutdown, each printing a traceback).

Importing this module changes nothing; the CLIs install the hooks and filters.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import sys
import traceback
from collections.abc import Iterator
from typing import Any

import orbax.checkpoint as ocp

from lstm_jax import errors


class TolerantMetricsManager(ocp.CheckpointManager):
  """A CheckpointManager that lists a step whose metrics file is damaged.

  Such a step's reason is in `unreadable_metrics[step]` (refilled by
  `reload`); its metrics read as None.
  """

  def __init__(self, *args: Any, **kwargs: Any):
    # Filled while Orbax lists the steps (in its __init__ and `reload`).
    self.unreadable_metrics: dict[int, str] = {}
    super().__init__(*args, **kwargs)

  def _get_metrics(self, step: int) -> Any:
    try:
      return super()._get_metrics(step)
    except Exception as exc:  # noqa: BLE001 - any failure means "not usable"
      self.unreadable_metrics[step] = f"its metrics file: {describe(exc)}"
      return None

  def reload(self) -> None:
    self.unreadable_metrics = {}
    super().reload()


def describe(exc: BaseException, limit: int = 300) -> str:
  """One line, "Type: text": the innermost cause with a message, cut at `limit`.

  Orbax wraps TensorStore errors ("Encountered error while reading array
  index ... <a multi-kilobyte spec>"); the cause names the file and the
  problem (e.g. OUT_OF_RANGE: requested byte range is not valid).
  """
  seen = []
  while exc is not None and exc not in seen:
    seen.append(exc)
    exc = exc.__cause__
  for candidate in reversed(seen):
    text = str(candidate).strip()
    if text:
      text = text.splitlines()[0]
      if len(text) > limit:
        text = text[:limit] + "..."
      return f"{type(candidate).__name__}: {text}"
  return type(seen[0]).__name__


def _closed_loop(kind, value, tb) -> bool:
  """asyncio's "Event loop is closed", raised by its own closed-loop check."""
  frames = traceback.extract_tb(tb)
  return (
    kind is RuntimeError
    and str(value) == "Event loop is closed"
    and bool(frames)
    and frames[-1].name == "_check_closed"
    and frames[-1].filename.endswith(os.path.join("asyncio", "base_events.py"))
  )


def _in_orbax(filename: str) -> bool:
  return f"{os.sep}orbax{os.sep}" in filename


def _orbax_read(kind, value, tb) -> bool:
  """Orbax's "Encountered error while reading array index" wrapper, raised in
  Orbax's code: an abandoned read reported without its coroutine."""
  del kind
  frames = traceback.extract_tb(tb) if tb is not None else []
  return str(value).startswith("Encountered error while reading array index") and any(
    _in_orbax(f.filename) for f in frames
  )


def silence_unraisable() -> None:
  """Keeps Orbax's abandoned reads from printing tracebacks (item 3 above).

  Installs `sys.unraisablehook`, `sys.excepthook` and a filter on the
  "asyncio" logger that drop only those reports (the failure is already
  reported, per step, by `lstm_jax.workdir.checkpoint`); every other
  exception still goes to the hook that was there before.
  """
  default = sys.__unraisablehook__

  def hook(unraisable) -> None:
    if _orbax_read(unraisable.exc_type, unraisable.exc_value, unraisable.exc_traceback):
      return
    code = getattr(unraisable.object, "cr_code", None)
    if code is not None and _in_orbax(code.co_filename):
      return
    # TensorStore reports a failed callback with PyErr_WriteUnraisable(NULL):
    # no object, only the traceback.
    if _closed_loop(
      unraisable.exc_type, unraisable.exc_value, unraisable.exc_traceback
    ):
      return
    default(unraisable)

  sys.unraisablehook = hook
  # The same callbacks, when they fire after Orbax closed the loop from C++,
  # go through sys.excepthook.
  default_excepthook = sys.excepthook

  def excepthook(kind, value, tb) -> None:
    if _closed_loop(kind, value, tb) or _orbax_read(kind, value, tb):
      return
    default_excepthook(kind, value, tb)

  sys.excepthook = excepthook

  # asyncio logs a failed task nobody awaited ("Task exception was never
  # retrieved") with its traceback; drop it only for Orbax's read wrapper.
  def keep(record: logging.LogRecord) -> bool:
    exc = record.exc_info
    return not (exc and exc[1] is not None and _orbax_read(*exc))

  logging.getLogger("asyncio").addFilter(keep)


# The OS's message inside the text of Orbax's and TensorStore's ValueErrors.
_NEEDLES = (
  ("No space left on device", errno.ENOSPC),
  ("Disk quota exceeded", errno.EDQUOT),
  ("Read-only file system", errno.EROFS),
  ("Permission denied", errno.EACCES),
)


def os_error_message(exc: BaseException, default_path: object = None) -> str | None:
  """`errors.os_error_message`, or the same line for a disk error that
  survives only as text somewhere in `exc`'s chain (item 4 above); else None.
  The line names `default_path` when the error names no file."""
  message = errors.os_error_message(exc, default_path)
  if message is not None:
    return message
  seen = []
  while exc is not None and exc not in seen:
    seen.append(exc)
    exc = exc.__cause__ or exc.__context__
  for candidate in seen:
    text = str(candidate)
    for needle, code in _NEEDLES:
      if needle in text:
        paths = re.findall(r'"(/[^"]+)"', text) or re.findall(r"'(/[^']+)'", text)
        path = paths[-1] if paths else default_path
        return errors.os_error_line(needle, code, path)
  return None


class QuietSaveThreadOsErrors(logging.Filter):
  """Drops log records about a full or read-only disk (item 5 above)."""

  def filter(self, record: logging.LogRecord) -> bool:
    if record.exc_info and os_error_message(record.exc_info[1]):
      return False
    return os_error_message(Exception(record.getMessage())) is None


class ReadOnlyNoticeFilter(logging.Filter):
  """Drops Orbax's notices that a read-only manager is read-only (item 6)."""

  def filter(self, record: logging.LogRecord) -> bool:
    message = record.getMessage()
    return "read only" not in message and "read_only=True" not in message


@contextlib.contextmanager
def read_only_notices_dropped() -> Iterator[None]:
  """`ReadOnlyNoticeFilter` on absl's logger, for the `with` block only.

  Library callers (a notebook opening a run) see no notice, and the logger
  is as it was afterwards.
  """
  logger, quiet = logging.getLogger("absl"), ReadOnlyNoticeFilter()
  logger.addFilter(quiet)
  try:
    yield
  finally:
    logger.removeFilter(quiet)
