"""Preemption honoured in time: real signals to real trainers.

* SIGTERM or SIGINT during training: the save lands within 2 steps of the
  steps finished when the signal arrived (dispatch runs at most 2 steps
  ahead of the device), the process exits 75 and says so. The config makes
  steps slow enough (tens of ms on a CPU) that "2 steps" is visible, and
  logs, evaluates and saves only at the end, so no other sync point bounds
  the queue.
* A signal during data loading exits cleanly too: status 75, no traceback,
  the workdir not even created.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lstm_jax.workdir import checkpoint
from tests.support import tiny_run

TIMEOUT = 300
STEPS = 400
SLOW = (
  f"--config.train.steps={STEPS}",
  f"--config.train.log_every={STEPS}",
  "--config.train.eval_every=0",
  "--config.checkpoint.every_steps=100000",
  "--config.data.batch_size=32",
  "--config.data.seq_len=64",
  "--config.model.lstm.hidden_size=128",
)


def _bar_step(text: str) -> int:
  found = re.findall(rf"(\d+)/{STEPS} \[", text)
  return int(found[-1]) if found else 0


@pytest.mark.parametrize(
  "signum", [signal.SIGTERM, pytest.param(signal.SIGINT, marks=pytest.mark.slow)]
)
def test_signal_saves_within_two_steps_and_exits_75(tmp_path, env, signum):
  workdir = tmp_path / "run"
  err_path, out_path = tmp_path / "stderr.txt", tmp_path / "stdout.txt"
  # The bar redraws on every finished step, so the test sees each one.
  run_env = {**env, "TQDM_MININTERVAL": "0"}
  with open(err_path, "w") as err, open(out_path, "w") as out:
    proc = subprocess.Popen(
      [*tiny_run.command(f"--workdir={workdir}"), *SLOW],
      cwd=tiny_run.REPO,
      env=run_env,
      stdout=out,
      stderr=err,
    )
  deadline = time.monotonic() + TIMEOUT
  seen, t_seen = 0, None
  while seen < 5:  # past compilation, mid-run
    assert proc.poll() is None, err_path.read_text()[-3000:]
    assert time.monotonic() < deadline, "the run did not reach step 5"
    new = _bar_step(err_path.read_text())
    if new > seen:
      seen, t_seen = new, time.monotonic()
    time.sleep(0.005)
  # Step time from the bar: how long 5 more finished steps took.
  while _bar_step(err_path.read_text()) < seen + 5:
    time.sleep(0.005)
  step_s = (time.monotonic() - t_seen) / 5
  seen = _bar_step(err_path.read_text())
  sent = time.monotonic()
  proc.send_signal(signum)
  assert proc.wait(timeout=TIMEOUT) == 75, err_path.read_text()[-3000:]
  exit_s = time.monotonic() - sent
  stdout, stderr = out_path.read_text(), err_path.read_text()
  assert "Traceback" not in stderr
  name = signal.Signals(signum).name
  match = re.search(rf"Preempted by {name} after step (\d+): saved step (\d+)", stdout)
  assert match, stdout[-2000:] + stderr[-2000:]
  at_signal, saved = int(match.group(1)), int(match.group(2))
  print(
    f"{name}: bar at {seen}, trainer counted {at_signal} finished, saved {saved} "
    f"({saved - at_signal} steps later); {step_s * 1000:.0f} ms/step; exit after "
    f"{exit_s:.1f} s"
  )
  assert seen <= at_signal <= saved <= at_signal + 2
  assert saved <= seen + 3  # the bar counted finished steps
  steps = sorted(
    int(p.name)
    for p in (workdir / checkpoint.CHECKPOINT_DIR).iterdir()
    if p.name.isdigit()
  )
  assert steps == [saved]


def test_signal_during_data_loading_exits_cleanly(tmp_path, env):
  workdir = tmp_path / "run"
  proc = subprocess.run(
    [
      sys.executable,
      "-m",
      "lstm_jax.main",
      "--config=tests/support/toy/sign_config.py",
      "--config.task=tests.support.toy.signal_task",
      f"--workdir={workdir}",
    ],
    cwd=tiny_run.REPO,
    env=env,
    capture_output=True,
    text=True,
    timeout=TIMEOUT,
  )
  assert proc.returncode == 75, proc.stderr[-3000:]
  assert "Traceback" not in proc.stderr and "KeyboardInterrupt" not in proc.stderr
  assert "Preempted" in proc.stderr and "SIGINT" in proc.stderr
  assert not Path(workdir).exists()
