"""Hardening, in-process (issue 13): config values refused before training,
strict JSON metrics, an optimizer that never applies a non-finite update,
TensorBoard durable at every sync and completed on resume, and a non-finite
step count that survives restarts."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from experiments import base
from lstm_jax import errors
from lstm_jax.training import metrics, optim, steps
from tests.support.runs import read_tensorboard_scalars


def _optim_config(**overrides) -> ml_collections.ConfigDict:
  cfg = base.get_config().optim
  cfg.update(overrides)
  return cfg


@pytest.mark.parametrize("lr", [math.nan, math.inf, -1e-3])
def test_bad_learning_rate_is_refused_naming_the_key(lr):
  with pytest.raises(errors.ConfigError, match=r"optim\.learning_rate"):
    optim.make_optimizer(_optim_config(learning_rate=lr), 100)
  optim.make_optimizer(_optim_config(learning_rate=0.0), 1000)  # 0 = frozen: allowed


def test_an_overflowing_update_from_finite_gradients_is_skipped():
  # SGD at lr 1e30 on a gradient of 1e30: both finite, the update (-1e60)
  # overflows float32 to -inf.
  cfg = _optim_config(
    name="sgd",
    momentum=0.0,
    schedule="constant",
    warmup_steps=0,
    learning_rate=1e30,
    clip_norm=0.0,
    weight_decay=0.0,
  )
  tx, _ = optim.make_optimizer(cfg, 10)
  params = {"w": jnp.ones((3,), jnp.float32)}
  grads = {"w": jnp.full((3,), 1e30, jnp.float32)}
  state = tx.init(params)
  updates, state = tx.update(grads, state, params)
  np.testing.assert_array_equal(optax.apply_updates(params, updates)["w"], np.ones(3))
  assert int(state.notfinite_count) == 1 and int(state.total_notfinite) == 1
  # optax.apply_if_finite looks at the gradients only and applies it.
  plain = optax.apply_if_finite(optax.sgd(1e30), 2**31 - 1)
  bad, _ = plain.update(grads, plain.init(params), params)
  assert not np.isfinite(np.asarray(bad["w"])).any()
  # A finite update afterwards is applied: w - lr * g, computed in numpy.
  small = {"w": jnp.asarray([1e-30, -2e-30, 0.0], jnp.float32)}
  updates, state = tx.update(small, state, params)
  want = np.ones(3, np.float32) - np.float32(1e30) * np.asarray(small["w"])
  np.testing.assert_allclose(optax.apply_updates(params, updates)["w"], want, rtol=1e-6)
  assert int(state.notfinite_count) == 0 and int(state.total_notfinite) == 1


def _strict(line: str):
  def refuse(token):
    raise ValueError(f"non-standard JSON token {token}")

  return json.loads(line, parse_constant=refuse)


def test_metrics_jsonl_is_strict_json(tmp_path):
  with metrics.MetricWriter(str(tmp_path), 10) as writer:
    writer.write(1, "train", {"loss": math.nan, "grad_norm": math.inf, "x": 2.5})
  (line,) = (tmp_path / "metrics.jsonl").read_text().splitlines()
  assert _strict(line) == {
    "step": 1,
    "split": "train",
    "loss": None,
    "grad_norm": None,
    "x": 2.5,
  }
  scalars = read_tensorboard_scalars(tmp_path)  # TensorBoard keeps the floats
  assert math.isnan(scalars[("train/loss", 1)]) and scalars[("train/x", 1)] == 2.5


def test_tensorboard_survives_sigkill_after_sync(tmp_path, env):
  script = textwrap.dedent(f"""
    import os, signal
    from lstm_jax.training import metrics
    writer = metrics.MetricWriter({str(tmp_path)!r}, 10)
    writer.write(3, "eval", {{"bpc": 1.25}})
    writer.sync()  # what the trainer does before every checkpoint save
    os.kill(os.getpid(), signal.SIGKILL)
  """)
  proc = subprocess.run([sys.executable, "-c", script], env=env, timeout=120)
  assert proc.returncode == -9
  assert read_tensorboard_scalars(tmp_path)[("eval/bpc", 3)] == 1.25


def test_resume_rewrites_what_tensorboard_lost(tmp_path):
  import tensorboardX

  records = [
    {"step": 5, "split": "train", "loss": 2.0},
    {"step": 10, "split": "train", "loss": 1.5},
    {"step": 10, "split": "eval", "bpc": 3.0},
    {"step": 12, "split": "train", "loss": 1.4},  # after the checkpoint at 10
  ]
  (tmp_path / "metrics.jsonl").write_text(
    "".join(json.dumps(r) + "\n" for r in records)
  )
  # The killed run's events: its train records, but the eval at 10 was lost.
  old = tensorboardX.SummaryWriter(str(tmp_path), purge_step=1)
  for r in (records[0], records[1], records[3]):
    old.add_scalar("train/loss", r["loss"], r["step"])
  old.close()

  metrics.MetricWriter(str(tmp_path), 20, initial_step=10).close()
  scalars = read_tensorboard_scalars(tmp_path)
  assert scalars[("eval/bpc", 10)] == 3.0
  assert {s for (t, s) in scalars if t == "train/loss"} >= {5, 10}
  kept = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert kept == records[:3]


class _Linear(nn.Module):
  @nn.compact
  def __call__(self, batch, carry=None, deterministic=True):
    del deterministic
    return nn.Dense(1)(batch["x"])[:, 0], carry


def _loss(outputs, batch):
  err = jnp.sum((outputs - batch["y"]) ** 2)
  n = jnp.asarray(outputs.shape[0], jnp.float32)
  return err / n, {"loss": (err, n)}


def test_nonfinite_run_is_in_the_state_and_counts_across_restarts():
  config = ml_collections.ConfigDict(
    {"train": {"stateful": False}, "checkpoint": {"best_mode": "min"}}
  )
  # Skipping keeps the parameters finite, so a good batch is finite again.
  model, tx = _Linear(), optim.skip_nonfinite_updates(optax.sgd(0.1))
  good = {"x": np.ones((4, 2), np.float32), "y": np.zeros(4, np.float32)}
  bad = {**good, "x": np.full((4, 2), np.nan, np.float32)}
  state = steps.create_train_state(model, tx, config, good, jax.random.key(0))
  train_step = jax.jit(steps.make_train_step(model, _loss, tx))
  runs = []
  for batch in (bad, bad, good, bad):
    state, _, _ = train_step(state, batch)
    runs.append(int(state.nonfinite_run))
  assert runs == [1, 2, 0, 1]

  # A run restored with 19 non-finite steps behind it stops at the 20th.
  writer = metrics.MetricWriter.__new__(metrics.MetricWriter)
  writer.enabled = False
  log = metrics.TrainLog(writer, 20, "loss", start=7, nonfinite_run=19)
  state, step_metrics, loss = train_step(state, bad)
  log.add(state, step_metrics, loss)
  with pytest.raises(errors.DivergenceError, match="20 consecutive"):
    log.flush(8, 0.1)
