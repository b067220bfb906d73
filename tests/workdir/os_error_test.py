"""A full or read-only disk becomes one line naming the file (in-process).

`lstm_jax.errors.os_error_message` reads an OSError anywhere in an
exception's chain; `workdir.orbax_compat.os_error_message` also reads the
OS's message out of the text Orbax and TensorStore pass on. The CLI's
end-to-end disk-full run (a small tmpfs) is
tests/system/bad_input_test.py::test_disk_full_during_a_save_then_rerun_is_bit_identical,
`-m slow`.
"""

from __future__ import annotations

import errno
import os

from lstm_jax import errors
from lstm_jax.workdir import orbax_compat


def _chained(inner: Exception) -> RuntimeError:
  """`inner` two levels down a chain: raised, caught, re-raised from."""
  try:
    try:
      raise inner
    except Exception as exc:
      raise ValueError("while saving") from exc
  except ValueError as exc:
    try:
      raise RuntimeError("checkpoint failed")
    except RuntimeError as outer:
      assert outer.__context__ is exc
      return outer


def test_full_disk_in_the_chain_names_the_file_and_the_remedy():
  full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/w/checkpoints/10/x")
  line = errors.os_error_message(_chained(full), "/w")
  assert line == (
    f"{os.strerror(errno.ENOSPC)} writing /w/checkpoints/10/x. The disk is full: "
    "free space and rerun the same command; it resumes from the last complete "
    "checkpoint."
  )


def test_an_error_without_a_file_names_the_workdir():
  line = errors.os_error_message(OSError(errno.EROFS, "Read-only file system"), "/w")
  assert line.startswith("Read-only file system writing /w. ")
  assert line.endswith("pass a writable --workdir.")


def test_other_os_errors_and_plain_bugs_are_not_user_errors():
  assert errors.os_error_message(OSError(errno.ENOENT, "No such file"), "/w") is None
  assert errors.os_error_message(_chained(KeyError("x")), "/w") is None
  assert orbax_compat.os_error_message(ValueError("shape mismatch"), "/w") is None


def test_orbax_text_is_read_for_the_message_and_the_last_quoted_path():
  text = (
    'Error writing "/w/checkpoints/15/state/d/abc": '
    "INTERNAL: No space left on device [source locations=...]"
  )
  line = orbax_compat.os_error_message(_chained(ValueError(text)), "/w")
  assert line.startswith(
    "No space left on device writing /w/checkpoints/15/state/d/abc. "
  )
  assert "The disk is full" in line
  # The chain's OSError wins over text: its file is the one the OS named.
  full = OSError(errno.ENOSPC, "No space left on device", "/w/metrics.jsonl")
  assert "writing /w/metrics.jsonl." in orbax_compat.os_error_message(full, "/w")
