"""Population mode: K trials of one model shape trained by one compiled step.

The K members of a population share every config key except those in
`VARIED` (learning rate, weight decay, dropout rate, seed). Their states are
stacked on a leading axis and `jax.vmap` runs `steps.make_train_step` over
them inside one `jit`, so one device trains K trials at once. What varies is
an input of the step, not a constant baked into it:

* learning rate and weight decay live in the optimizer state
  (`optax.inject_hyperparams` over the same chain as `optim.make_optimizer`,
  with the schedule `learning_rate * unit_schedule(n)`);
* the dropout rate is an input: `nn.intercept_methods` replaces every
  `nn.Dropout` call of the model by the same computation with a traced keep
  probability (the model is built with the largest rate, so its Dropout
  modules exist; a member with rate 0 keeps every unit);
* the seed gives each member its own initial parameters, dropout stream and
  (where the task's data depend on it) batches.

Each member is written like an ordinary trial: `<workdir>/<trial name>/` gets
`config.json`, `data.json`, `metrics.jsonl` (train and eval records),
TensorBoard events, checkpoints (at each eval and at the end) and
`trial.json`, so `sweep_table` ranks them with the rest. A member whose loss
is non-finite for `train.max_nonfinite_steps` consecutive steps is stopped
(its state frozen, status "diverged") while the others train on.

A killed population resumes from its members' latest checkpoints when they
are all at one step (they save together, at each eval); if a save was cut
short part-way, it says so instead of guessing. Not done here: early stopping
of members, the stateful (truncated BPTT) carry.
"""

from __future__ import annotations

import copy
import itertools
import os
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from lstm_jax.errors import ConfigError
from lstm_jax.sweep import table as sweep_table
from lstm_jax.sweep.spec import Trial
from lstm_jax.training import build as builder
from lstm_jax.training import metrics, optim, steps
from lstm_jax.workdir import checkpoint, rundir

# The keys population members may differ in; any other difference (a shape,
# the data, the schedule) needs separate trials.
VARIED = ("optim.learning_rate", "optim.weight_decay", "model.lstm.dropout", "seed")


def check_members(trials: Sequence[Trial]) -> None:
  """Raises ConfigError naming the first key the members may not differ in."""
  flat = [rundir.flatten(rundir.config_to_dict(t.config)) for t in trials]
  for key in sorted(set().union(*flat)):
    values = [f.get(key, "<absent>") for f in flat]
    if key in VARIED or all(v == values[0] for v in values):
      continue
    i = next(i for i, v in enumerate(values) if v != values[0])
    raise ConfigError(
      f"population members differ in {key!r} ({trials[0].name}: {values[0]!r}, "
      f"{trials[i].name}: {values[i]!r}); a population shares one model shape "
      f"and may vary only {list(VARIED)}. Sweep {key!r} with population=0 "
      "(one trial at a time) or in separate populations."
    )
  if trials[0].config.train.stateful:
    raise ConfigError("population mode does not support train.stateful=True")


def unit_schedule(cfg: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
  """`optim.make_schedule` for a learning rate of 1 (scaled per member)."""
  cfg = copy.deepcopy(cfg)
  with cfg.unlocked():
    cfg.learning_rate = 1.0
  return optim.make_schedule(cfg, total_steps)


def make_optimizer(
  cfg: ml_collections.ConfigDict, total_steps: int
) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """`optim.make_optimizer`'s chain with learning rate and weight decay as
  state (`inject_hyperparams`): `tx.init` stores the values it was built
  with, and `tx.update` reads them from the state, so a vmapped update uses
  each member's own. Returns (tx builder(lr, wd), the unit schedule)."""
  optim.make_optimizer(cfg, total_steps)  # the same checks, the same errors
  unit = unit_schedule(cfg, total_steps)

  def chain(learning_rate, weight_decay):
    schedule = lambda n: learning_rate * unit(n)  # noqa: E731
    if cfg.name == "adamw":
      opt = optax.adamw(
        schedule,
        cfg.b1,
        cfg.b2,
        cfg.eps,
        weight_decay=weight_decay,
        mask=optim.decay_mask,
      )
    elif cfg.name == "adam":
      opt = optax.adam(schedule, cfg.b1, cfg.b2, cfg.eps)
    else:
      opt = optax.sgd(schedule, cfg.momentum or None, nesterov=cfg.nesterov)
    parts = [optax.clip_by_global_norm(cfg.clip_norm)] if cfg.clip_norm > 0 else []
    if cfg.name != "adamw":  # L2 on the gradient; 0 adds exactly nothing
      parts.append(optax.add_decayed_weights(weight_decay, mask=optim.decay_mask))
    return optax.chain(*parts, opt)

  def build(learning_rate, weight_decay):
    tx = optax.inject_hyperparams(chain)(learning_rate, weight_decay)
    if cfg.skip_nonfinite:
      tx = optax.apply_if_finite(tx, max_consecutive_errors=2**31 - 1)
    return tx

  return build, unit


def dropout_interceptor(keep_prob: jax.Array):
  """Runs `nn.Dropout` with a traced keep probability (as flax computes it)."""

  def interceptor(next_fun, args, kwargs, context):
    module = context.module
    if not isinstance(module, nn.Dropout) or context.method_name != "__call__":
      return next_fun(*args, **kwargs)
    inputs = args[0]
    deterministic = kwargs.get("deterministic", args[1] if len(args) > 1 else None)
    if nn.merge_param("deterministic", module.deterministic, deterministic):
      return inputs
    rng = kwargs.get("rng") or module.make_rng(module.rng_collection)
    shape = list(inputs.shape)
    for dim in module.broadcast_dims:
      shape[dim] = 1
    mask = jnp.broadcast_to(
      jax.random.bernoulli(rng, p=keep_prob, shape=shape), inputs.shape
    )
    return jax.lax.select(mask, inputs / keep_prob, jnp.zeros_like(inputs))

  return interceptor


def keep_probs(trials: Sequence[Trial]) -> np.ndarray:
  # 1 - rate in float64, then float32: what flax's Python-float arithmetic gives.
  return np.asarray([1.0 - t.config.model.lstm.dropout for t in trials], np.float32)


def build(trials: Sequence[Trial]) -> dict[str, Any]:
  """The shared pieces of a population: task, datasets, model, step functions.

  Returns a dict with `task`, `datasets` (one per member), `model`, `init`
  (member_index -> state), `train_step` (stacked state, stacked batch, keep
  probabilities, active mask -> (state, metrics, loss)), `eval_step` and the
  unit schedule.
  """
  check_members(trials)
  config = trials[0].config
  members = [builder.build(t.config) for t in trials]
  task, datasets = members[0].task, [m.datasets for m in members]
  # One model for all: the highest dropout rate, scaled per member below.
  model_config = copy.deepcopy(config)
  with model_config.unlocked():
    model_config.model.lstm.dropout = max(t.config.model.lstm.dropout for t in trials)
  # The members run vmapped on one device: the single-device path.
  model = builder.build(model_config, info=members[0].info, model_axis=1).model
  tx_of, unit = make_optimizer(config.optim, config.train.steps)
  tx = tx_of(0.0, 0.0)  # its update reads each member's values from the state
  base_step = steps.make_train_step(model, task.loss_and_metrics, tx)

  def member_step(state, batch, keep_prob, active):
    with nn.intercept_methods(dropout_interceptor(keep_prob)):
      new_state, step_metrics, loss = base_step(state, batch)
    # A stopped (diverged) member keeps its state; the others move on.
    new_state = jax.tree.map(lambda n, o: jnp.where(active, n, o), new_state, state)
    return new_state, step_metrics, loss

  def init(k: int):
    t = trials[k]
    tx_k = tx_of(t.config.optim.learning_rate, t.config.optim.weight_decay)
    return steps.create_train_state(
      model, tx_k, t.config, members[k].example, jax.random.key(t.config.seed)
    )

  eval_fn = steps.make_eval_step(model, task.loss_and_metrics)
  return {
    "task": task,
    "datasets": datasets,
    "model": model,
    "init": init,
    "train_step": jax.jit(jax.vmap(member_step), donate_argnums=0),
    "eval_step": jax.jit(jax.vmap(eval_fn)),
    "unit": unit,
  }


def stack(trees: Sequence[Any]) -> Any:
  return jax.tree.map(lambda *xs: jnp.stack([jnp.asarray(x) for x in xs]), *trees)


def member(tree: Any, k: int) -> Any:
  return jax.tree.map(lambda a: a[k], tree)


def evaluate(
  pop: dict[str, Any], params: Any, trials: Sequence[Trial]
) -> list[dict[str, float]]:
  """Each member's eval metrics over its validation batches (vmapped)."""
  limit = trials[0].config.train.eval_batches
  iters = [iter(d.eval_batches()) for d in pop["datasets"]]
  carry = None
  if pop["datasets"][0].eval_stateful:
    first = next(iter(pop["datasets"][0].eval_batches()))
    rows = first[next(iter(first))].shape[0]
    carry = stack([pop["model"].initialize_carry(rows)] * len(trials))
  pairs = []
  for batches in itertools.islice(zip(*iters), limit):
    batch_metrics, carry = pop["eval_step"](params, stack(batches), carry)
    pairs.append(batch_metrics)
  host = jax.device_get(pairs)
  return [metrics.summarize(member(p, k) for p in host) for k in range(len(trials))]


def _finish(trial_dir: str, trial: Trial, status: str) -> None:
  metric = trial.config.checkpoint.best_metric or "eval/loss"
  history = sweep_table.eval_history(trial_dir, metric)
  best, best_step = sweep_table.best_of(history, trial.config.checkpoint.best_mode)
  sweep_table.write_trial(
    trial_dir,
    {
      "name": trial.name,
      "overrides": trial.overrides,
      "status": status,
      "best": best,
      "best_step": best_step,
      "results": {"population": True},
    },
  )


def _restore(pop, managers, trials) -> tuple[Any, int]:
  """The stacked state of the members' latest checkpoints (all at one step),
  or a fresh one at step 0 when none has a checkpoint."""
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  target = jax.tree.map(
    lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=device),
    jax.eval_shape(lambda: pop["init"](0)),
  )
  found = [checkpoint.restore_latest(m, target) for m in managers]
  if all(f is None for f in found):
    return stack([pop["init"](k) for k in range(len(trials))]), 0
  found_steps = {
    t.name: (None if f is None else int(f[1])) for t, f in zip(trials, found)
  }
  if len(set(found_steps.values())) != 1:
    raise checkpoint.CheckpointError(
      f"population members' latest checkpoints are at different steps "
      f"{found_steps}; resume needs one step for all. Move the member "
      "directories aside to train the population again from step 0."
    )
  return stack([f[0] for f in found]), found[0][1]


def run(trials: Sequence[Trial], workdir: str) -> list[str]:
  """Trains the population `trials` with one vmapped step; writes each
  member's trial directory under `workdir`. Returns the members' statuses."""
  dirs = [os.path.join(workdir, t.name) for t in trials]
  if all(sweep_table.read_trial(d) is not None for d in dirs):
    print(f"[population] {[t.name for t in trials]}: already ended, skipped")
    return [sweep_table.read_trial(d)["status"] for d in dirs]
  pop = build(trials)
  config, task, k_count = trials[0].config, pop["task"], len(trials)
  total, log_every, eval_every = (
    config.train.steps,
    config.train.log_every,
    config.train.eval_every,
  )
  for t, d, data in zip(trials, dirs, pop["datasets"]):
    rundir.prepare(d, t.config, data.info, task.resumable_keys)
  managers = [checkpoint.make_manager(d, t.config) for d, t in zip(dirs, trials)]
  state, start = _restore(pop, managers, trials)
  keep = jnp.asarray(keep_probs(trials))
  active = np.ones(k_count, bool)
  nonfinite = np.zeros(k_count, int)
  writers = [metrics.MetricWriter(d, total, start) for d in dirs]
  status = ["finished"] * k_count
  lrs = np.asarray([t.config.optim.learning_rate for t in trials])
  window = []
  print(
    f"[population] {k_count} members in one vmapped step: {[t.name for t in trials]}"
  )
  try:
    for step in range(start + 1, total + 1):
      batch = stack([d.train_batch(step - 1) for d in pop["datasets"]])
      state, step_metrics, loss = pop["train_step"](
        state, batch, keep, jnp.asarray(active)
      )
      window.append((step_metrics, loss))
      if step % log_every == 0 or step == total:
        host = jax.device_get(window)
        for k in np.flatnonzero(active):
          ok = [bool(np.isfinite(loss_[k])) for _, loss_ in host]
          for good in ok:
            nonfinite[k] = 0 if good else nonfinite[k] + 1
          values = metrics.summarize(
            member(m, k) for (m, _), good in zip(host, ok) if good
          )
          values["learning_rate"] = float(lrs[k] * pop["unit"](step - 1))
          values["skipped_steps"] = float(len(ok) - sum(ok))
          writers[k].write(step, "train", values)
          limit = config.train.max_nonfinite_steps
          if limit and nonfinite[k] >= limit:
            active[k], status[k] = False, "diverged"
            print(
              f"[population] {trials[k].name}: non-finite loss for {nonfinite[k]} steps; stopped"
            )
        window = []
      if (eval_every and step % eval_every == 0) or step == total:
        evals = evaluate(pop, state.params, trials)
        for k in np.flatnonzero(active):
          writers[k].write(step, "eval", evals[k])
          ckpt = {f"eval/{n}": v for n, v in evals[k].items()}
          checkpoint.save(managers[k], step, member(state, k), ckpt, force=True)
        for w in writers:
          w.advance(step)
      if not active.any():
        break
  finally:
    for w, m in zip(writers, managers):
      w.close()
      m.wait_until_finished()
      m.close()
  for k in range(k_count):
    _finish(dirs[k], trials[k], status[k])
  return status
