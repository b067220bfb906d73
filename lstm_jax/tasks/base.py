"""The small interface between the trainer and a task.

A task is a module or package (looked up by `config.task`: a name under
`lstm_jax/tasks/` or any importable dotted module path) with three required
functions and a few optional ones; `TaskModule` spells them out and `Task` is the module with the
optional parts filled in. The trainer only ever:

1. asks for data as pure functions of the step (resumable, no iterator state),
2. calls `model.apply(variables, batch, carry=..., deterministic=...)`, where
   `batch` is a dict of batch-major arrays and `carry` is None for stateless
   models,
3. turns (outputs, batch) into a scalar loss plus metrics as (sum, weight)
   pairs, which it sums over steps and batches and divides on the host,
4. once training ends, evaluates the best checkpoint on the test split (the
   task's `final_evaluation`, or its metrics over `Datasets.test_batches`)
   and hands the final parameters to the task's `report` (samples, plots).

Metric names are free; the trainer logs them as `train/<name>`, `eval/<name>`
and (the final evaluation) `test/<name>`, so `checkpoint.best_metric =
"eval/bpc"` names one of them. The task's config keys (its `data` and `model`
sections, and any section of its own) are declared by its experiment file;
the trainer reads only the sections of `experiments/base.py`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import flax.linen as nn
import jax
import ml_collections
import numpy as np

Array = jax.Array
Batch = dict[str, np.ndarray]
# name -> (sum over examples/tokens, weight); the logged value is sum / weight.
Metrics = dict[str, tuple[Array, Array]]
Config = ml_collections.ConfigDict


@dataclasses.dataclass(frozen=True)
class Datasets:
  """What the trainer needs from the data.

  Attributes:
    train_batch: step -> batch, a pure function of (config, step).
    eval_batches: () -> the validation batches, in order, every call the same.
    info: JSON-able description that identifies the data (e.g. sha256, size,
      vocab_size); written to `<workdir>/data.json` and compared on resume.
    eval_stateful: pass the model's carry from one eval batch to the next
      (eval batches are consecutive windows of long streams).
    assets: extra JSON files to write into the workdir, {filename: object}
      (e.g. the char-LM's `vocab.json`, which sampling reads).
    test_batches: () -> the test batches, scored once at the end of the run
      on the best checkpoint (None: no test split).
  """

  train_batch: Callable[[int], Batch]
  eval_batches: Callable[[], Iterable[Batch]]
  info: dict[str, Any]
  eval_stateful: bool = False
  assets: dict[str, Any] = dataclasses.field(default_factory=dict)
  test_batches: Callable[[], Iterable[Batch]] | None = None


# Generated tasks draw their validation and test batches from step indices
# no training run reaches, so neither overlaps the training stream.
EVAL_STEP, TEST_STEP = 2**31, 2**32


def generated_datasets(
  batch: Callable[[int], Batch],
  eval_batches: int,
  test_batches: int,
  info: dict[str, Any],
) -> Datasets:
  """`Datasets` of a generator `batch(step)` (a pure f(seed, step)): train on
  steps 0, 1, ...; validate on `eval_batches` steps from `EVAL_STEP`; test on
  `test_batches` steps from `TEST_STEP`."""

  def fixed(start: int, count: int) -> Callable[[], Iterable[Batch]]:
    return lambda: (batch(start + i) for i in range(count))

  return Datasets(
    train_batch=batch,
    eval_batches=fixed(EVAL_STEP, eval_batches),
    test_batches=fixed(TEST_STEP, test_batches),
    info=info,
  )


class TaskModule(Protocol):
  """What a task module provides. The first three are required.

  Optional module attributes:
    RESUMABLE_KEYS: fnmatch patterns of the task's own config keys that may
      change when a run is resumed (see `lstm_jax.workdir.rundir`), e.g. a data path.
    TOKEN_METRIC: the metric whose weight counts the tokens of
      `tokens_per_sec` (default "loss": whatever its weight counts).
  """

  def make_datasets(self, config: Config) -> Datasets:
    """Loads the data; raises `errors.DataError` naming the file on bad input.

    The one place a task may set a trainer key from the data: it may raise
    `config.train.steps` to scale the budget with the data size (the
    char-LM's `data.min_epochs`), documented by a key of its own. The trainer
    reads `train.steps` after this call and `config.json` records the value."""

  def make_model(self, config: Config, info: dict[str, Any]) -> nn.Module:
    """The model; `__call__(batch, carry=None, deterministic=True) -> (outputs,
    carry)`. Models used statefully also define `initialize_carry(batch_size)`.
    Raises `errors.ConfigError` naming the key of a bad model setting."""

  def loss_and_metrics(self, outputs: Any, batch: Batch) -> tuple[Array, Metrics]:
    """Scalar training loss and (sum, weight) metrics; padding weighs zero."""

  def validate(self, config: Config) -> None:
    """Optional: checks the task's own keys before anything is loaded or
    written; raises `errors.ConfigError` naming the key."""

  def final_evaluation(
    self,
    config: Config,
    model: nn.Module,
    params: Any,
    datasets: Datasets,
    workdir: str | None,
  ) -> dict[str, float]:
    """Optional: the test metrics of `params` (the best checkpoint), for
    evaluations that are not sums over batches (multi-step forecasts against
    baselines, say). It may write figures into `workdir` (None: write
    nothing). Default: the task's metrics over `datasets.test_batches`."""

  def report(
    self,
    config: Config,
    model: nn.Module,
    params: Any,
    datasets: Datasets,
    results: dict[str, Any],
  ) -> dict[str, Any]:
    """Optional: end-of-run report (print a sample, ...); returns extra
    results."""


def _no_validation(config: Config) -> None:
  del config


def _no_report(config, model, params, datasets, results) -> dict[str, Any]:
  del config, model, params, datasets, results
  return {}


@dataclasses.dataclass(frozen=True)
class Task:
  """A task module with its optional parts filled in (see `TaskModule`)."""

  name: str
  make_datasets: Callable[[Config], Datasets]
  make_model: Callable[[Config, dict[str, Any]], nn.Module]
  loss_and_metrics: Callable[[Any, Batch], tuple[Array, Metrics]]
  validate: Callable[[Config], None] = _no_validation
  final_evaluation: Callable[..., dict[str, float]] | None = None
  report: Callable[..., dict[str, Any]] = _no_report
  resumable_keys: tuple[str, ...] = ()
  token_metric: str = "loss"

  @classmethod
  def from_module(cls, name: str, module: Any) -> Task:
    optional = {
      "validate": getattr(module, "validate", None),
      "final_evaluation": getattr(module, "final_evaluation", None),
      "report": getattr(module, "report", None),
      "resumable_keys": tuple(getattr(module, "RESUMABLE_KEYS", ())),
      "token_metric": getattr(module, "TOKEN_METRIC", None),
    }
    return cls(
      name=name,
      make_datasets=module.make_datasets,
      make_model=module.make_model,
      loss_and_metrics=module.loss_and_metrics,
      **{k: v for k, v in optional.items() if v is not None},
    )
