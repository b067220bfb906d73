"""One trainer per workdir: an OS lock on `<workdir>/train.lock`.

Two trainers on one workdir corrupt each other (one replaces `metrics.jsonl`
under the other's open handle, both save the same steps). `WorkdirLock` takes
an exclusive `fcntl.flock` on the lock file before the trainer writes
anything. The kernel drops the lock when its process ends, however it ends
(SIGKILL included), so a crashed run never leaves a stale lock behind; the
file itself stays (deleting a lock file while another process may be opening
it is a race) and holds only a note of its last holder: pid, host and when it
took the lock, which is what the refusal prints.

Readers of a run (`lstm_jax.runs.reader`) do not lock: they write nothing.

Multi-host: all processes of one run share the workdir, so only process 0
takes the lock and the outcome is broadcast to the others (they would
otherwise block on a lock their own run holds); every process then refuses
together. `flock` is advisory and per host on some network filesystems (NFS
before v4, gcsfuse has none): there a second run on another host is not
stopped. Where the filesystem does not support locking at all the trainer
warns and runs without it.
"""

from __future__ import annotations

import datetime
import errno
import fcntl
import json
import os
import socket

import jax
import numpy as np
from absl import logging

from lstm_jax import errors

LOCK_FILE = "train.lock"


class WorkdirBusyError(errors.LstmJaxError):
  """Another trainer holds the workdir's lock."""


def _holder(fd: int) -> str:
  """The note the holder wrote, as text ("unknown" if not written yet)."""
  try:
    os.lseek(fd, 0, os.SEEK_SET)
    note = json.loads(os.read(fd, 4096).decode("utf-8"))
    return f"pid {note['pid']} on host {note['host']} since {note['since']}"
  except (OSError, ValueError, KeyError, TypeError):
    return "a process that has not written its pid yet"


class WorkdirLock:
  """Context manager holding the workdir's lock (see the module docstring).

  Raises:
    WorkdirBusyError: on entry, when another process holds the lock; the
      message names it (pid, host, since when).
  """

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, LOCK_FILE)
    self._fd: int | None = None
    # The lock file as it was before this process wrote its note (None: it
    # did not exist), put back when the run fails: a run that stops on an
    # error leaves the workdir byte-identical, the lock file included.
    self._previous: bytes | None = None

  def _acquire(self) -> str | None:
    """Takes the lock on process 0; None, or the refusal message."""
    os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
    existed = os.path.exists(self.path)
    fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = _holder(fd)
      os.close(fd)
      return (
        f"{os.path.dirname(self.path)} is in use by another trainer ({holder}; "
        f"lock {self.path}). Wait for it to finish or stop it, or train in "
        "another --workdir."
      )
    except OSError as exc:
      if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
        os.close(fd)
        raise
      logging.warning(
        "%s: the filesystem does not support locking (%s); nothing stops a "
        "second trainer on this workdir.",
        self.path,
        exc,
      )
    since = datetime.datetime.now(datetime.UTC)
    note = {
      "pid": os.getpid(),
      "host": socket.gethostname(),
      "since": since.strftime("%Y-%m-%d %H:%M:%S UTC"),
    }
    self._previous = os.pread(fd, 1 << 16, 0) if existed else None
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(note) + "\n").encode("utf-8"), 0)
    self._fd = fd
    return None

  def __enter__(self) -> WorkdirLock:
    refusal = self._acquire() if jax.process_index() == 0 else None
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils

      busy = multihost_utils.broadcast_one_to_all(np.int32(refusal is not None))
      if int(busy) and refusal is None:
        refusal = f"{os.path.dirname(self.path)} is in use by another trainer."
    if refusal:
      self.release()
      raise WorkdirBusyError(refusal)
    return self

  def release(self) -> None:
    """Drops the lock (closing the descriptor is what releases a flock)."""
    if self._fd is not None:
      os.close(self._fd)
      self._fd = None

  def _restore_previous(self) -> None:
    """Puts the lock file back as it was (still holding the lock)."""
    if self._fd is None:
      return
    if self._previous is None:
      os.remove(self.path)
    else:
      os.ftruncate(self._fd, 0)
      os.pwrite(self._fd, self._previous, 0)

  def __exit__(self, exc_type, exc, tb) -> None:
    if exc_type is not None and issubclass(exc_type, errors.LstmJaxError):
      self._restore_previous()
    self.release()
