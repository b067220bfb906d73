"""End to end, in subprocesses: a run killed and restarted ends bit-identical.

What the training system promises:

* SIGKILL at a random point after k checkpoints, then the same command again:
  the final train state (parameters, optimizer state, RNG, step, early-stopping
  record) equals an uninterrupted run's on every leaf, bit for bit, and the
  metrics history (all but throughput) equals the uninterrupted one too.
* SIGTERM: exit code 75, a checkpoint at the step it stopped, and the restart
  continues from that step to the same final state.
* A truncated file in the newest checkpoint: the restart says which step it
  could not read, resumes from the previous one and still ends bit-identical.
* metrics.jsonl, the TensorBoard events and the progress bar agree.

All runs share one JAX compilation cache, so only the first compiles; a
restart then costs seconds, as it would for a user.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from lstm_jax.workdir import checkpoint
from tests.support import tiny_run
from tests.support.runs import (
  assert_bit_identical,
  final_state,
  finalized_steps,
  metrics_history,
  read_tensorboard_scalars,
  wait_for_checkpoints,
)

STEPS = tiny_run.STEPS
TIMEOUT = 240  # seconds per subprocess; a hung run fails instead of stalling CI


def _command(workdir) -> list[str]:
  return tiny_run.command(f"--workdir={workdir}")


def _run(workdir, env) -> subprocess.CompletedProcess:
  proc = tiny_run.run(workdir, env, TIMEOUT)
  assert proc.returncode == 0, f"run failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
  return proc


def _start(workdir, env, log_dir) -> tuple[subprocess.Popen, Path, Path]:
  out, err = Path(log_dir) / "stdout.txt", Path(log_dir) / "stderr.txt"
  with open(out, "w") as fo, open(err, "w") as fe:
    proc = subprocess.Popen(
      _command(workdir), cwd=tiny_run.REPO, env=env, stdout=fo, stderr=fe
    )
  return proc, out, err


@pytest.fixture(scope="module")
def reference(tiny_reference):
  """One uninterrupted run: the session's (conftest.py), the same command."""
  return tiny_reference


# Checkpoints of the tiny run, the last one included. A kill after k of them,
# k <= LAST_KILL, leaves at least two checkpoint intervals of steps to run.
# The kill lands a seeded fraction (< 1) of the measured last interval later,
# or as soon as the next checkpoint appears, whichever comes first: the
# measured interval can be far longer than the next one (after the first
# checkpoint it includes start-up and compilation), and the checkpoint trigger
# keeps the kill at least one interval (5 steps, an eval, the final save)
# before the run's end, however fast the machine is.
CHECKPOINTS = STEPS // tiny_run.CHECKPOINT_EVERY
LAST_KILL = CHECKPOINTS - 2


def _sleep_before_next_checkpoint(workdir, seconds: float) -> None:
  """Sleeps `seconds`, or until a checkpoint newer than the latest appears."""
  latest = max(finalized_steps(workdir), default=-1)
  deadline = time.monotonic() + seconds
  while time.monotonic() < deadline:
    if max(finalized_steps(workdir), default=-1) > latest:
      return
    time.sleep(0.01)


def _kill_and_resume(tmp_path, env, reference, kills: list[tuple[int, float]]):
  """Kills a fresh run once per (checkpoints, fraction of a checkpoint
  interval) in `kills`, then finishes it. Zero checkpoints: the kill is that
  fraction of 0.5 s after the run prints "Starting" (start-up, compilation)."""
  workdir = tmp_path / "run"
  context = f"kill points (checkpoints seen, extra delay s) = {kills}"
  for i, (count, delay) in enumerate(kills):
    log_dir = tmp_path / f"attempt{i}"
    log_dir.mkdir()
    proc, out, err = _start(workdir, env, log_dir)
    if count:
      interval = wait_for_checkpoints(proc, workdir, count, err)
    else:
      while "Starting" not in out.read_text() and proc.poll() is None:
        time.sleep(0.01)
      interval = 0.5
    _sleep_before_next_checkpoint(workdir, delay * interval)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=TIMEOUT) == -signal.SIGKILL
    steps = finalized_steps(workdir)
    assert not steps or steps[-1] < STEPS, f"{context}: finished before the kill"
  proc = _run(workdir, env)
  resumed = re.search(r"Resuming .* at step \d+/\d+", proc.stdout)
  context += f"; {resumed.group(0) if resumed else 'started from scratch'}"
  assert_bit_identical(workdir, reference[0], context)
  # One history, no duplicates: records written after the last checkpoint by
  # the killed process were dropped on resume.
  got, want = metrics_history(workdir), metrics_history(reference[0])
  first = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), None)
  assert got == want, (
    f"{context}: metrics.jsonl differs from the uninterrupted run's "
    f"({len(got)} vs {len(want)} records; first difference at record {first}: "
    f"{got[first] if first is not None else ''} vs "
    f"{want[first] if first is not None else ''})"
  )
  return proc


def test_sigkill_then_resume_is_bit_identical(tmp_path, env, reference):
  rng = random.Random("sigkill-once")
  kill = (2, round(rng.uniform(0.0, 0.9), 3))
  proc = _kill_and_resume(tmp_path, env, reference, [kill])
  assert re.search(r"Resuming .* at step (5|10|15|20|25)/30", proc.stdout), proc.stdout


@pytest.mark.slow
@pytest.mark.parametrize("count", range(LAST_KILL + 1))
def test_sigkill_at_many_points(tmp_path, env, reference, count):
  rng = random.Random(f"sigkill-{count}")
  # count 0 kills during start-up/compilation: the restart begins from scratch.
  _kill_and_resume(tmp_path, env, reference, [(count, round(rng.uniform(0, 0.9), 3))])


@pytest.mark.slow
def test_sigkill_twice(tmp_path, env, reference):
  rng = random.Random("sigkill-twice")
  kills = [(1, round(rng.uniform(0, 0.9), 3)), (2, round(rng.uniform(0, 0.9), 3))]
  _kill_and_resume(tmp_path, env, reference, kills)


def test_sigterm_saves_exits_75_and_resumes(tmp_path, env, reference):
  workdir = tmp_path / "run"
  proc, out, err = _start(workdir, env, tmp_path)
  wait_for_checkpoints(proc, workdir, 1, err)
  proc.send_signal(signal.SIGTERM)
  # 75 (EX_TEMPFAIL): preempted after saving, distinct from a finished run.
  assert proc.wait(timeout=TIMEOUT) == 75, err.read_text()[-3000:]
  stdout = out.read_text()
  match = re.search(r"Preempted by SIGTERM after step \d+: saved step (\d+)", stdout)
  assert match, stdout[-3000:] + err.read_text()[-3000:]
  stopped = int(match.group(1))
  assert 0 < stopped < STEPS, f"SIGTERM came too late to test anything ({stopped})"
  assert finalized_steps(workdir)[-1] == stopped
  saved_step, state = final_state(workdir)
  assert saved_step == stopped and int(state["step"]) == stopped

  proc = _run(workdir, env)
  assert f"Resuming {workdir} at step {stopped}/{STEPS}" in proc.stdout, proc.stdout
  assert_bit_identical(workdir, reference[0], f"SIGTERM at step {stopped}")
  # The first train record after the resume says how many steps it averages
  # (fewer than log_every when the stop was off a log boundary).
  boundary = (stopped // 5 + 1) * 5
  first = next(
    r for r in metrics_history(workdir) if r["split"] == "train" and r["step"] > stopped
  )
  assert first["step"] == boundary and first["window_steps"] == boundary - stopped


def _largest_file(directory: Path) -> Path:
  return max(
    (p for p in directory.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size
  )


# One CLI run. In the default suite: the fallback, the quarantine and saving
# that step again in-process
# (tests/workdir/checkpoint_test.py::test_truncated_latest_falls_back_with_warning),
# the CLI readers falling back over a truncated newest step
# (tests/system/damaged_workdir_test.py::test_readers_write_nothing_and_still_fall_back),
# and a resume ending bit-identical (test_sigkill_then_resume_is_bit_identical).
@pytest.mark.slow
def test_truncated_latest_checkpoint_falls_back_and_says_so(tmp_path, env, reference):
  workdir = tmp_path / "run"
  shutil.copytree(reference[0], workdir)
  newest = finalized_steps(workdir)[-1]
  assert newest == STEPS
  victim = _largest_file(workdir / checkpoint.CHECKPOINT_DIR / str(newest))
  with open(victim, "r+b") as f:
    f.truncate(victim.stat().st_size // 2)

  proc = _run(workdir, env)
  assert re.search(
    rf"Checkpoint at step {newest} could not be restored \(\w+", proc.stderr
  ), proc.stderr[-3000:]
  previous = re.search(r"Resuming .* at step (\d+)/", proc.stdout)
  assert previous and int(previous.group(1)) == newest - 5, proc.stdout
  assert (workdir / checkpoint.CORRUPT_DIR).is_dir()
  assert_bit_identical(workdir, reference[0], "after falling back")


# ---------------------------------------------------------------------------
# metrics.jsonl vs TensorBoard vs the progress bar.
# ---------------------------------------------------------------------------


def test_metrics_jsonl_tensorboard_and_progress_bar_agree(reference):
  workdir, proc = reference
  records = [
    json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()
  ]
  train = [r for r in records if r["split"] == "train"]
  evals = [r for r in records if r["split"] == "eval"]
  assert [r["step"] for r in train] == list(range(5, STEPS + 1, 5))
  assert [r["step"] for r in evals] == [10, 20, 30]
  for r in records:
    assert isinstance(r["step"], int)
    for name, value in r.items():
      if name not in ("step", "split"):
        assert isinstance(value, float) and np.isfinite(value), (name, value)

  scalars = read_tensorboard_scalars(workdir)
  expected = {
    (f"{r['split']}/{k}", r["step"]): v
    for r in records
    for k, v in r.items()
    if k not in ("step", "split")
  }
  assert set(scalars) == set(expected)
  for key, value in expected.items():
    # TensorBoard stores float32; the JSONL keeps the float64 it was cast from.
    assert scalars[key] == np.float32(value), (key, scalars[key], value)

  # The progress bar shows the train loss to 4 decimals as it goes; every
  # value it printed is one of the logged ones, and it ends on the last.
  shown = re.findall(r"loss=(\d+\.\d{4})", proc.stderr)
  logged = [f"{r['loss']:.4f}" for r in train]
  assert shown, proc.stderr[-2000:]
  assert set(shown) <= set(logged), (shown, logged)
  assert shown[-1] == logged[-1]
  # And the end-of-run report prints the final eval bpc.
  assert f"validation bpc {evals[-1]['bpc']:.4f} at step {STEPS}" in proc.stdout
