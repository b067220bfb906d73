"""The jitted pieces of training: the state, the train step and the eval step.

Pure functions of their inputs, built from a task's model and loss:
`train.train_and_evaluate` compiles them with shardings and runs the loop.
Randomness comes from the state's key folded with the step number, so step k
computes the same thing whenever (and after however many restarts) it runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import struct

from lstm_jax import metrics, parallel
from lstm_jax.tasks.base import Batch, Metrics

Array = jax.Array
# The Flax collection in which models sow scalar loss terms (`self.sow(
# PENALTIES, name, value)`); the train step adds them to the task's loss.
PENALTIES = "penalties"


class TrainState(struct.PyTreeNode):
  """Everything a step depends on; saved whole in every checkpoint.

  Attributes:
    step: <int32>[] steps taken = index of the next batch.
    params: model parameters.
    opt_state: optimizer state (incl. the skipped-update counters).
    rng: <uint32>[2] the data of the base key (`jax.random.key_data`: plain
      arrays checkpoint everywhere); step k uses `fold_in(key, k)`.
    carry: the model's carry after the last window (stateful training), or
      None.
    best_metric: <float32>[] best `checkpoint.best_metric` seen at an eval.
    evals_since_best: <int32>[] evals since it last improved (early stopping).
  """

  step: Array
  params: Any
  opt_state: Any
  rng: Array
  carry: Any
  best_metric: Array
  evals_since_best: Array


def create_train_state(
  model: nn.Module,
  tx: optax.GradientTransformation,
  config: ml_collections.ConfigDict,
  batch: Batch,
  rng: Array,
) -> TrainState:
  """A fresh state; `batch` only gives shapes (pass an example batch)."""
  init_rng, state_rng = jax.random.split(rng)
  params = model.init(init_rng, batch)["params"]
  carry = None
  if config.train.stateful:
    carry = model.initialize_carry(parallel.batch_rows(batch))
  worst = math.inf if config.checkpoint.best_mode == "min" else -math.inf
  return TrainState(
    step=jnp.zeros((), jnp.int32),
    params=params,
    opt_state=tx.init(params),
    rng=jax.random.key_data(state_rng),
    carry=carry,
    best_metric=jnp.asarray(worst, jnp.float32),
    evals_since_best=jnp.zeros((), jnp.int32),
  )


def make_train_step(
  model: nn.Module,
  loss_and_metrics: Callable[[Array, Batch], tuple[Array, Metrics]],
  tx: optax.GradientTransformation,
) -> Callable[[TrainState, Batch], tuple[TrainState, Metrics, Array]]:
  """`train_step(state, batch) -> (state, metrics, loss)`, to be jitted.

  Metrics are the task's (sum, weight) pairs plus `grad_norm` (before
  clipping); `loss` is the scalar that was differentiated. A step whose loss
  is not finite resets a stateful carry to zeros (its update is skipped by
  the optimizer, see `optim`).
  """

  def train_step(state: TrainState, batch: Batch) -> tuple[TrainState, Metrics, Array]:
    rng = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)

    def loss_fn(params):
      (outputs, carry), penalties = model.apply(
        {"params": params},
        batch,
        carry=state.carry,
        deterministic=False,
        rngs={"dropout": rng},
        mutable=[PENALTIES],
      )
      loss, step_metrics = loss_and_metrics(outputs, batch)
      # Regularisers that live inside the model (activation penalties, say)
      # sow their scalar terms; they join the loss, not the metrics.
      for term in jax.tree.leaves(penalties):
        loss = loss + term
      return loss, (step_metrics, carry)

    (loss, (step_metrics, carry)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      state.params
    )
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    if state.carry is None:
      carry = None
    else:
      ok = jnp.isfinite(loss)
      carry = jax.tree.map(lambda a: jnp.where(ok, a, jnp.zeros_like(a)), carry)
    grad_norm = optax.tree.norm(grads)
    step_metrics = {**step_metrics, "grad_norm": (grad_norm, jnp.ones(()))}
    new_state = state.replace(
      step=state.step + 1, params=params, opt_state=opt_state, carry=carry
    )
    return new_state, step_metrics, loss

  return train_step


def make_eval_step(
  model: nn.Module,
  loss_and_metrics: Callable[[Array, Batch], tuple[Array, Metrics]],
) -> Callable[[Any, Batch, Any], tuple[Metrics, Any]]:
  """`eval_step(params, batch, carry) -> (metrics, carry)`, to be jitted."""

  def eval_step(params: Any, batch: Batch, carry: Any) -> tuple[Metrics, Any]:
    outputs, carry = model.apply({"params": params}, batch, carry=carry)
    return loss_and_metrics(outputs, batch)[1], carry

  return eval_step


def evaluate(
  eval_step: Callable[[Any, Batch, Any], tuple[Metrics, Any]],
  params: Any,
  batches: Any,
  batch_shardings: Any,
  carry: Any = None,
) -> dict[str, float]:
  """Metrics over `batches`, passing `carry` along (None: stateless).

  A stateless evaluation starts every batch from the model's zero state: the
  final carry a model returns is dropped, not fed into the next batch (it
  was, and a second test batch of the adding task started from the first
  one's LSTM state: test MSE 0.19301 instead of 0.19273).
  """
  stateful = carry is not None
  pairs = []
  for batch in batches:
    batch_metrics, out_carry = eval_step(
      params, parallel.put_batch(batch, batch_shardings), carry
    )
    if stateful:
      carry = out_carry
    pairs.append(batch_metrics)
  return metrics.summarize(jax.device_get(pairs))
