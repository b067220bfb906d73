"""Checkpoints on real disk (no mocks): round trip, retention, corruption."""

from __future__ import annotations

import logging
import os
import shutil
import signal

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from lstm_jax.workdir import checkpoint, fingerprint, preemption


def _config(every=10, keep=2, best_metric="eval/bpc", best_mode="min"):
  config = ml_collections.ConfigDict()
  config.checkpoint = ml_collections.ConfigDict(
    dict(every_steps=every, keep=keep, best_metric=best_metric, best_mode=best_mode)
  )
  return config


def _state(step: int) -> dict:
  """A train-state-like pytree whose every leaf depends on `step`."""
  rng = np.random.default_rng(step)
  return {
    "params": {
      "w": jnp.asarray(rng.normal(size=(64, 256)), jnp.float32),
      "b": jnp.asarray(rng.normal(size=(256,)), jnp.float32),
    },
    "opt": {"mu": jnp.full((64,), step * 0.5, jnp.float32)},
    "step": jnp.asarray(step, jnp.int32),
    "rng": jax.random.key_data(jax.random.fold_in(jax.random.key(0), step)),
    "data_pos": jnp.asarray(step * 7, jnp.int32),
  }


def _assert_equal(a, b):
  leaves_a, tree_a = jax.tree.flatten(a)
  leaves_b, tree_b = jax.tree.flatten(b)
  assert tree_a == tree_b
  for x, y in zip(leaves_a, leaves_b, strict=True):
    assert np.asarray(x).dtype == np.asarray(y).dtype
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _save_steps(manager, steps, metrics=None):
  for s in steps:
    checkpoint.save(manager, s, _state(s), metrics=(metrics or {}).get(s))
  manager.wait_until_finished()


def _save_steps_of(manager, states: dict):
  for s, state in states.items():
    checkpoint.save(manager, s, state)
  manager.wait_until_finished()


def _largest_file(directory: str) -> str:
  files = [os.path.join(r, f) for r, _, fs in os.walk(directory) for f in fs]
  return max(files, key=os.path.getsize)


def _flip_middle_byte(path: str) -> None:
  """Inverts one byte in the middle of `path`: same size, different content."""
  with open(path, "rb") as f:
    data = bytearray(f.read())
  data[len(data) // 2] ^= 0xFF
  with open(path, "wb") as f:
    f.write(bytes(data))


def test_round_trip_and_empty(tmp_path):
  manager = checkpoint.make_manager(str(tmp_path), _config())
  assert checkpoint.restore_latest(manager, _state(0)) is None
  _save_steps(manager, [10, 20])
  state, step = checkpoint.restore_latest(manager, _state(0))
  assert step == 20
  _assert_equal(state, _state(20))
  # A fresh manager (a restarted process) sees the same.
  manager = checkpoint.make_manager(str(tmp_path), _config())
  state, step = checkpoint.restore_latest(manager, jax.eval_shape(lambda: _state(0)))
  assert step == 20
  _assert_equal(state, _state(20))


def test_interval_force_and_idempotent_save(tmp_path):
  manager = checkpoint.make_manager(str(tmp_path), _config(every=10, keep=10))
  checkpoint.save(manager, 5, _state(5))  # not on the interval: skipped
  checkpoint.save(manager, 10, _state(10))
  checkpoint.save(manager, 13, _state(13), force=True)  # preemption / final
  checkpoint.save(manager, 13, _state(99), force=True)  # already there: no-op
  manager.wait_until_finished()
  assert list(manager.all_steps()) == [10, 13]
  state, step = checkpoint.restore_latest(manager, _state(0))
  assert step == 13
  _assert_equal(state, _state(13))


@pytest.mark.parametrize("mode", ["min", "max"])
def test_keeps_last_n_plus_best(tmp_path, mode):
  manager = checkpoint.make_manager(
    str(tmp_path), _config(every=10, keep=2, best_mode=mode)
  )
  bpc = {10: 3.0, 20: 1.0, 30: 2.0, 40: 2.5, 50: 2.9, 60: 2.8}
  metrics = {s: {"eval/bpc": v, "train/loss": 9.0} for s, v in bpc.items()}
  metrics[70] = {"train/loss": 0.1}  # no eval metric: never "best"
  _save_steps(manager, sorted(metrics), metrics)
  best = 20 if mode == "min" else 10
  assert checkpoint.best_step(manager) == best
  assert sorted(manager.all_steps()) == sorted({best, 60, 70})
  # A restarted process agrees.
  manager = checkpoint.make_manager(str(tmp_path), _config(best_mode=mode))
  assert checkpoint.best_step(manager) == best


def test_best_step_none_without_metric(tmp_path):
  manager = checkpoint.make_manager(str(tmp_path), _config(best_metric=""))
  _save_steps(manager, [10, 20, 30])
  assert checkpoint.best_step(manager) is None
  assert list(manager.all_steps()) == [20, 30]
  manager = checkpoint.make_manager(str(tmp_path / "b"), _config())
  _save_steps(manager, [10])  # best metric configured but never reported
  assert checkpoint.best_step(manager) is None


def test_truncated_latest_falls_back_with_warning(tmp_path, caplog):
  manager = checkpoint.make_manager(str(tmp_path), _config(keep=3))
  _save_steps(manager, [10, 20, 30])
  newest = os.path.join(manager.directory, "30")
  victim = _largest_file(newest)
  size = os.path.getsize(victim)
  with open(victim, "r+b") as f:
    f.truncate(size // 2)

  manager = checkpoint.make_manager(str(tmp_path), _config(keep=3))
  with caplog.at_level(logging.WARNING):
    state, step = checkpoint.restore_latest(manager, _state(0))
  assert step == 20
  _assert_equal(state, _state(20))
  warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
  assert any("step 30" in w and "could not be restored" in w for w in warnings), (
    warnings
  )
  # The damaged step is kept for inspection but out of the way, so the run can
  # save step 30 again when it gets there.
  assert sorted(manager.all_steps()) == [10, 20]
  moved = os.listdir(tmp_path / checkpoint.CORRUPT_DIR)
  assert len(moved) == 1 and moved[0].startswith("30-")
  _save_steps(manager, [30])
  state, step = checkpoint.restore_latest(manager, _state(0))
  assert step == 30
  _assert_equal(state, _state(30))


def test_restore_step_returns_that_step_and_names_a_damaged_one(tmp_path):
  manager = checkpoint.make_manager(str(tmp_path), _config(keep=3))
  _save_steps(manager, [10, 20, 30])
  _assert_equal(checkpoint.restore_step(manager, 20, _state(0)), _state(20))
  _assert_equal(checkpoint.restore_step(manager, 10, None), _state(10))
  with pytest.raises(checkpoint.CheckpointError, match="no checkpoint at step 15"):
    checkpoint.restore_step(manager, 15, None)
  victim = _largest_file(os.path.join(manager.directory, "20"))
  with open(victim, "r+b") as f:
    f.truncate(os.path.getsize(victim) // 2)
  with pytest.raises(checkpoint.CheckpointError, match="step 20"):
    checkpoint.restore_step(manager, 20, _state(0))
  # Unlike restore_latest, an explicit step is never moved aside.
  assert sorted(manager.all_steps()) == [10, 20, 30]


def test_flipped_byte_is_detected_by_checksum(tmp_path, caplog):
  """Orbax restores a flipped byte silently; the stored checksums catch it."""
  manager = checkpoint.make_manager(str(tmp_path), _config(keep=3))
  _save_steps(manager, [10, 20])
  victim = _largest_file(os.path.join(manager.directory, "20", checkpoint.STATE_ITEM))
  _flip_middle_byte(victim)
  manager = checkpoint.make_manager(str(tmp_path), _config(keep=3))
  with caplog.at_level(logging.WARNING):
    state, step = checkpoint.restore_latest(manager, _state(0))
  assert step == 10
  _assert_equal(state, _state(10))
  assert any("checksum mismatch" in r.getMessage() for r in caplog.records)


def test_checksums_also_verified_without_a_target(tmp_path):
  """Restoring with no abstract state (dicts, not the saved classes) still checks."""

  @flax.struct.dataclass
  class State:
    params: dict
    opt: tuple

  def state(step):
    s = _state(step)
    return State(params=s["params"], opt=(s["opt"], {"count": s["step"]}))

  manager = checkpoint.make_manager(str(tmp_path), _config(keep=3))
  _save_steps_of(manager, {10: state(10), 20: state(20)})
  fp = fingerprint.fingerprint(state(20))
  assert "params/w" in fp and "opt/1/count" in fp
  restored, step = checkpoint.restore_latest(manager, None)
  assert step == 20 and fingerprint.fingerprint(restored) == fp

  victim = _largest_file(os.path.join(manager.directory, "20", checkpoint.STATE_ITEM))
  _flip_middle_byte(victim)
  manager = checkpoint.make_manager(str(tmp_path), _config(keep=3))
  restored, step = checkpoint.restore_latest(manager, None)
  assert step == 10
  assert fingerprint.fingerprint(restored) == fingerprint.fingerprint(state(10))


def test_half_written_save_is_invisible(tmp_path):
  """A process killed mid-save leaves a tmp directory; it is never restored."""
  manager = checkpoint.make_manager(str(tmp_path), _config(keep=3))
  _save_steps(manager, [10, 20])
  # What Orbax leaves when killed before its final rename: a tmp step dir.
  tmp = os.path.join(manager.directory, "30.orbax-checkpoint-tmp")
  shutil.copytree(os.path.join(manager.directory, "20"), tmp)
  victim = _largest_file(tmp)
  with open(victim, "r+b") as f:
    f.truncate(os.path.getsize(victim) // 3)
  manager = checkpoint.make_manager(str(tmp_path), _config(keep=3))
  assert sorted(manager.all_steps()) == [10, 20]
  state, step = checkpoint.restore_latest(manager, _state(0))
  assert step == 20
  _assert_equal(state, _state(20))


def test_nothing_restorable_raises_and_deletes_nothing(tmp_path):
  manager = checkpoint.make_manager(str(tmp_path), _config(keep=3))
  _save_steps(manager, [10, 20])
  for step in ("10", "20"):
    victim = _largest_file(os.path.join(manager.directory, step))
    with open(victim, "r+b") as f:
      f.truncate(os.path.getsize(victim) // 2)
  manager = checkpoint.make_manager(str(tmp_path), _config(keep=3))
  with pytest.raises(checkpoint.CheckpointError, match=r"step 20.*\n.*step 10"):
    checkpoint.restore_latest(manager, _state(0))
  assert sorted(os.listdir(manager.directory)) == ["10", "20"]
  assert not (tmp_path / checkpoint.CORRUPT_DIR).exists()


def test_wrong_structure_raises_without_quarantine(tmp_path):
  """A changed model is not 'corruption': nothing may be moved away."""
  manager = checkpoint.make_manager(str(tmp_path), _config(keep=3))
  _save_steps(manager, [10, 20])
  other = _state(0)
  other["params"]["w"] = jnp.zeros((32, 256), jnp.float32)
  with pytest.raises(checkpoint.CheckpointError):
    checkpoint.restore_latest(manager, other)
  assert sorted(manager.all_steps()) == [10, 20]


def test_preemption_guard_sets_flag_and_restores_handler():
  def previous(signum, frame):
    raise AssertionError("the guard's handler should be active")

  old = signal.signal(signal.SIGTERM, previous)
  try:
    with preemption.PreemptionGuard() as guard:
      assert not guard.requested
      os.kill(os.getpid(), signal.SIGTERM)
      assert guard.requested
    assert signal.getsignal(signal.SIGTERM) is previous
  finally:
    signal.signal(signal.SIGTERM, old)


def test_bad_checkpoint_config():
  from lstm_jax import errors

  with pytest.raises(errors.ConfigError, match="best_mode"):
    checkpoint.make_manager("/tmp/unused", _config(best_mode="lowest"))
  with pytest.raises(errors.ConfigError, match="keep"):
    checkpoint.make_manager("/tmp/unused", _config(keep=0))


def test_preemption_guard_off_the_main_thread_is_inert():
  import threading

  before = signal.getsignal(signal.SIGTERM)
  result = {}

  def body():
    with preemption.PreemptionGuard() as guard:
      result["requested"] = guard.requested

  thread = threading.Thread(target=body)
  thread.start()
  thread.join()
  assert result == {"requested": False}
  assert signal.getsignal(signal.SIGTERM) is before
