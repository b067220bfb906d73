"""The small interface between the trainer and a task.

A task is a module in `lstm_jax/tasks/` (looked up by `config.task`) with four
functions; `Task` spells them out. The char-LM is the first; classification
(masked pooling), forecasting (float inputs, MSE), synthetic long-range tasks
and seq2seq fit the same shape, because the trainer only ever:

1. asks for data as pure functions of the step (resumable, no iterator state),
2. calls `model.apply(variables, batch, carry=..., deterministic=...)`, where
   `batch` is a dict of arrays and `carry` is None for stateless models,
3. turns (outputs, batch) into a scalar loss plus metrics as (sum, weight)
   pairs, which it sums over steps and batches and divides on the host,
4. hands the final parameters back to the task to report (samples, plots).

Metric names are free; the trainer logs them as `train/<name>` and
`eval/<name>` (so `checkpoint.best_metric = "eval/bpc"` names one of them).
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
  """

  train_batch: Callable[[int], Batch]
  eval_batches: Callable[[], Iterable[Batch]]
  info: dict[str, Any]
  eval_stateful: bool = False
  assets: dict[str, Any] = dataclasses.field(default_factory=dict)


class Task(Protocol):
  """What a task module provides (a module with these functions satisfies it)."""

  def make_datasets(self, config: ml_collections.ConfigDict) -> Datasets:
    """Loads the data; raises `errors.DataError` naming the file on bad input."""

  def make_model(
    self, config: ml_collections.ConfigDict, info: dict[str, Any]
  ) -> nn.Module:
    """The model; `__call__(batch, carry=None, deterministic=True) -> (outputs,
    carry)`. Models used statefully also define `initialize_carry(batch_size)`."""

  def loss_and_metrics(self, outputs: Array, batch: Batch) -> tuple[Array, Metrics]:
    """Scalar training loss and (sum, weight) metrics; padding weighs zero."""

  def report(
    self,
    config: ml_collections.ConfigDict,
    model: nn.Module,
    params: Any,
    datasets: Datasets,
    results: dict[str, Any],
  ) -> dict[str, Any]:
    """End-of-run report (print a sample, ...); returns extra results."""
