"""User errors: mistakes a person can fix, reported without a traceback.

`lstm_jax.cli.main` catches `LstmJaxError`, prints its message as one paragraph and
exits non-zero. So does an OS error that is the machine's state rather than a
bug (a full disk, a read-only or forbidden directory: `os_error_message`).
Everything else (a bug) keeps its traceback. A message names
what is wrong (the file, the config key, the numbers) and what to do about it.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import sys
import traceback


class LstmJaxError(Exception):
  """Base class of errors caused by the input, not by the code."""


class ConfigError(LstmJaxError):
  """A config value is invalid or inconsistent with another one."""


class DataError(LstmJaxError):
  """The data cannot be used: missing, empty, not UTF-8, or too short."""


class IncompatibleRunError(LstmJaxError):
  """The workdir holds a run whose config or data differ from this one."""


class DivergenceError(LstmJaxError):
  """Training produced non-finite losses for too many consecutive steps."""


# OS errors that are the machine's state, not a bug: the message (with the
# path) is all a user needs.
_USER_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def os_error_message(exc: BaseException) -> str | None:
  """One line for a full or read-only disk anywhere in `exc`'s chain, else None.

  Orbax and TensorStore wrap the OSError of a failed write (sometimes only
  its text survives), so both the chain and the text are searched.
  """
  seen = []
  while exc is not None and exc not in seen:
    seen.append(exc)
    if isinstance(exc, OSError) and exc.errno in _USER_ERRNOS:
      where = f" writing {exc.filename}" if exc.filename else ""
      return f"{exc.strerror or exc}{where}. " + _ADVICE.get(exc.errno, "")
    exc = exc.__cause__ or exc.__context__
  for candidate in seen:
    text = str(candidate)
    for needle, code in _NEEDLES:
      if needle in text:
        paths = re.findall(r'"(/[^"]+)"', text) or re.findall(r"'(/[^']+)'", text)
        where = f" writing {paths[-1]}" if paths else ""
        return f"{needle}{where}. " + _ADVICE[code]
  return None


# Orbax/TensorStore report a failed write as a ValueError whose text holds the
# OS's message (RESOURCE_EXHAUSTED: ... No space left on device).
_NEEDLES = (
  ("No space left on device", errno.ENOSPC),
  ("Disk quota exceeded", errno.EDQUOT),
  ("Read-only file system", errno.EROFS),
  ("Permission denied", errno.EACCES),
)


_ADVICE = {
  errno.ENOSPC: "The disk is full: free space and rerun the same command; it "
  "resumes from the last complete checkpoint.",
  errno.EDQUOT: "The disk quota is exceeded: free space and rerun the same "
  "command; it resumes from the last complete checkpoint.",
  errno.EROFS: "The workdir is on a read-only file system: pass a writable --workdir.",
  errno.EACCES: "Permission denied: pass a --workdir you can write to.",
  errno.EPERM: "Operation not permitted: pass a --workdir you can write to.",
}


def silence_orbax_unraisable() -> None:
  """Keeps Orbax's abandoned reads from printing tracebacks.

  When a restore fails (a damaged checkpoint), Orbax leaves coroutines that
  read the other arrays un-awaited; when they are garbage-collected Python
  prints each one's exception as "Exception ignored in: <coroutine ...>" with
  a traceback, around the clean "none restorable" message. The CLIs install
  this hook: such reports from Orbax's own coroutines are dropped (the
  failure is already reported, per step, by `lstm_jax.workdir.checkpoint`); every
  other unraisable exception still goes to the hook installed before (Python's
  default in the CLIs, pytest's in the tests: tests/conftest.py).
  """
  default = sys.unraisablehook

  def closed_loop(kind, value, tb) -> bool:
    frames = traceback.extract_tb(tb)
    return (
      kind is RuntimeError
      and str(value) == "Event loop is closed"
      and bool(frames)
      and frames[-1].name == "_check_closed"
      and frames[-1].filename.endswith(os.path.join("asyncio", "base_events.py"))
    )

  def in_orbax(filename: str) -> bool:
    return f"{os.sep}orbax{os.sep}" in filename

  def orbax_read(kind, value, tb) -> bool:
    # The same abandoned reads, reported with no coroutine object (seen once in
    # CI): Orbax's own "Encountered error while reading array index" wrapper.
    del kind
    frames = traceback.extract_tb(tb) if tb is not None else []
    return str(value).startswith("Encountered error while reading array index") and any(
      in_orbax(f.filename) for f in frames
    )

  def hook(unraisable) -> None:
    if orbax_read(unraisable.exc_type, unraisable.exc_value, unraisable.exc_traceback):
      return
    code = getattr(unraisable.object, "cr_code", None)
    if code is not None and in_orbax(code.co_filename):
      return
    # TensorStore reports a failed callback with PyErr_WriteUnraisable(NULL):
    # no object, only the traceback (seen 1 run in 6 after "none restorable").
    if closed_loop(unraisable.exc_type, unraisable.exc_value, unraisable.exc_traceback):
      return
    default(unraisable)

  sys.unraisablehook = hook
  # TensorStore's completion callbacks of those reads may still fire after
  # Orbax closed their event loop; the C++ side prints the resulting
  # "RuntimeError: Event loop is closed" through sys.excepthook. Only that
  # exact error, raised by asyncio's closed-loop check, is dropped.
  default_excepthook = sys.excepthook

  def excepthook(kind, value, tb) -> None:
    if closed_loop(kind, value, tb) or orbax_read(kind, value, tb):
      return
    default_excepthook(kind, value, tb)

  sys.excepthook = excepthook

  # asyncio logs a failed task nobody awaited ("Task exception was never
  # retrieved") with its traceback; drop it only for Orbax's read wrapper.
  def keep(record: logging.LogRecord) -> bool:
    exc = record.exc_info
    return not (exc and exc[1] is not None and orbax_read(*exc))

  logging.getLogger("asyncio").addFilter(keep)
