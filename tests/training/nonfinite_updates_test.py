"""Non-finite values never reach the parameters: a bad learning rate is
refused before training, an overflowing update from finite gradients is
skipped, and the count of consecutive non-finite steps lives in the train
state, so it survives restarts and stops a diverged run."""

from __future__ import annotations

import math

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
  # float32 update vs float64 numpy: one float32 rounding of w - lr * g
  np.testing.assert_allclose(optax.apply_updates(params, updates)["w"], want, rtol=1e-6)
  assert int(state.notfinite_count) == 0 and int(state.total_notfinite) == 1


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
