"""End to end, in subprocesses: a run killed and restarted ends bit-identical.

Acceptance checks of the training system (issue #3):

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
import struct
import subprocess
import time
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
import tiny_run

from lstm_jax.workdir import checkpoint

STEPS = tiny_run.STEPS
TIMEOUT = 240  # seconds per subprocess; a hung run fails instead of stalling CI
TIMING_METRICS = {"steps_per_sec", "tokens_per_sec"}


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


def _finalized_steps(workdir) -> list[int]:
  """Step directories Orbax has finished (tmp directories are not steps)."""
  ckpt = Path(workdir) / checkpoint.CHECKPOINT_DIR
  if not ckpt.is_dir():
    return []
  return sorted(int(p.name) for p in ckpt.iterdir() if p.name.isdigit())


def _wait_for_checkpoints(proc, workdir, count: int, err: Path) -> float:
  """Polls until this process has written `count` new checkpoints; returns the
  seconds between the last two it saw (from the call, for the first)."""
  before = max(_finalized_steps(workdir), default=-1)
  seen: set[int] = set()
  deadline = time.monotonic() + TIMEOUT
  times = [time.monotonic()]
  while len(seen) < count:
    new = {s for s in _finalized_steps(workdir) if s > before} - seen
    if new:
      seen |= new
      times.append(time.monotonic())
    if proc.poll() is not None:
      pytest.fail(
        f"run exited ({proc.returncode}) before {count} checkpoints:\n"
        f"{err.read_text()[-3000:]}"
      )
    if time.monotonic() > deadline:
      proc.kill()
      pytest.fail(f"no {count} checkpoints within {TIMEOUT}s")
    time.sleep(0.01)
  return times[-1] - times[-2] if len(times) > 1 else 0.0


def final_state(workdir) -> tuple[int, dict]:
  """The newest checkpoint's state as saved, read without the trainer's code."""
  manager = ocp.CheckpointManager(
    Path(workdir) / checkpoint.CHECKPOINT_DIR,
    item_names=(checkpoint.STATE_ITEM, checkpoint.FINGERPRINT_ITEM),
  )
  step = manager.latest_step()
  restored = manager.restore(
    step, args=ocp.args.Composite(**{checkpoint.STATE_ITEM: ocp.args.StandardRestore()})
  )
  manager.close()
  return step, jax.device_get(restored[checkpoint.STATE_ITEM])


def assert_bit_identical(workdir, reference, context: str = "") -> None:
  step, state = final_state(workdir)
  ref_step, ref_state = final_state(reference)
  assert step == ref_step == STEPS, f"{context}: final steps {step}, {ref_step}"
  leaves = jax.tree_util.tree_flatten_with_path(state)[0]
  ref_leaves = jax.tree_util.tree_flatten_with_path(ref_state)[0]
  assert [p for p, _ in leaves] == [p for p, _ in ref_leaves], (
    f"{context}: state structure differs"
  )
  assert any("params" in jax.tree_util.keystr(p) for p, _ in leaves)
  differ = [
    jax.tree_util.keystr(p)
    for (p, a), (_, b) in zip(leaves, ref_leaves, strict=True)
    if not (a.dtype == b.dtype and np.array_equal(a, b))
  ]
  assert not differ, f"{context}: leaves differ from the uninterrupted run: {differ}"


def metrics_history(workdir) -> list[dict]:
  lines = (Path(workdir) / "metrics.jsonl").read_text().splitlines()
  records = [json.loads(line) for line in lines]
  return [{k: v for k, v in r.items() if k not in TIMING_METRICS} for r in records]


@pytest.fixture(scope="module")
def reference(tiny_reference):
  """One uninterrupted run: the session's (conftest.py), the same command."""
  return tiny_reference


# Checkpoints of the tiny run, the last one included. A kill after k of them,
# k <= LAST_KILL, leaves at least two checkpoint intervals of steps to run;
# the kill lands a seeded fraction (< 1) of the measured last interval later,
# so it always falls before the run's end, however fast the machine is.
CHECKPOINTS = STEPS // tiny_run.CHECKPOINT_EVERY
LAST_KILL = CHECKPOINTS - 2


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
      interval = _wait_for_checkpoints(proc, workdir, count, err)
    else:
      while "Starting" not in out.read_text() and proc.poll() is None:
        time.sleep(0.01)
      interval = 0.5
    time.sleep(delay * interval)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=TIMEOUT) == -signal.SIGKILL
    steps = _finalized_steps(workdir)
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
  _wait_for_checkpoints(proc, workdir, 1, err)
  proc.send_signal(signal.SIGTERM)
  # 75 (EX_TEMPFAIL): preempted after saving, distinct from a finished run.
  assert proc.wait(timeout=TIMEOUT) == 75, err.read_text()[-3000:]
  stdout = out.read_text()
  match = re.search(r"Preempted by SIGTERM after step \d+: saved step (\d+)", stdout)
  assert match, stdout[-3000:] + err.read_text()[-3000:]
  stopped = int(match.group(1))
  assert 0 < stopped < STEPS, f"SIGTERM came too late to test anything ({stopped})"
  assert _finalized_steps(workdir)[-1] == stopped
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


def test_truncated_latest_checkpoint_falls_back_and_says_so(tmp_path, env, reference):
  workdir = tmp_path / "run"
  shutil.copytree(reference[0], workdir)
  newest = _finalized_steps(workdir)[-1]
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
# metrics.jsonl vs TensorBoard vs the progress bar (acceptance 5).
# ---------------------------------------------------------------------------


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
  value = shift = 0
  while True:
    byte = buf[pos]
    pos += 1
    value |= (byte & 0x7F) << shift
    shift += 7
    if not byte & 0x80:
      return value, pos


def _fields(buf: bytes):
  """(field number, value) of a protobuf message; enough for tf.Event."""
  pos = 0
  while pos < len(buf):
    key, pos = _varint(buf, pos)
    number, wire = key >> 3, key & 7
    if wire == 0:
      value, pos = _varint(buf, pos)
    elif wire == 1:
      value, pos = buf[pos : pos + 8], pos + 8
    elif wire == 2:
      size, pos = _varint(buf, pos)
      value, pos = buf[pos : pos + size], pos + size
    elif wire == 5:
      value, pos = buf[pos : pos + 4], pos + 4
    else:
      raise ValueError(f"unsupported wire type {wire}")
    yield number, value


def read_tensorboard_scalars(workdir) -> dict[tuple[str, int], float]:
  """{(tag, step): value} from the TFRecord event files (simple_value only).

  A TFRecord is `<u64 length><u32 crc><data><u32 crc>`; the data is a tf.Event
  (step = field 2, summary = field 5) whose Summary holds Values (tag = 1,
  simple_value = 2, a float32). Written out here so the test needs neither
  TensorFlow nor TensorBoard.
  """
  scalars = {}
  files = sorted(Path(workdir).glob("events.out.tfevents.*"))
  assert files, "no TensorBoard event file"
  for path in files:
    data = path.read_bytes()
    pos = 0
    while pos + 12 <= len(data):
      (length,) = struct.unpack("<Q", data[pos : pos + 8])
      event = data[pos + 12 : pos + 12 + length]
      pos += 12 + length + 4
      fields = list(_fields(event))
      step = next((v for n, v in fields if n == 2), 0)
      for number, summary in fields:
        if number != 5:
          continue
        for _, value in _fields(summary):
          parts = dict(_fields(value))
          if 2 in parts:
            tag = parts[1].decode()
            scalars[(tag, step)] = struct.unpack("<f", parts[2])[0]
  return scalars


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
