"""Readers of a finished or running workdir, shared by the end-to-end tests:
its checkpoints (read with Orbax directly, not the trainer's code), its
metrics history and its TensorBoard event files (parsed here, so no test needs
TensorFlow or TensorBoard); and `wait_all`, the bounded wait for a group of
trainer processes."""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from lstm_jax.workdir import checkpoint
from tests.support import tiny_run

STEPS = tiny_run.STEPS
TIMEOUT = 240  # seconds per subprocess; a hung run fails instead of stalling CI
TIMING_METRICS = {"steps_per_sec", "tokens_per_sec"}


def finalized_steps(workdir) -> list[int]:
  """Step directories Orbax has finished (tmp directories are not steps)."""
  ckpt = Path(workdir) / checkpoint.CHECKPOINT_DIR
  if not ckpt.is_dir():
    return []
  return sorted(int(p.name) for p in ckpt.iterdir() if p.name.isdigit())


def wait_for_checkpoints(proc, workdir, count: int, err: Path) -> float:
  """Polls until this process has written `count` new checkpoints; returns the
  seconds between the last two it saw (from the call, for the first)."""
  before = max(finalized_steps(workdir), default=-1)
  seen: set[int] = set()
  deadline = time.monotonic() + TIMEOUT
  times = [time.monotonic()]
  while len(seen) < count:
    new = {s for s in finalized_steps(workdir) if s > before} - seen
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


def final_curve_and_params(workdir):
  from lstm_jax.training import metrics

  records = metrics.read_jsonl(str(workdir / "metrics.jsonl"))
  drop = ("tokens_per_sec", "steps_per_sec", "seconds")
  curve = [
    {k: v for k, v in r.items() if not any(d in k for d in drop)} for r in records
  ]
  import orbax.checkpoint as ocp

  steps_dir = workdir / "checkpoints"
  last = max(int(p.name) for p in steps_dir.iterdir() if p.name.isdigit())
  path = steps_dir / str(last) / "state"
  one = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  with ocp.StandardCheckpointer() as ckptr:  # saved on 8 devices, read on 1
    meta = ckptr.metadata(path).item_metadata
    target = jax.tree.map(
      lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=one), meta
    )
    state = ckptr.restore(path, target)
  return curve, last, jax.tree.map(np.asarray, state["params"])


def wait_all(procs, timeout: float, returncode: int = 0) -> list[tuple]:
  """Waits for every process (killing any still alive after `timeout` s, so
  no test leaves one behind), asserts each ended with `returncode` and
  returns their `(stdout, stderr)`."""
  try:
    outs = [p.communicate(timeout=timeout) for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
  for p, (_, err) in zip(procs, outs):
    assert p.returncode == returncode, err[-3000:]
  return outs
