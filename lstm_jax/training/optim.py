"""The optax chain from `config.optim`.

  skip_nonfinite( [schedule_free]( clip_by_global_norm -> adamw | adam | sgd
                                    | adagrad with a schedule ) )

* Clipping scales the whole gradient so its global L2 norm is at most
  `clip_norm` (0 = off).
* Weight decay (see `decay_mask`) applies to weight matrices and embeddings,
  not to biases, layer-norm scales/biases or peephole weights: those set
  offsets and gains whose scale is meaningful, and decaying them toward zero
  only fights the data (as in nanoGPT/minGPT, which also decay embeddings).
  "adamw" decays decoupled (Loshchilov & Hutter); "adam", "sgd" and
  "adagrad" add `weight_decay * w` to the gradient (L2, `torch.optim`
  semantics).
* "adagrad" (Duchi et al. 2011; the BIG LSTM's optimizer, lr 0.2): per
  entry, `acc += g**2; w -= lr * g / sqrt(acc + eps)`, with `acc` starting at
  `initial_accumulator` (0.1, TensorFlow's default). Its state is one
  accumulator per parameter (Adam keeps two).
* Schedules all begin with a linear warmup over `warmup_steps` (update n uses
  `(n + 1) / warmup_steps` of the rate, so the first one already moves):
  "constant" stays at `learning_rate`; "warmup_cosine" decays to
  `learning_rate * final_lr_fraction` at `decay_steps` (default: the run's
  steps); "step" multiplies by `step_factor` every `step_every` steps after
  warmup.
* `skip_nonfinite` wraps everything in `skip_nonfinite_updates`: a step whose
  gradient *or* computed update holds a NaN or Inf (an update can overflow
  from finite gradients, e.g. Adam's `m / (sqrt(v) + eps)` in low precision)
  applies zeros and leaves the inner state (moments, step count) untouched,
  so parameters do not move that step and the schedule counts applied updates
  only. (`optax.apply_if_finite` checks only the gradients.) Its state, in the
  checkpoint, is `optax.ApplyIfFiniteState` (consecutive and total skips), so
  a resumed run skips identically. It never applies a non-finite update; the
  trainer stops the run instead after `train.max_nonfinite_steps`
  consecutive non-finite losses.
* `schedule_free` wraps the chain in `optax.contrib.schedule_free` (Defazio
  et al., 2024) with the inner optimizer's momentum off (its b1 becomes the
  wrapper's interpolation): the parameters trained on are an interpolation
  of a fast iterate and a running average of them, and the parameters that
  are evaluated, ranked and tested (`eval_params`) are that average, the
  Adam counterpart of AWD-LSTM's averaged SGD. Use it with the "constant"
  schedule (a warmup, then no decay: the average does the annealing).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

from lstm_jax.errors import ConfigError

OPTIMIZERS = ("adamw", "adam", "sgd", "adagrad")
SCHEDULES = ("constant", "warmup_cosine", "step")
# Leaves of these names are never decayed, whatever their rank.
_NO_DECAY_NAMES = ("peephole",)


def decay_mask(params: Any) -> Any:
  """True for leaves that get weight decay: rank >= 2 and not a peephole.

  Biases, layer-norm scales and biases are rank 1; the embedding table, the
  LSTM's w_ih/w_hh/w_proj and Dense kernels are rank 2.
  """

  def decays(path, leaf) -> bool:
    name = getattr(path[-1], "key", None) if path else None
    return leaf.ndim >= 2 and name not in _NO_DECAY_NAMES

  return jax.tree_util.tree_map_with_path(decays, params)


def make_schedule(cfg: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
  """The learning rate as a function of the applied-update count n (0-based).

  `lr(n) = learning_rate * min(1, (n + 1) / warmup_steps) * decay(n - warmup)`:
  the first update already moves (at `learning_rate / warmup_steps`), and the
  decay starts when the warmup ends.
  """
  lr, warmup = float(cfg.learning_rate), int(cfg.warmup_steps)
  if not (math.isfinite(lr) and lr >= 0):
    raise ConfigError(
      f"optim.learning_rate must be a finite number >= 0, got {cfg.learning_rate}"
    )
  if cfg.schedule not in SCHEDULES:
    raise ConfigError(
      f"optim.schedule must be one of {SCHEDULES}, got {cfg.schedule!r}"
    )
  if warmup < 0:
    raise ConfigError(f"optim.warmup_steps must be >= 0, got {warmup}")
  if cfg.schedule == "warmup_cosine":
    decay_steps = int(cfg.decay_steps or total_steps)
    if decay_steps <= warmup:
      raise ConfigError(
        f"optim.decay_steps ({decay_steps}, default train.steps) must exceed "
        f"optim.warmup_steps ({warmup})"
      )
    decay = optax.cosine_decay_schedule(lr, decay_steps - warmup, cfg.final_lr_fraction)
  elif cfg.schedule == "constant":
    decay = optax.constant_schedule(lr)
  else:
    if cfg.step_every < 1:
      raise ConfigError(f"optim.step_every must be >= 1, got {cfg.step_every}")
    decay = optax.exponential_decay(lr, cfg.step_every, cfg.step_factor, staircase=True)

  def schedule(count):
    count = jnp.asarray(count, jnp.float32)
    ramp = jnp.minimum(1.0, (count + 1.0) / warmup) if warmup else 1.0
    return ramp * decay(jnp.maximum(count - warmup, 0.0))

  return schedule


def make_optimizer(
  cfg: ml_collections.ConfigDict, total_steps: int
) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """Builds the optimizer of `config.optim` for a run of `total_steps` steps.

  Returns:
    (the gradient transformation, the learning-rate schedule).

  Raises:
    ConfigError: an unknown optimizer or schedule, or inconsistent values.
  """
  schedule = make_schedule(cfg, total_steps)
  wd = float(cfg.weight_decay)
  # Schedule-free: the wrapper interpolates with b1, the inner step has none.
  b1 = 0.0 if cfg.schedule_free else cfg.b1
  momentum = None if cfg.schedule_free else cfg.momentum or None
  if cfg.name == "adamw":
    opt = optax.adamw(schedule, b1, cfg.b2, cfg.eps, weight_decay=wd, mask=decay_mask)
  elif cfg.name == "adam":
    opt = optax.adam(schedule, b1, cfg.b2, cfg.eps)
  elif cfg.name == "sgd":
    opt = optax.sgd(schedule, momentum, nesterov=cfg.nesterov and bool(momentum))
  elif cfg.name == "adagrad":
    if not cfg.initial_accumulator >= 0:  # also catches NaN
      raise ConfigError(
        f"optim.initial_accumulator must be >= 0, got {cfg.initial_accumulator}"
      )
    opt = optax.adagrad(schedule, cfg.initial_accumulator, cfg.eps)
  else:
    raise ConfigError(f"optim.name must be one of {OPTIMIZERS}, got {cfg.name!r}")
  parts = []
  if cfg.clip_norm < 0:
    raise ConfigError(f"optim.clip_norm must be >= 0, got {cfg.clip_norm}")
  if cfg.clip_norm > 0:
    parts.append(optax.clip_by_global_norm(cfg.clip_norm))
  if wd and cfg.name != "adamw":
    parts.append(optax.add_decayed_weights(wd, mask=decay_mask))
  tx = optax.chain(*parts, opt)
  if cfg.schedule_free:
    tx = optax.contrib.schedule_free(tx, schedule, b1=cfg.b1)
  if cfg.skip_nonfinite:
    tx = skip_nonfinite_updates(tx)
  return tx, schedule


def _is_schedule_free(node: Any) -> bool:
  """A schedule-free state, live (a NamedTuple) or as restored without a
  target (a dict with its fields)."""
  fields = optax.contrib.ScheduleFreeState._fields
  if isinstance(node, optax.contrib.ScheduleFreeState):
    return True
  return isinstance(node, dict) and set(fields) <= set(node)


def eval_params(opt_state: Any, params: Any) -> Any:
  """The parameters to evaluate: the schedule-free average when `opt_state`
  holds a schedule-free state (`optim.schedule_free`), else `params`."""
  found = [
    n
    for n in jax.tree.leaves(opt_state, is_leaf=_is_schedule_free)
    if _is_schedule_free(n)
  ]
  if not found:
    return params
  state = found[0]
  if isinstance(state, dict):
    state = optax.contrib.ScheduleFreeState(**{k: state[k] for k in state})
  return optax.contrib.schedule_free_eval_params(state, params)


def _all_finite(tree: Any) -> jax.Array:
  leaves = jax.tree.leaves(tree)
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


def skip_nonfinite_updates(
  inner: optax.GradientTransformation,
) -> optax.GradientTransformation:
  """`inner`, except that a step with a non-finite gradient or update is a no-op.

  The update returned is zeros and the inner state is left as it was. The
  state is `optax.ApplyIfFiniteState` (`notfinite_count`: consecutive skipped
  steps, `last_finite`, `total_notfinite`, `inner_state`), the structure of
  `optax.apply_if_finite`, which this replaces because that one checks only
  the gradients and gives up after a number of skips.
  """

  def init(params: Any) -> optax.ApplyIfFiniteState:
    return optax.ApplyIfFiniteState(
      notfinite_count=jnp.zeros([], jnp.int32),
      last_finite=jnp.array(True, jnp.bool_),
      total_notfinite=jnp.zeros([], jnp.int32),
      inner_state=inner.init(params),
    )

  def update(grads, state, params=None):
    updates, inner_state = inner.update(grads, state.inner_state, params)
    ok = jnp.logical_and(_all_finite(grads), _all_finite(updates))
    keep = lambda new, old: jnp.where(ok, new, old)  # noqa: E731
    updates = jax.tree.map(lambda u: jnp.where(ok, u, jnp.zeros_like(u)), updates)
    inner_state = jax.tree.map(keep, inner_state, state.inner_state)
    return updates, optax.ApplyIfFiniteState(
      notfinite_count=jnp.where(ok, 0, state.notfinite_count + 1),
      last_finite=ok,
      total_notfinite=state.total_notfinite + jnp.where(ok, 0, 1),
      inner_state=inner_state,
    )

  return optax.GradientTransformation(init, update)
