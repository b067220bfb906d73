"""One place that turns a config into its task, data, model, optimizer and state.

`build(config)` is what the trainer, the population trainer, the run reader,
the diagnostics, the benchmarks and the tests start from, so all of them get
the same model and the same initial state from the same config:

  built = build(config)                 # checks, loads the data, the model
  state = jax.jit(built.init_state)(jax.random.key(config.seed))
  step = steps.make_train_step(built.model, built.task.loss_and_metrics, built.tx)

`build(config, info=...)` rebuilds the model of a trained run from the data
description it stored (`data.json`) without loading any data.

The LSTMs of the model are told the size of the mesh axis "model" they run
under (`model_axis`, from `parallel.mesh_shape` on this process's devices),
so that the tensor-parallel scan is chosen by the config, not by whatever
mesh is active when the model is traced. A task builds its model without
knowing it (`with_model_axis` sets it on every `LSTM` the model holds).

The optimizer is made on first use (a run reader needs none); the data are
loaded first, because a task may raise `train.steps`
from the data size (`Task.make_datasets`), which the optimizer's schedule
then reads.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.linen as nn
import jax
import ml_collections
import optax

from lstm_jax import tasks
from lstm_jax.errors import ConfigError
from lstm_jax.nn.layers import LSTM
from lstm_jax.parallel import sharding
from lstm_jax.tasks.base import Batch, Datasets
from lstm_jax.training import optim
from lstm_jax.training.steps import TrainState, create_train_state
from lstm_jax.workdir import checkpoint


def check_trainer_keys(config: ml_collections.ConfigDict) -> None:
  """The trainer's own keys; the task checks its keys in `Task.validate`."""
  train = config.train
  for key in ("steps", "log_every"):
    if train[key] < 1:
      raise ConfigError(f"train.{key} must be >= 1, got {train[key]}")
  for key in ("eval_every", "early_stop_patience", "max_nonfinite_steps"):
    if train[key] < 0:
      raise ConfigError(f"train.{key} must be >= 0, got {train[key]}")
  if train.eval_batches is not None and train.eval_batches < 1:
    raise ConfigError(
      f"train.eval_batches must be >= 1 (or unset = all), got {train.eval_batches}"
    )
  # checkpoint.make_manager runs after rundir.prepare has written
  # config.json; a bad checkpoint value must fail before that.
  checkpoint.check_config(config.checkpoint)
  if train.early_stop_patience and not config.checkpoint.best_metric:
    raise ConfigError("train.early_stop_patience needs checkpoint.best_metric")


def validate(config: ml_collections.ConfigDict) -> tasks.Task:
  """Checks the config (trainer keys, then the task's) before anything is
  loaded or written; returns the task.

  Raises:
    errors.ConfigError: naming the first bad key.
  """
  task = tasks.get_task(config.task)
  check_trainer_keys(config)
  task.validate(config)
  return task


@dataclasses.dataclass(frozen=True)
class Built:
  """A config's task, data and model; optimizer and state on demand.

  Attributes:
    config: the config it was built from (`train.steps` as the task left it).
    task: the task (`lstm_jax.tasks.base.Task`).
    info: the data description (`Datasets.info`, or a run's `data.json`).
    model: the task's model for `config` and `info`.
    datasets: the loaded data; None when built from a stored `info`.
    example: the first training batch (`train_batch(0)`), which gives the
      state its shapes; None when built from a stored `info`.
  """

  config: ml_collections.ConfigDict
  task: tasks.Task
  info: dict[str, Any]
  model: nn.Module
  datasets: Datasets | None
  example: Batch | None

  @functools.cached_property
  def _optimizer(self) -> tuple[optax.GradientTransformation, optax.Schedule]:
    return optim.make_optimizer(self.config.optim, self.config.train.steps)

  @property
  def tx(self) -> optax.GradientTransformation:
    """The optimizer of `config.optim` over `train.steps` updates."""
    return self._optimizer[0]

  @property
  def schedule(self) -> optax.Schedule:
    """Its learning-rate schedule: update count -> rate."""
    return self._optimizer[1]

  def init_state(
    self, rng: jax.Array, tx: optax.GradientTransformation | None = None
  ) -> TrainState:
    """A fresh `TrainState` from `rng` (`steps.create_train_state`), with
    `tx` (default `self.tx`); jit or `jax.eval_shape` it as needed."""
    if self.example is None:
      raise ValueError("built from a stored data description: no example batch")
    return create_train_state(
      self.model, self.tx if tx is None else tx, self.config, self.example, rng
    )

  def abstract_state(self) -> TrainState:
    """The shapes and dtypes of `init_state` (`jax.ShapeDtypeStruct`s);
    nothing is computed or allocated."""
    return jax.eval_shape(self.init_state, jax.random.key(self.config.seed))


def with_model_axis(module: Any, model_axis: int) -> Any:
  """`module` with `model_axis` set on every `LSTM` among its submodule
  fields, recursively (also inside tuple and list fields)."""
  if not isinstance(module, nn.Module):
    return module
  changes = {}
  for field in dataclasses.fields(module):
    if field.name not in ("parent", "name"):
      value = getattr(module, field.name)
      new = _map_modules(value, model_axis)
      if new is not value:
        changes[field.name] = new
  if isinstance(module, LSTM) and module.model_axis != model_axis:
    changes["model_axis"] = model_axis
  return module.clone(**changes) if changes else module


def _map_modules(value: Any, model_axis: int) -> Any:
  if isinstance(value, nn.Module):
    return with_model_axis(value, model_axis)
  if type(value) in (tuple, list):
    new = [_map_modules(v, model_axis) for v in value]
    if any(n is not v for n, v in zip(new, value)):
      return type(value)(new)
  return value


def config_model_axis(config: ml_collections.ConfigDict) -> int:
  """The size of "model" that `parallel.mesh_shape` gives on this process's
  view of the devices (`jax.device_count()`)."""
  return sharding.model_axis(config.parallel.mesh_shape, jax.device_count())


def build(
  config: ml_collections.ConfigDict,
  info: dict[str, Any] | None = None,
  *,
  model_axis: int | None = None,
) -> Built:
  """The task, data and model of `config`.

  Args:
    config: a full config (`experiments/<task>.py`).
    info: a trained run's data description (`data.json`): rebuild its model
      only, loading no data and checking nothing (the run was checked when it
      started). None: check the config (`validate`), then load the data.
    model_axis: the size of the mesh axis "model" the model's LSTMs are
      traced under; None: `config_model_axis(config)`, the trainer's mesh.
      A reader that runs the model outside that mesh passes 1.

  Raises:
    errors.LstmJaxError: a bad config key or bad data; the message names it.
  """
  if model_axis is None:
    model_axis = config_model_axis(config)
  if info is not None:
    task = tasks.get_task(config.get("task"))
    model = with_model_axis(task.make_model(config, info), model_axis)
    return Built(config, task, info, model, None, None)
  task = validate(config)
  datasets = task.make_datasets(config)
  model = with_model_axis(task.make_model(config, datasets.info), model_axis)
  # Made here, outside any trace: init_state is jitted and eval_shaped.
  example = datasets.train_batch(0)
  return Built(config, task, datasets.info, model, datasets, example)
