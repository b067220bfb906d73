"""The training loop: `train_and_evaluate(config, workdir)`.

Importable from notebooks and tests; `lstm_jax.cli.main` is only its command line.
The loop knows a task only through `lstm_jax.tasks.base.Task`.

Resume order (the workdir is the run's identity):
  1. `rundir.prepare` refuses a workdir that holds a run with another config
     or other data, before anything is written.
  2. The newest readable checkpoint in the workdir is restored (state, step,
     RNG, optimizer, early-stopping record and, if stateful, the carry); the
     batches are a function of the step, so nothing else is needed.
  3. Otherwise the state is initialized from `config.seed`.

Everything that makes step k what it is lives in `steps.TrainState`, so a run
killed at any point and restarted ends bit-identical to an uninterrupted one.
The step functions themselves are in `lstm_jax.training.steps`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import json
import os
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from absl import logging

from lstm_jax.errors import ConfigError
from lstm_jax.nn import dtypes
from lstm_jax.parallel import distributed, pmap_step
from lstm_jax.parallel import mesh as mesh_lib
from lstm_jax.training import build, diagnostics, metrics, optim
from lstm_jax.training.steps import (
  TrainState,
  evaluate,
  make_eval_step,
  make_train_step,
)
from lstm_jax.workdir import checkpoint, lock, preemption, rundir


@dataclasses.dataclass
class _Best:
  """The best eval value of `checkpoint.best_metric` so far, and the evals
  since it improved (early stopping); mirrored into the `TrainState`."""

  value: float
  since: int
  minimize: bool

  def update(self, value: float) -> None:
    improved = value < self.value if self.minimize else value > self.value
    self.value, self.since = (value, 0) if improved else (self.value, self.since + 1)

  def into(self, state: TrainState, sharding: Any) -> TrainState:
    return state.replace(
      best_metric=jax.device_put(jnp.float32(self.value), sharding),
      evals_since_best=jax.device_put(jnp.int32(self.since), sharding),
    )


def train_and_evaluate(
  config: ml_collections.ConfigDict,
  workdir: str,
  on_eval: Callable[[int, dict[str, float]], bool] | None = None,
) -> dict[str, Any]:
  """Trains `config.task` in `workdir` (resuming it if it holds this run).

  SIGTERM and SIGINT are handled from the first line on (`preemption`): the
  run saves and returns `stopped="preempted"`. The workdir is locked
  (`lock.WorkdirLock`) from before its first write to the end.

  `on_eval(step, eval_values)`, if given, is called after each evaluation
  (and its checkpoint); returning True stops the run as "pruned" (the early
  stopping of a sweep's bad trials, `lstm_jax.sweep.runner`).

  Returns:
    Final results: `step`, `stopped` ("finished", "early_stop",
    "pruned" or "preempted"), the last `eval/*` and `train/*` metrics, `best_step` and
    `best/<metric>`, the `test/*` metrics of the final evaluation (if the task
    has a test split), plus whatever the task's report adds.

  Raises:
    errors.LstmJaxError: a bad config or data, a workdir that holds another
      run or is in use by another trainer; nothing was written.
  """
  with preemption.PreemptionGuard() as guard, contextlib.ExitStack() as stack:
    try:
      return _train_and_evaluate(config, workdir, guard, stack, on_eval)
    except preemption.Preempted as stop:
      logging.warning("Preempted (%s): nothing new to save; exiting.", stop)
      return {"step": None, "stopped": "preempted", "best_step": None}


def _train_and_evaluate(
  config: ml_collections.ConfigDict,
  workdir: str,
  guard: preemption.PreemptionGuard,
  stack: contextlib.ExitStack,
  on_eval: Callable[[int, dict[str, float]], bool] | None = None,
) -> dict[str, Any]:
  # ----------------------------------------------------------------------
  # Task, data, model, optimizer: every check before anything is written.
  # ----------------------------------------------------------------------
  distributed.initialize(config.parallel)  # before anything touches a device
  built = build.build(config)
  task, datasets, model = built.task, built.datasets, built.model
  # A task's own evaluations (final_evaluation, report) jit the model outside
  # the mesh: their LSTMs take the single-device path.
  task_model = build.with_model_axis(model, 1)
  total_steps = config.train.steps
  tx, schedule = built.tx, built.schedule

  # ----------------------------------------------------------------------
  # Mesh, shapes and shardings (shapes first, nothing allocated yet).
  # ----------------------------------------------------------------------
  mesh = mesh_lib.make_mesh(config.parallel.mesh_shape)
  example = built.example
  eval_example = next(iter(datasets.eval_batches()))
  mesh_lib.check_batch_size(mesh, "the train batch", mesh_lib.batch_rows(example))
  mesh_lib.check_batch_size(mesh, "the eval batch", mesh_lib.batch_rows(eval_example))
  mesh_lib.check_config(config, mesh, mesh_lib.batch_rows(example))
  batch_sh = mesh_lib.batch_sharding(mesh, example)
  eval_batch_sh = mesh_lib.batch_sharding(mesh, eval_example)
  init_fn = built.init_state
  rng = jax.random.key(config.seed)
  # Traced under the mesh: the LSTM's tensor-parallel constraints name its axes.
  with mesh_lib.mesh_context(mesh):
    abstract = built.abstract_state()
  repl = mesh_lib.replicated(mesh)
  state_sh = mesh_lib.state_shardings(mesh, abstract, config.parallel.shard_opt_state)
  eval_carry = None
  if datasets.eval_stateful:
    eval_carry = model.initialize_carry(mesh_lib.batch_rows(eval_example))
  eval_carry_sh = mesh_lib.batch_sharding(mesh, eval_carry)

  # ----------------------------------------------------------------------
  # Steps: jit with explicit shardings (the state is donated), or pmap.
  # ----------------------------------------------------------------------
  step_fn = functools.partial(
    make_train_step,
    model,
    task.loss_and_metrics,
    tx,
    grad_accum_steps=config.train.grad_accum_steps,
    token_metric=task.token_metric,
  )
  if config.parallel.strategy == "pmap":
    step_fn = step_fn(axis_name=pmap_step.AXIS)
    train_step = pmap_step.make(step_fn, state_sh, list(mesh.devices.flat))
  else:
    train_step = mesh_lib.jit(
      step_fn(),
      mesh,
      in_shardings=(state_sh, batch_sh),
      out_shardings=(state_sh, repl, repl),
      donate_argnums=0,
    )
  eval_fn = make_eval_step(model, task.loss_and_metrics)
  eval_step = mesh_lib.jit(
    eval_fn,
    mesh,
    in_shardings=(state_sh.params, eval_batch_sh, eval_carry_sh),
    out_shardings=(repl, eval_carry_sh),
  )
  with mesh_lib.mesh_context(mesh):
    eval_names = jax.eval_shape(eval_fn, abstract.params, eval_example, eval_carry)[0]
  best_name = config.checkpoint.best_metric
  if best_name and best_name.removeprefix("eval/") not in eval_names:
    raise ConfigError(
      f"checkpoint.best_metric={best_name!r} is not an eval metric of task "
      f"{config.task!r}; choose one of {['eval/' + k for k in eval_names]}"
    )

  def run_eval(params, batches) -> dict[str, float]:
    carry = None if eval_carry is None else jax.device_put(eval_carry, eval_carry_sh)
    return evaluate(eval_step, params, batches, eval_batch_sh, carry, task.token_metric)

  def validation(params) -> dict[str, float]:
    batches = datasets.eval_batches()
    return run_eval(params, itertools.islice(batches, config.train.eval_batches))

  # ----------------------------------------------------------------------
  # Workdir: only now, after every config check, is anything written, and
  # only under the workdir's lock (one trainer per workdir).
  # ----------------------------------------------------------------------
  guard.raise_if_requested()
  rundir.check(workdir, config, datasets.info, task.resumable_keys)
  stack.enter_context(lock.WorkdirLock(workdir))
  rundir.prepare(workdir, config, datasets.info, task.resumable_keys)
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
    state = mesh_lib.jit(init_fn, mesh, out_shardings=state_sh)(rng)
  else:
    state = restored[0]
  guard.raise_if_requested()
  step = start = int(jax.device_get(state.step))
  n_params = sum(x.size for x in jax.tree.leaves(state.params))
  print(
    f"{'Resuming' if restored else 'Starting'} {workdir} at step {start}/"
    f"{total_steps}: task {config.task}, {n_params:,} parameters, "
    f"mesh {dict(mesh.shape)} on {jax.default_backend()}{dtypes.auto_note(config.get('model'))}"
  )

  # ----------------------------------------------------------------------
  # Train loop: step, log, evaluate (tracking the best), save.
  # ----------------------------------------------------------------------
  best_value, since = jax.device_get((state.best_metric, state.evals_since_best))
  best = _Best(float(best_value), int(since), config.checkpoint.best_mode == "min")
  patience = config.train.early_stop_patience
  log_every, eval_every = config.train.log_every, config.train.eval_every
  stopped, results = "finished", {}
  headline = (best_name or "").removeprefix("eval/")
  try:
    with metrics.MetricWriter(
      workdir, total_steps, start, headline, best.minimize
    ) as writer:
      log = metrics.TrainLog(
        writer,
        config.train.max_nonfinite_steps,
        task.token_metric,
        start=start,
        nonfinite_run=int(jax.device_get(state.nonfinite_run)),
      )
      guard.progress = lambda: log.completed
      diag = diagnostics.Monitor(config, task, datasets.info, workdir, writer)
      while step < total_steps:
        if patience and best.since >= patience:
          stopped = "early_stop"
          break
        if distributed.any_process(guard.requested):  # all hosts stop together
          stopped = "preempted"
          break
        batch = mesh_lib.put_batch(datasets.train_batch(step), batch_sh)
        state, step_metrics, loss = train_step(state, batch)
        step += 1
        log.add(state, step_metrics, loss)  # waits for step - 1 (bounded dispatch)
        diag.observe(step_metrics)
        diag.maybe_run(step, state.params, batch)
        writer.advance(log.completed)
        if step % log_every == 0 or step == total_steps:
          values = log.flush(step, float(schedule(step - 1)))  # last update's rate
          results.update({f"train/{k}": v for k, v in values.items()})
        if (eval_every and step % eval_every == 0) or step == total_steps:
          jax.block_until_ready(state)
          eval_start = time.perf_counter()
          values = validation(optim.eval_params(state.opt_state, state.params))
          writer.write(step, "eval", values)
          results.update({f"eval/{k}": v for k, v in values.items()})
          if best_name:
            best.update(values[best_name.removeprefix("eval/")])
            state = best.into(state, repl)
          evals = {f"eval/{k}": v for k, v in values.items()}
          writer.sync()  # metrics durable up to every checkpoint
          checkpoint.save(manager, step, state, evals, force=True)
          log.exclude(time.perf_counter() - eval_start)
          if on_eval is not None and on_eval(step, values):
            stopped = "pruned"
            break
        elif step % config.checkpoint.every_steps == 0:
          writer.sync()
          checkpoint.save(manager, step, state)
      writer.advance(log.drain())
      writer.sync()
      checkpoint.save(manager, step, state, force=True)
      manager.wait_until_finished()
      best_step = checkpoint.best_step(manager)

      # --------------------------------------------------------------------
      # Final test evaluation, once, on the best checkpoint.
      # --------------------------------------------------------------------
      has_test = task.final_evaluation or datasets.test_batches
      if stopped != "preempted" and has_test:
        final = state
        if best_step is not None and best_step != step:
          final = checkpoint.restore_step(manager, best_step, target)
        params = optim.eval_params(final.opt_state, final.params)
        if task.final_evaluation:
          values = task.final_evaluation(config, task_model, params, datasets, workdir)
        else:
          values = run_eval(params, datasets.test_batches())
        values = {**values, "checkpoint_step": float(best_step or step)}
        writer.write(step, "test", values)
        results.update({f"test/{k}": v for k, v in values.items()})
  finally:
    manager.wait_until_finished()
    best_step = checkpoint.best_step(manager)
    manager.close()

  # ----------------------------------------------------------------------
  # Report.
  # ----------------------------------------------------------------------
  results.update(step=step, stopped=stopped, best_step=best_step)
  if best_name and best_step is not None:
    results[f"best/{best_name}"] = best.value
  if stopped == "preempted":
    print(
      f"Preempted by {guard.signal_name} after step {guard.completed_at_signal}: "
      f"saved step {step}; rerun the same command to resume."
    )
    return results
  if not any(k.startswith("eval/") for k in results):
    params = optim.eval_params(state.opt_state, state.params)
    results.update({f"eval/{k}": v for k, v in validation(params).items()})
  if stopped == "early_stop":
    print(
      f"Stopped early at step {step}: no {best_name} improvement in {patience} evals."
    )
  if best_step is not None:
    scored = results.get("eval/tokens")
    scored = f" (eval scored {scored:,.0f} tokens)" if scored else ""
    print(f"Best checkpoint: step {best_step}, {best_name} = {best.value:.4f}{scored}")
  params = optim.eval_params(state.opt_state, state.params)
  results.update(task.report(config, task_model, params, datasets, results))
  return results
