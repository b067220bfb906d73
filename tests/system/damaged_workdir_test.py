"""A run survives its readers and damaged or missing workdir files.

Real runs in subprocesses, real Orbax checkpoints on disk, no mocks:

* readers (`lstm_jax.cli.sample`, `reader.open_run`) write nothing: a snapshot of
  every path, size, mtime and hash is unchanged after sampling from a workdir
  with a save in progress (a `*.orbax-checkpoint-tmp*` directory) and a
  damaged newest step, over which they still fall back;
* sampling in a loop while the run trains (a save every 2 steps) does not
  disturb it: the run ends bit-identical to an uninterrupted one, and its
  workdir holds exactly the files an undisturbed run's does;
* one unreadable per-step metrics file falls back like any damaged step, for
  readers and for a resume (which then ends bit-identical);
* a run without `data.json`, or whose `checkpoints/` was deleted, is refused
  with one `error:` line and nothing written.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from lstm_jax import errors
from lstm_jax.runs import reader
from lstm_jax.workdir import checkpoint
from tests.support import tiny_run
from tests.support.runs import assert_bit_identical, finalized_steps, metrics_history

TIMEOUT = 300


def _sample(workdir, env, *args) -> subprocess.CompletedProcess:
  cmd = [
    sys.executable,
    "-m",
    "lstm_jax.sample",
    f"--workdir={workdir}",
    "--length=5",
  ]
  return subprocess.run(
    [*cmd, *args],
    cwd=tiny_run.REPO,
    env=env,
    capture_output=True,
    text=True,
    timeout=TIMEOUT,
  )


def _train(workdir, env, *args) -> subprocess.CompletedProcess:
  return subprocess.run(
    tiny_run.command(f"--workdir={workdir}", *args),
    cwd=tiny_run.REPO,
    env=env,
    capture_output=True,
    text=True,
    timeout=TIMEOUT,
  )


def _one_error_line(proc) -> str:
  assert proc.returncode == 1, proc.stderr[-3000:]
  assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
  errors_ = [x for x in proc.stderr.splitlines() if x.startswith("error: ")]
  assert len(errors_) == 1, proc.stderr[-3000:]
  return proc.stderr[proc.stderr.index("error: ") :]


def _copy_run(reference, tmp_path) -> Path:
  workdir = tmp_path / "run"
  shutil.copytree(reference, workdir)
  return workdir


def _truncate_largest(step_dir: Path) -> None:
  victim = max(
    (p for p in step_dir.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size
  )
  with open(victim, "r+b") as f:
    f.truncate(victim.stat().st_size // 2)


def test_readers_write_nothing_and_still_fall_back(tmp_path, env, tiny_reference):
  workdir = _copy_run(tiny_reference[0], tmp_path)
  ckpt = workdir / checkpoint.CHECKPOINT_DIR
  newest = finalized_steps(workdir)[-1]
  # A save in progress (what a running trainer leaves while it writes) and a
  # damaged newest step.
  tmp = ckpt / f"{newest + 5}.orbax-checkpoint-tmp-1234567"
  (tmp / "state").mkdir(parents=True)
  (tmp / "state" / "partial").write_bytes(b"\0" * 100)
  _truncate_largest(ckpt / str(newest))
  before = tiny_run.tree_snapshot(workdir)

  proc = _sample(workdir, env)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert f"step {newest - 5}," in proc.stderr  # fell back over the damaged step
  run = reader.open_run(str(workdir), "latest")
  assert run.step == newest - 5
  assert tiny_run.tree_snapshot(workdir) == before
  assert not (workdir / checkpoint.CORRUPT_DIR).exists()

  # A workdir without checkpoints/: refused, and checkpoints/ not created.
  shutil.rmtree(ckpt)
  before = tiny_run.tree_snapshot(workdir)
  with pytest.raises(errors.LstmJaxError, match="no checkpoint"):
    reader.open_run(str(workdir))
  assert tiny_run.tree_snapshot(workdir) == before


@pytest.mark.slow  # a training run with samplers beside it: ~10 s
def test_sampling_while_training_does_not_disturb_the_run(
  tmp_path, env, tiny_reference
):
  workdir = tmp_path / "run"
  log = open(tmp_path / "stderr.txt", "w")  # noqa: SIM115
  trainer = subprocess.Popen(
    tiny_run.command(f"--workdir={workdir}", "--config.checkpoint.every_steps=2"),
    cwd=tiny_run.REPO,
    env=env,
    stdout=subprocess.DEVNULL,
    stderr=log,
  )
  reads: list[int] = []
  refused: list[str] = []

  def read_loop():  # readers in this process: no start-up cost per read
    while trainer.poll() is None:
      try:
        reads.append(reader.open_run(str(workdir)).step)
      except errors.LstmJaxError as exc:  # before the first checkpoint
        refused.append(str(exc).splitlines()[0])
        time.sleep(0.05)

  thread = threading.Thread(target=read_loop)
  thread.start()
  assert trainer.wait(timeout=TIMEOUT) == 0, (tmp_path / "stderr.txt").read_text()[
    -3000:
  ]
  thread.join()
  log.close()
  steps_read = sorted(set(reads))
  print(f"{len(reads)} reads of steps {steps_read}; {len(refused)} before a checkpoint")
  assert len(steps_read) >= 2, (reads, refused[-3:])  # they did overlap the run

  assert_bit_identical(workdir, tiny_reference[0], "sampled while training")
  assert metrics_history(workdir) == metrics_history(tiny_reference[0])

  # The same files as an undisturbed run (bar the event file's name and the
  # checkpoint steps, which every_steps decides): nothing moved aside,
  # nothing left behind.
  def names(root):
    return sorted(
      p.name for p in Path(root).iterdir() if not p.name.startswith("events.")
    )

  assert names(workdir) == names(tiny_reference[0])
  assert not list((workdir / checkpoint.CHECKPOINT_DIR).glob("*tmp*"))


def test_a_bad_metrics_file_falls_back_for_readers_and_resume(
  tmp_path, env, tiny_reference
):
  workdir = _copy_run(tiny_reference[0], tmp_path)
  newest = finalized_steps(workdir)[-1]
  bad = workdir / checkpoint.CHECKPOINT_DIR / str(newest) / "metrics" / "metrics"
  assert bad.is_file()
  bad.write_text("not json\n")
  before = tiny_run.tree_snapshot(workdir)

  proc = _sample(workdir, env)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert f"step {newest - 5}," in proc.stderr
  assert tiny_run.tree_snapshot(workdir) == before

  proc = _train(workdir, env)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert f"at step {newest - 5}/" in proc.stdout, proc.stdout
  assert "its metrics file" in proc.stderr
  assert (workdir / checkpoint.CORRUPT_DIR).is_dir()
  assert_bit_identical(workdir, tiny_reference[0], "after a bad metrics file")


def test_missing_data_json_is_refused(tmp_path, env, tiny_reference):
  workdir = _copy_run(tiny_reference[0], tmp_path)
  (workdir / "data.json").unlink()
  before = tiny_run.tree_snapshot(workdir)
  # Another corpus of the same alphabet would otherwise be trained on.
  other = tmp_path / "other.txt"
  other.write_text("The quick brown fox. " * 2000)
  message = _one_error_line(_train(workdir, env, f"--config.data.path={other}"))
  assert "data.json" in message and str(workdir) in message
  assert tiny_run.tree_snapshot(workdir) == before


@pytest.mark.slow  # two CLI runs; missing_data_json covers the refusal path
def test_deleted_checkpoints_dir_is_refused_not_restarted(
  tmp_path, env, tiny_reference
):
  workdir = _copy_run(tiny_reference[0], tmp_path)
  shutil.rmtree(workdir / checkpoint.CHECKPOINT_DIR)
  before = tiny_run.tree_snapshot(workdir)
  message = _one_error_line(_train(workdir, env))
  assert "history" in message and "metrics.jsonl" in message, message
  assert tiny_run.tree_snapshot(workdir) == before  # metrics.jsonl kept whole
  # Starting over on purpose, as the message says: move the history away.
  for path in workdir.iterdir():
    if path.name == "metrics.jsonl" or path.name.startswith("events."):
      os.rename(path, tmp_path / path.name)
  proc = _train(workdir, env)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "Starting" in proc.stdout
  assert_bit_identical(workdir, tiny_reference[0], "started over")
