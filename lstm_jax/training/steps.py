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

from lstm_jax.parallel import mesh as mesh_lib
from lstm_jax.tasks.base import Batch, Metrics
from lstm_jax.training import metrics

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
    nonfinite_run: <int32>[] consecutive steps up to now whose loss was not
      finite (`train.max_nonfinite_steps` counts across restarts).
  """

  step: Array
  params: Any
  opt_state: Any
  rng: Array
  carry: Any
  best_metric: Array
  evals_since_best: Array
  nonfinite_run: Array


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
    carry = model.initialize_carry(mesh_lib.batch_rows(batch))
  worst = math.inf if config.checkpoint.best_mode == "min" else -math.inf
  return TrainState(
    step=jnp.zeros((), jnp.int32),
    params=params,
    opt_state=tx.init(params),
    rng=jax.random.key_data(state_rng),
    carry=carry,
    best_metric=jnp.asarray(worst, jnp.float32),
    evals_since_best=jnp.zeros((), jnp.int32),
    nonfinite_run=jnp.zeros((), jnp.int32),
  )


def _micro(tree: Any, k: int) -> Any:
  """`[B, ...]` -> `[k, B/k, ...]`, micro-batch j = rows j, j+k, j+2k, ...

  Strided, not contiguous: with rows split over "data", every device then
  holds B/(k*data) rows of every micro-batch (a contiguous split would run
  each micro-batch on a few devices only). The stateful carry is split the
  same way, so micro-batch j continues exactly the rows it owns.
  """

  def one(x):
    x = jnp.asarray(x)
    return jnp.swapaxes(x.reshape(x.shape[0] // k, k, *x.shape[1:]), 0, 1)

  return jax.tree.map(one, tree)


def _unmicro(tree: Any) -> Any:
  """The inverse of `_micro`: `[k, B/k, ...]` -> `[B, ...]`."""

  def one(x):
    x = jnp.swapaxes(x, 0, 1)
    return x.reshape(-1, *x.shape[2:])

  return jax.tree.map(one, tree)


def make_train_step(
  model: nn.Module,
  loss_and_metrics: Callable[[Array, Batch], tuple[Array, Metrics]],
  tx: optax.GradientTransformation,
  grad_accum_steps: int = 1,
  axis_name: str | None = None,
  token_metric: str = "loss",
) -> Callable[[TrainState, Batch], tuple[TrainState, Metrics, Array]]:
  """`train_step(state, batch) -> (state, metrics, loss)`, to be jitted.

  Metrics are the task's (sum, weight) pairs plus `grad_norm` (before
  clipping); `loss` is the scalar that was differentiated. A step whose loss
  is not finite resets a stateful carry to zeros (its update is skipped by
  the optimizer, see `optim`).

  Args:
    model, loss_and_metrics, tx: the task's model and loss, the optimizer.
    grad_accum_steps: k > 1 splits the batch into k micro-batches (`_micro`)
      and scans over them, so only one micro-batch's activations are live.
    axis_name: under `jax.pmap`, the device axis: gradients, loss and metrics
      are combined across it (`lax.psum`), so every device applies the same
      update.
    token_metric: the metric whose weight counts a micro-batch's (or a
      device's) tokens.

  The k micro-batches (and the devices of a pmap) are combined as one batch:
  a task's loss is a mean over its tokens, so part j, holding w_j of the W
  tokens, contributes `(w_j / W) * grad_j`. With equal token counts this is
  the plain mean (`lax.pmean`); with padding it is still the gradient of the
  whole batch's loss. Dropout differs from the unsplit batch (micro-batch j
  draws its mask from `fold_in(rng, j)`).
  """

  def grads_of(params, batch, carry, rng):
    def loss_fn(params):
      (outputs, carry_out), penalties = model.apply(
        {"params": params},
        batch,
        carry=carry,
        deterministic=False,
        rngs={"dropout": rng},
        mutable=[PENALTIES],
      )
      loss, step_metrics = loss_and_metrics(outputs, batch)
      # Regularisers that live inside the model (activation penalties, say)
      # sow their scalar terms; they join the loss, not the metrics.
      for term in jax.tree.leaves(penalties):
        loss = loss + term
      return loss, (step_metrics, carry_out)

    (loss, (step_metrics, carry)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      params
    )
    return grads, loss, step_metrics, carry

  def combined(state, batch, rng):
    """Weighted sums over micro-batches (and devices), then / total weight."""

    def part(params, mb, carry, j):
      rng_j = rng if grad_accum_steps == 1 else jax.random.fold_in(rng, j)
      grads, loss, m, carry = grads_of(params, mb, carry, rng_j)
      w = m[token_metric][1].astype(jnp.float32)
      scaled = jax.tree.map(lambda g: w * g, grads)
      return (scaled, w * loss, w, m), carry

    if grad_accum_steps == 1:
      (g, wl, w, m), carry = part(state.params, batch, state.carry, 0)
    else:
      micro, micro_carry = _micro(batch, grad_accum_steps), None
      if state.carry is not None:
        micro_carry = _micro(state.carry, grad_accum_steps)

      def body(acc, xs):
        mb, c, j = xs
        out, c = part(state.params, mb, c, j)
        return jax.tree.map(jnp.add, acc, out), c

      def first(tree):
        return jax.tree.map(lambda x: x[0], tree)

      shapes = jax.eval_shape(part, state.params, first(micro), first(micro_carry), 0)
      zero = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), shapes[0])
      steps = jnp.arange(grad_accum_steps)
      (g, wl, w, m), carry = jax.lax.scan(body, zero, (micro, micro_carry, steps))
      carry = None if carry is None else _unmicro(carry)
    if axis_name is not None:
      g, wl, w, m = jax.lax.psum((g, wl, w, m), axis_name)
    total = jnp.maximum(w, jnp.finfo(jnp.float32).tiny)
    grads = jax.tree.map(lambda a: a / total, g)
    return grads, wl / total, m, carry

  def train_step(state: TrainState, batch: Batch) -> tuple[TrainState, Metrics, Array]:
    rng = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
    if grad_accum_steps == 1 and axis_name is None:
      # One batch on one program: the gradient as it is (the weighting's
      # rounding would change its last bit).
      grads, loss, step_metrics, carry = grads_of(state.params, batch, state.carry, rng)
    else:
      grads, loss, step_metrics, carry = combined(state, batch, rng)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    if state.carry is None:
      carry = None
    else:
      ok = jnp.isfinite(loss)
      carry = jax.tree.map(lambda a: jnp.where(ok, a, jnp.zeros_like(a)), carry)
    grad_norm = optax.tree.norm(grads)
    step_metrics = {**step_metrics, "grad_norm": (grad_norm, jnp.ones(()))}
    nonfinite_run = jnp.where(jnp.isfinite(loss), 0, state.nonfinite_run + 1)
    new_state = state.replace(
      step=state.step + 1,
      params=params,
      opt_state=opt_state,
      carry=carry,
      nonfinite_run=nonfinite_run,
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
  token_metric: str | None = None,
) -> dict[str, float]:
  """Metrics over `batches`, passing `carry` along (None: stateless).

  With `token_metric`, the result also holds `tokens`: that metric's summed
  weight, i.e. how much was scored (characters, for the char-LM). A stateless
  evaluation starts every batch from the model's zero state: the final carry a
  model returns is dropped, not fed into the next batch, whose rows are other
  sequences (fed on, the adding task's second test batch would start from the
  first one's LSTM state).
  """
  stateful = carry is not None
  pairs = []
  for batch in batches:
    batch_metrics, out_carry = eval_step(
      params, mesh_lib.put_batch(batch, batch_shardings), carry
    )
    if stateful:
      carry = out_carry
    pairs.append(batch_metrics)
  pairs = jax.device_get(pairs)
  values = metrics.summarize(pairs)
  if token_metric:
    values["tokens"] = float(sum(float(p[token_metric][1]) for p in pairs))
  return values
