"""User errors: mistakes a person can fix, reported without a traceback.

`lstm_jax.cli.main` catches `LstmJaxError`, prints its message as one paragraph and
exits non-zero. So does an OS error that is the machine's state rather than a
bug (a full disk, a read-only or forbidden directory: `os_error_message`, and
`workdir.orbax_compat.os_error_message` for the ones Orbax passes on as text).
Everything else (a bug) keeps its traceback. A message names
what is wrong (the file, the config key, the numbers) and what to do about it.
"""

from __future__ import annotations

import errno


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


def os_error_message(exc: BaseException, default_path: object = None) -> str | None:
  """One line for a full or read-only disk anywhere in `exc`'s chain, else None.

  The line names the file the OS names, else `default_path` (the workdir: a
  failed `write()` on an open file carries no file name). Only an OSError in
  the chain counts; `workdir.orbax_compat.os_error_message`
  also reads the OS's message out of the text of Orbax's and TensorStore's
  errors.
  """
  seen = []
  while exc is not None and exc not in seen:
    seen.append(exc)
    if isinstance(exc, OSError) and exc.errno in _USER_ERRNOS:
      path = exc.filename or default_path
      return os_error_line(exc.strerror or str(exc), exc.errno, path)
    exc = exc.__cause__ or exc.__context__
  return None


def os_error_line(what: str, code: int, path: object = None) -> str:
  """`what` (the OS's message), the file, and what to do for error `code`."""
  where = f" writing {path}" if path else ""
  return f"{what}{where}. " + _ADVICE.get(code, "")


_ADVICE = {
  errno.ENOSPC: "The disk is full: free space and rerun the same command; it "
  "resumes from the last complete checkpoint.",
  errno.EDQUOT: "The disk quota is exceeded: free space and rerun the same "
  "command; it resumes from the last complete checkpoint.",
  errno.EROFS: "The workdir is on a read-only file system: pass a writable --workdir.",
  errno.EACCES: "Permission denied: pass a --workdir you can write to.",
  errno.EPERM: "Operation not permitted: pass a --workdir you can write to.",
}
