"""The training loop: `train_and_evaluate(config, workdir)`.

Importable from notebooks and tests; `lstm_jax.main` is only its command line.
The loop knows a task only through `lstm_jax.tasks.base.Task`.

Resume order (the workdir is the run's identity):
  1. `workdir.prepare` refuses a workdir that holds a run with another config
     or other data, before anything is written.
  2. The newest readable checkpoint in the workdir is restored (state, step,
     RNG, optimizer, early-stopping record and, if stateful, the carry); the
     batches are a function of the step, so nothing else is needed.
  3. Otherwise the state is initialized from `config.seed`.

Everything that makes step k what it is lives in `TrainState`, so a run killed
at any point and restarted ends bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import os
import time
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax
from absl import logging
from flax import struct

from lstm_jax import checkpoint, optim, parallel, tasks
from lstm_jax import metrics as metrics_lib
from lstm_jax import workdir as workdir_lib
from lstm_jax.errors import ConfigError
from lstm_jax.tasks.base import Batch, Datasets, Metrics

Array = jax.Array


class TrainState(struct.PyTreeNode):
  """Everything a step depends on; saved whole in every checkpoint.

  Attributes:
    step: <int32>[] steps taken = index of the next batch.
    params: model parameters.
    opt_state: optimizer state (incl. the skipped-update counters).
    rng: <uint32>[2] base key; step k uses `fold_in(rng, k)`.
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
    carry = model.initialize_carry(batch["inputs"].shape[0])
  worst = math.inf if config.checkpoint.best_mode == "min" else -math.inf
  return TrainState(
    step=jnp.zeros((), jnp.int32),
    params=params,
    opt_state=tx.init(params),
    rng=state_rng,
    carry=carry,
    best_metric=jnp.asarray(worst, jnp.float32),
    evals_since_best=jnp.zeros((), jnp.int32),
  )


def make_train_step(
  model: nn.Module,
  loss_and_metrics: Callable[[Array, Batch], tuple[Array, Metrics]],
  tx: optax.GradientTransformation,
) -> Callable[[TrainState, Batch], tuple[TrainState, Metrics]]:
  """`train_step(state, batch) -> (state, metrics)`, to be jitted.

  Metrics are the task's (sum, weight) pairs plus `grad_norm` (before
  clipping). A step whose loss is not finite resets a stateful carry to zeros
  (its update is skipped by the optimizer, see `optim`).
  """

  def train_step(state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
    rng = jax.random.fold_in(state.rng, state.step)

    def loss_fn(params):
      outputs, carry = model.apply(
        {"params": params},
        batch,
        carry=state.carry,
        deterministic=False,
        rngs={"dropout": rng},
      )
      loss, metrics = loss_and_metrics(outputs, batch)
      return loss, (metrics, carry)

    (loss, (metrics, carry)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      state.params
    )
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    if state.carry is None:
      carry = None
    else:
      ok = jnp.isfinite(loss)
      carry = jax.tree.map(lambda a: jnp.where(ok, a, jnp.zeros_like(a)), carry)
    grad_norm = optax.global_norm(grads)
    metrics = {**metrics, "grad_norm": (grad_norm, jnp.ones(()))}
    new_state = state.replace(
      step=state.step + 1, params=params, opt_state=opt_state, carry=carry
    )
    return new_state, metrics

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
  """Metrics over `batches`, passing `carry` along (None: stateless)."""
  pairs = []
  for batch in batches:
    metrics, carry = eval_step(
      params, parallel.put_batch(batch, batch_shardings), carry
    )
    pairs.append(metrics)
  return metrics_lib.summarize(jax.device_get(pairs))


def _validate(config: ml_collections.ConfigDict) -> None:
  train = config.train
  for key in ("steps", "log_every"):
    if train[key] < 1:
      raise ConfigError(f"train.{key} must be >= 1, got {train[key]}")
  for key in ("eval_every", "early_stop_patience", "max_nonfinite_steps"):
    if train[key] < 0:
      raise ConfigError(f"train.{key} must be >= 0, got {train[key]}")
  if not 0.0 < config.data.valid_fraction < 1.0:
    raise ConfigError(
      f"data.valid_fraction must be in (0, 1), got {config.data.valid_fraction}"
    )
  # checkpoint.make_manager runs after workdir.prepare has written
  # config.json; a bad checkpoint value must fail before that.
  checkpoint.check_config(config.checkpoint)
  if train.early_stop_patience and not config.checkpoint.best_metric:
    raise ConfigError("train.early_stop_patience needs checkpoint.best_metric")


def train_and_evaluate(
  config: ml_collections.ConfigDict, workdir: str
) -> dict[str, Any]:
  """Trains `config.task` in `workdir` (resuming it if it holds this run).

  Returns:
    Final results: `step`, `stopped` ("finished", "early_stop" or
    "preempted"), the last `eval/*` and `train/*` metrics, `best_step` and
    `best/<metric>`, plus whatever the task's report adds.
  """
  # ----------------------------------------------------------------------
  # Task, data, model, optimizer.
  # ----------------------------------------------------------------------
  _validate(config)
  task = tasks.get_task(config.task)
  datasets: Datasets = task.make_datasets(config)
  model = task.make_model(config, datasets.info)
  total_steps = config.train.steps
  tx, schedule = optim.make_optimizer(config.optim, total_steps)

  # ----------------------------------------------------------------------
  # Mesh, shapes and shardings (shapes first, nothing allocated yet).
  # ----------------------------------------------------------------------
  mesh = parallel.make_mesh(config.parallel.mesh_shape)
  example = datasets.train_batch(0)
  eval_example = next(iter(datasets.eval_batches()))
  parallel.check_batch_size(mesh, "data.batch_size", len(example["inputs"]))
  parallel.check_batch_size(mesh, "data.eval_batch_size", len(eval_example["inputs"]))
  batch_sh = parallel.batch_sharding(mesh, example)
  eval_batch_sh = parallel.batch_sharding(mesh, eval_example)
  init_fn = functools.partial(create_train_state, model, tx, config, example)
  rng = jax.random.PRNGKey(config.seed)
  abstract = jax.eval_shape(init_fn, rng)
  repl = parallel.replicated(mesh)
  state_sh = jax.tree.map(lambda _: repl, abstract).replace(
    carry=parallel.batch_sharding(mesh, abstract.carry)
  )
  eval_carry = None
  if datasets.eval_stateful:
    eval_carry = model.initialize_carry(len(eval_example["inputs"]))
  eval_carry_sh = parallel.batch_sharding(mesh, eval_carry)

  # ----------------------------------------------------------------------
  # Steps: jit with explicit shardings; the state is donated.
  # ----------------------------------------------------------------------
  train_step = jax.jit(
    make_train_step(model, task.loss_and_metrics, tx),
    in_shardings=(state_sh, batch_sh),
    out_shardings=(state_sh, repl),
    donate_argnums=0,
  )
  eval_fn = make_eval_step(model, task.loss_and_metrics)
  eval_step = jax.jit(
    eval_fn,
    in_shardings=(state_sh.params, eval_batch_sh, eval_carry_sh),
    out_shardings=(repl, eval_carry_sh),
  )
  eval_names = jax.eval_shape(eval_fn, abstract.params, eval_example, eval_carry)[0]
  best_name = config.checkpoint.best_metric
  if best_name and best_name.removeprefix("eval/") not in eval_names:
    raise ConfigError(
      f"checkpoint.best_metric={best_name!r} is not an eval metric of task "
      f"{config.task!r}; choose one of {['eval/' + k for k in eval_names]}"
    )

  def run_eval(params) -> dict[str, float]:
    batches = itertools.islice(datasets.eval_batches(), config.train.eval_batches)
    carry = None if eval_carry is None else jax.device_put(eval_carry, eval_carry_sh)
    return evaluate(eval_step, params, batches, eval_batch_sh, carry)

  # ----------------------------------------------------------------------
  # Workdir: only now, after every config check, is anything written.
  # ----------------------------------------------------------------------
  workdir_lib.prepare(workdir, config, datasets.info)
  if jax.process_index() == 0:
    for name, obj in datasets.assets.items():
      with open(os.path.join(workdir, name), "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False)

  # ----------------------------------------------------------------------
  # Restore the latest checkpoint, or initialize.
  # ----------------------------------------------------------------------
  manager = checkpoint.make_manager(workdir, config)
  target = jax.tree.map(
    lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, state_sh
  )
  restored = checkpoint.restore_latest(manager, target)
  if restored is None:
    state = jax.jit(init_fn, out_shardings=state_sh)(rng)
  else:
    state = restored[0]
  step = start = int(jax.device_get(state.step))
  n_params = sum(x.size for x in jax.tree.leaves(state.params))
  print(
    f"{'Resuming' if restored else 'Starting'} {workdir} at step {start}/"
    f"{total_steps}: task {config.task}, {n_params:,} parameters, "
    f"mesh {dict(mesh.shape)} on {jax.default_backend()}"
  )

  # ----------------------------------------------------------------------
  # Train loop.
  # ----------------------------------------------------------------------
  best, since_best = (
    float(x) for x in jax.device_get((state.best_metric, state.evals_since_best))
  )
  minimize = config.checkpoint.best_mode == "min"
  patience = config.train.early_stop_patience
  log_every, eval_every = config.train.log_every, config.train.eval_every
  window: list[Metrics] = []
  nonfinite_run, stopped = 0, "finished"
  results: dict[str, Any] = {}
  try:
    with (
      checkpoint.PreemptionGuard() as guard,
      metrics_lib.MetricWriter(workdir, total_steps, start) as writer,
    ):
      clock, timed = metrics_lib.Throughput(), 0
      while step < total_steps:
        if patience and since_best >= patience:
          stopped = "early_stop"
          break
        if guard.requested:
          stopped = "preempted"
          break
        batch = parallel.put_batch(datasets.train_batch(step), batch_sh)
        state, step_metrics = train_step(state, batch)
        step += 1
        window.append(step_metrics)
        writer.advance(step)
        if step == start + 1:  # compiled now: time from here on
          jax.block_until_ready(state)
          clock.reset()
        else:
          timed += 1
        if step % log_every == 0 or step == total_steps:
          nonfinite_run, values = metrics_lib.log_train_window(
            writer,
            step,
            window,
            timed,
            nonfinite_run,
            config.train.max_nonfinite_steps,
            float(schedule(step - 1)),  # the rate of the last update
            clock,
          )
          results.update({f"train/{k}": v for k, v in values.items()})
          window, timed = [], 0
        if (eval_every and step % eval_every == 0) or step == total_steps:
          jax.block_until_ready(state)
          eval_start = time.perf_counter()
          values = run_eval(state.params)
          writer.write(step, "eval", values)
          results.update({f"eval/{k}": v for k, v in values.items()})
          if best_name:
            value = values[best_name.removeprefix("eval/")]
            improved = value < best if minimize else value > best
            best, since_best = (value, 0) if improved else (best, since_best + 1)
            state = state.replace(
              best_metric=jax.device_put(jnp.float32(best), repl),
              evals_since_best=jax.device_put(jnp.int32(since_best), repl),
            )
          metrics_for_ckpt = {f"eval/{k}": v for k, v in values.items()}
          checkpoint.save(manager, step, state, metrics_for_ckpt, force=True)
          clock.exclude(time.perf_counter() - eval_start)
        elif step % config.checkpoint.every_steps == 0:
          checkpoint.save(manager, step, state)
      checkpoint.save(manager, step, state, force=True)
      manager.wait_until_finished()
  finally:
    manager.wait_until_finished()
    best_step = checkpoint.best_step(manager)
    manager.close()

  # ----------------------------------------------------------------------
  # Report.
  # ----------------------------------------------------------------------
  results.update(step=step, stopped=stopped, best_step=best_step)
  if best_name and best_step is not None:
    results[f"best/{best_name}"] = best
  if stopped == "preempted":
    logging.warning("Preempted: saved step %d; rerun the same command to resume.", step)
    return results
  if not any(k.startswith("eval/") for k in results):
    results.update({f"eval/{k}": v for k, v in run_eval(state.params).items()})
  if stopped == "early_stop":
    print(
      f"Stopped early at step {step}: no {best_name} improvement in {patience} evals."
    )
  if best_step is not None:
    print(f"Best checkpoint: step {best_step}, {best_name} = {best:.4f}")
  results.update(task.report(config, model, state.params, datasets, results))
  return results
