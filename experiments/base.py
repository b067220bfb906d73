"""The keys the trainer owns, declared once with their defaults and meaning.

A task's experiment file (`experiments/<task>.py`) starts from this config and
declares its own `data` and `model` sections (and any section of its own, such
as the char-LM's `sample`), each key once with a comment; it may override
the values here but adds no keys to these sections. The config is loaded with
`lock_config=True`, so a typo on the command line (`--config.trian.steps=5`)
fails naming the key. Keys whose default is "unset" are typed placeholders,
so `--config.optim.decay_steps=500` still type-checks.

Run an experiment (not this file) with, for example::

  python -m lstm_jax.main --config=experiments/<task>.py --workdir=runs/<name>
"""

from collections.abc import Sequence
from typing import NamedTuple

import ml_collections
from ml_collections import config_dict


class Variants(NamedTuple):
  """A parsed `:variant` argument (see parse_variants)."""

  # The one alternative chosen (a dataset, a problem), or None.
  choice: str | None
  # The switches given ("tiny", "plain"), any number of them.
  flags: frozenset[str]


def parse_variants(
  arg: str | None,
  experiment: str,
  flags: Sequence[str] = ("tiny",),
  choices: Sequence[str] | None = (),
) -> Variants:
  """Parses an experiment's `:variant` argument, e.g. "co2,tiny".

  The argument is comma-separated parts (blanks around them ignored): any of
  `flags`, and at most one other part, which must be one of `choices`
  (`choices=None`: any name, e.g. a dataset looked up when the run starts).

  Args:
    arg: the text after `:` in `--config=experiments/<file>.py:<arg>`; None
      or "" = the default config.
    experiment: the experiment's name, for the error message.
    flags: switches that combine with anything.
    choices: the alternatives, one of which may be chosen; () = none.

  Returns:
    The chosen alternative (or None) and the set of flags given.

  Raises:
    ValueError: an unknown part, or more than one alternative.
  """
  parts = [p.strip() for p in (arg or "").split(",") if p.strip()]
  others = [p for p in parts if p not in flags]
  if choices is not None:
    unknown = ",".join(p for p in others if p not in choices)
    if unknown:
      where = f" in {arg!r}" if unknown != arg.strip() else ""
      known = ", ".join(repr(v) for v in (*choices, *flags))
      raise ValueError(
        f"unknown {experiment} variant {unknown!r}{where}; use {known} "
        "(comma-separated) or nothing"
      )
  if len(others) > 1:
    what = "NAME" if choices is None else f"of {', '.join(choices)}"
    optional = f" (and optionally {', '.join(flags)})" if flags else ""
    raise ValueError(f"{experiment} takes one {what}{optional}, got {arg!r}")
  return Variants(
    others[0] if others else None, frozenset(p for p in parts if p in flags)
  )


def tiny(
  config: ml_collections.ConfigDict,
  steps: int = 40,
  eval_every: int = 20,
  checkpoint_every: int = 10,
) -> None:
  """Sets the trainer keys of a `tiny` variant (a run of seconds on CPU).

  A high learning rate with a short warmup, so a few dozen steps visibly lower
  the loss; logs every 10 steps; evals and checkpoints often enough that the
  run exercises both (and resuming) several times. The task's `tiny` shrinks
  its own `data` and `model` sections. Modifies `config` in place.
  """
  config.optim.learning_rate = 1e-2
  config.optim.warmup_steps = 5
  config.train.steps = steps
  config.train.log_every = 10
  config.train.eval_every = eval_every
  config.checkpoint.every_steps = checkpoint_every


def get_config() -> ml_collections.ConfigDict:
  """The trainer's sections: seed, task, optim, train, checkpoint, parallel."""
  config = ml_collections.ConfigDict()
  # Seed of parameter init, dropout and batch order; the run is a function of it.
  config.seed = 0
  # The task: a module name under lstm_jax/tasks/, or the dotted
  # path of any importable module with the same interface (lstm_jax.tasks.base).
  config.task = config_dict.placeholder(str)

  config.optim = ml_collections.ConfigDict()
  # "adamw" (decoupled weight decay), "adam", "sgd" or "adagrad" (L2 added to
  # the grads).
  config.optim.name = "adamw"
  # Peak learning rate.
  config.optim.learning_rate = 1e-3
  # "constant", "warmup_cosine" or "step"; all start with a linear warmup.
  config.optim.schedule = "warmup_cosine"
  # Linear warmup from 0 to learning_rate over this many updates.
  config.optim.warmup_steps = 100
  # Length of the whole schedule incl. warmup (cosine); unset = train.steps.
  config.optim.decay_steps = config_dict.placeholder(int)
  # The cosine ends at learning_rate * final_lr_fraction.
  config.optim.final_lr_fraction = 0.1
  # "step" schedule: multiply the rate by step_factor every step_every updates.
  config.optim.step_every = 1000
  config.optim.step_factor = 0.5
  # Adam(W) moments; epsilon of Adam(W) and Adagrad.
  config.optim.b1 = 0.9
  config.optim.b2 = 0.999
  config.optim.eps = 1e-8
  # Adagrad: starting value of every squared-gradient accumulator
  # (TensorFlow's default; the BIG LSTM was trained with it).
  config.optim.initial_accumulator = 0.1
  # SGD momentum (0 = plain SGD) and Nesterov.
  config.optim.momentum = 0.9
  config.optim.nesterov = False
  # Weight decay on weight matrices and embeddings only (see optim.decay_mask).
  config.optim.weight_decay = 0.0
  # Clip gradients to this global norm; 0 = no clipping.
  config.optim.clip_norm = 1.0
  # Schedule-free averaging (optax.contrib.schedule_free around the
  # optimizer, whose b1 becomes the interpolation): evaluate, rank and test
  # the averaged parameters (lstm_jax.training.optim.eval_params); use with
  # schedule "constant".
  config.optim.schedule_free = False
  # Skip (do not apply) an update whose gradient has a NaN or Inf.
  config.optim.skip_nonfinite = True

  config.train = ml_collections.ConfigDict()
  # Total optimizer steps of the run.
  config.train.steps = 1000
  # Log train metrics every N steps (means over those steps).
  config.train.log_every = 50
  # Evaluate (and save a checkpoint with the eval metrics) every N steps;
  # there is always an eval at the last step.
  config.train.eval_every = 500
  # Eval batches per evaluation; unset = the whole validation split.
  config.train.eval_batches = config_dict.placeholder(int)
  # Stop after this many evals without improving checkpoint.best_metric;
  # 0 = never stop early.
  config.train.early_stop_patience = 0
  # Stop the run after this many consecutive steps with a non-finite loss.
  config.train.max_nonfinite_steps = 20
  # Stateful training: carry the model's state from one batch to the next
  # (truncated BPTT over consecutive windows; the model needs a carry).
  config.train.stateful = False
  # Micro-batches per update: the batch is split into this many (rows j,
  # j+k, ...), their gradients summed by a lax.scan inside the step, so only
  # one micro-batch's activations are live; same update as the whole batch.
  config.train.grad_accum_steps = 1

  config.checkpoint = ml_collections.ConfigDict()
  # Save every N steps (plus at each eval, at the end and on SIGTERM).
  config.checkpoint.every_steps = 500
  # Keep the last N checkpoints (the best one is kept in addition).
  config.checkpoint.keep = 2
  # Eval metric that ranks checkpoints, drives early stopping and picks the
  # checkpoint of the final test evaluation; "" = none (the last is used).
  config.checkpoint.best_metric = "eval/loss"
  # "min" or "max": which direction of best_metric is better.
  config.checkpoint.best_mode = "min"

  config.diagnostics = ml_collections.ConfigDict()
  # Gradient-flow diagnostics (lstm_jax.training.diagnostics) every N steps on the
  # current batch: dLoss/dh_t per step, per-module gradient norms, clipping
  # rate, forget gates; to metrics.jsonl ("diagnostics") and
  # gradient_flow.png. 0 = off (they cost about one reference-path step).
  config.diagnostics.every_steps = 0
  # Warn "vanishing" when ||dLoss/dh_t|| of layer 0 falls by more than this
  # factor from the last step to the first.
  config.diagnostics.vanishing_factor = 1e3
  # Warn "exploding" when it grows by more than this factor instead.
  config.diagnostics.exploding_factor = 10.0
  # Warn "exploding" when clipping fired on more than this fraction of steps.
  config.diagnostics.clip_warn_fraction = 0.5

  config.parallel = ml_collections.ConfigDict()
  # Device mesh (data, model) over all devices of all processes; -1 = the
  # remaining devices; the product must be the device count. Batches are
  # split over "data"; the LSTM's gates (H/model units of every gate) and
  # large embedding/softmax matrices over "model" (lstm_jax/parallel/sharding.py).
  config.parallel.mesh_shape = (-1, 1)
  # "jit" (sharded jax.jit over the mesh) or "pmap" (jax.pmap with the
  # gradients combined by lax.psum; data parallel, one process).
  config.parallel.strategy = "jit"
  # ZeRO-1: split the optimizer state over "data" as well (each device keeps
  # and updates 1/data of the moments; parameters stay replicated over
  # "data"). "jit" only.
  config.parallel.shard_opt_state = False
  # Multi-host: process 0's host:port; unset = one process, or the cluster
  # JAX detects itself (Cloud TPU VM slice, SLURM).
  config.parallel.coordinator_address = config_dict.placeholder(str)
  # Multi-host: how many processes take part (with coordinator_address).
  config.parallel.num_processes = config_dict.placeholder(int)
  # Multi-host: this process's index in [0, num_processes).
  config.parallel.process_id = config_dict.placeholder(int)
  # Seconds to wait for the coordinator before failing with a message.
  config.parallel.init_timeout_s = 300
  return config
