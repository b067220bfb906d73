"""One trainer per workdir: `lstm_jax.workdir.lock` (real flock, real processes).

* Two locks on one workdir conflict even within a process (flock is per open
  file), and the refusal names the holder.
* A second trainer on a busy workdir exits
  non-zero at once with one `error:` line naming the holder (pid, host,
  since), writes nothing, and the first finishes bit-identical to an
  uninterrupted run. The first is held with SIGSTOP while the second starts,
  so the overlap does not depend on timing.
* After a SIGKILL the rerun takes the lock (the kernel dropped it) and ends
  bit-identical.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time

import pytest

from lstm_jax.workdir import lock
from tests.support import tiny_run
from tests.support.runs import (
  assert_bit_identical,
  metrics_history,
  wait_for_checkpoints,
)

TIMEOUT = 300


def test_a_second_lock_is_refused_naming_the_holder(tmp_path):
  workdir = str(tmp_path / "w")
  with lock.WorkdirLock(workdir):
    with pytest.raises(lock.WorkdirBusyError) as info, lock.WorkdirLock(workdir):
      pass
    message = str(info.value)
    import os

    assert f"pid {os.getpid()} on host {socket.gethostname()} since " in message
  with lock.WorkdirLock(workdir):  # released on exit
    pass


def _holder_pid(workdir) -> int | None:
  try:
    return json.loads((workdir / lock.LOCK_FILE).read_text())["pid"]
  except (OSError, ValueError, KeyError):
    return None


def _start(workdir, env, log):
  return subprocess.Popen(
    tiny_run.command(f"--workdir={workdir}"),
    cwd=tiny_run.REPO,
    env=env,
    stdout=subprocess.DEVNULL,
    stderr=log,
  )


def _wait_until_stopped(pid: int, workdir, timeout: float = 30.0) -> None:
  """Waits until the kernel reports every thread of `pid` stopped (state T
  in /proc/PID/task/*/stat) and the workdir no longer changes.

  SIGSTOP is asynchronous and per thread: the main thread can show T while
  an Orbax writer thread is still inside a write (measured: a checkpoint's
  tmp file grew from 0 to 118 bytes after the main thread had stopped).
  """
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    states = []
    for task in os.listdir(f"/proc/{pid}/task"):
      try:
        with open(f"/proc/{pid}/task/{task}/stat") as f:
          states.append(f.read().rsplit(")", 1)[1].split()[0])
      except FileNotFoundError:  # the thread has just exited
        continue
    if states and all(state in "Tt" for state in states):
      snapshot = tiny_run.tree_snapshot(workdir)
      time.sleep(0.5)
      if tiny_run.tree_snapshot(workdir) == snapshot:
        return
    time.sleep(0.01)
  raise AssertionError(f"process {pid} did not stop within {timeout} s")


def test_second_trainer_refused_first_finishes_identical(tmp_path, env, tiny_reference):
  workdir = tmp_path / "run"
  err = tmp_path / "first.txt"
  with open(err, "w") as log:
    first = _start(workdir, env, log)
  try:
    wait_for_checkpoints(first, workdir, 1, err)
    assert _holder_pid(workdir) == first.pid
    first.send_signal(signal.SIGSTOP)  # holds the lock, writes nothing meanwhile
    _wait_until_stopped(first.pid, workdir)  # the signal is asynchronous
    before = tiny_run.tree_snapshot(workdir)
    started = time.monotonic()
    second = tiny_run.run(workdir, env, TIMEOUT)
    seconds = time.monotonic() - started
    # Before SIGCONT: once continued, the first trainer writes again (its
    # in-flight checkpoint; on an idle machine at once).
    after = tiny_run.tree_snapshot(workdir)
  finally:
    first.send_signal(signal.SIGCONT)
  print(f"second trainer refused after {seconds:.1f} s (start-up included)")
  assert second.returncode == 1, second.stderr[-3000:]
  assert "Traceback" not in second.stderr
  lines = [x for x in second.stderr.splitlines() if x.startswith("error: ")]
  assert len(lines) == 1, second.stderr[-3000:]
  assert f"pid {first.pid} on host {socket.gethostname()} since " in lines[0]
  assert "Starting" not in second.stdout and "Resuming" not in second.stdout
  assert after == before  # the second wrote nothing

  assert first.wait(timeout=TIMEOUT) == 0, err.read_text()[-3000:]
  assert_bit_identical(workdir, tiny_reference[0], "beside a refused second trainer")
  assert metrics_history(workdir) == metrics_history(tiny_reference[0])


@pytest.mark.slow  # a killed run and its rerun: ~10 s
def test_rerun_after_sigkill_takes_the_lock(tmp_path, env, tiny_reference):
  workdir = tmp_path / "run"
  err = tmp_path / "first.txt"
  with open(err, "w") as log:
    first = _start(workdir, env, log)
  wait_for_checkpoints(first, workdir, 1, err)
  first.send_signal(signal.SIGKILL)
  assert first.wait(timeout=TIMEOUT) == -signal.SIGKILL
  assert _holder_pid(workdir) == first.pid  # the note stays, the lock does not
  proc = subprocess.run(
    tiny_run.command(f"--workdir={workdir}"),
    cwd=tiny_run.REPO,
    env=env,
    capture_output=True,
    text=True,
    timeout=TIMEOUT,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "Resuming" in proc.stdout
  assert _holder_pid(workdir) not in (None, first.pid)
  assert_bit_identical(workdir, tiny_reference[0], "rerun after SIGKILL")
