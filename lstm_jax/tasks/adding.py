"""The adding problem (Hochreiter & Schmidhuber 1997; Le et al. 2015's form).

Two channels of length T = `data.seq_len` (values ~ U(0, 1), a marker that is
1 at one step in each half); the target is the sum of the two marked values.
A unidirectional LSTM reads the sequence and a linear head on its last state
regresses the sum (`SequenceClassifier(num_classes=1, pooling="last")`).
Always predicting 1 has MSE 1/6 ~ 0.167 (`BASELINE_MSE`); the acceptance bar is
0.01. Batches are pure f(seed, step) (`data.synthetic.adding_batch`), so a
resumed run sees exactly the batches of an uninterrupted one.

Metrics: `loss` = `mse` (mean squared error per sequence) and `baseline_mse`
(always predicting 1, on the same batches). Validation and test are fixed sets
drawn from step indices no training run reaches (`tasks.base.EVAL_STEP`, `TEST_STEP`).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from lstm_jax.data import synthetic
from lstm_jax.errors import ConfigError
from lstm_jax.models.classifier import SequenceClassifier
from lstm_jax.nn.layers import lstm_from_config
from lstm_jax.tasks.base import Batch, Datasets, Metrics, generated_datasets

TOKEN_METRIC = "mse"  # a "token" is one sequence
RESUMABLE_KEYS = ("data.eval_batches", "data.test_batches")
BASELINE_MSE = 1.0 / 6.0


def validate(config: ml_collections.ConfigDict) -> None:
  """`data.*` must describe a non-empty problem."""
  d = config.data
  if d.seq_len < 2:
    raise ConfigError(f"data.seq_len must be >= 2 (a marker per half), got {d.seq_len}")
  for key in ("batch_size", "eval_batches", "test_batches"):
    if d[key] < 1:
      raise ConfigError(f"data.{key} must be >= 1, got {d[key]}")


def make_datasets(config: ml_collections.ConfigDict) -> Datasets:
  """Train batches f(seed, step); fixed validation and test batches."""
  d = config.data

  def batch(step: int) -> Batch:
    return synthetic.adding_batch(config.seed, step, d.batch_size, d.seq_len)

  return generated_datasets(
    batch,
    d.eval_batches,
    d.test_batches,
    info={"generator": "adding", "seq_len": d.seq_len, "baseline_mse": BASELINE_MSE},
  )


def make_model(config: ml_collections.ConfigDict, info: dict[str, Any]):
  """LSTM -> last real step -> one output."""
  del info
  lstm = lstm_from_config(config.model.lstm)
  if lstm.bidirectional:
    raise ConfigError("model.lstm.bidirectional must be False for the adding problem")
  return SequenceClassifier(lstm=lstm, num_classes=1, pooling="last")


def loss_and_metrics(outputs: jax.Array, batch: Batch) -> tuple[jax.Array, Metrics]:
  """Mean squared error of <float32>[batch, 1] predictions of the sum."""
  err = jnp.square(outputs[:, 0] - batch["targets"])
  base = jnp.square(1.0 - batch["targets"])
  n = jnp.asarray(err.shape[0], jnp.float32)
  metrics = {
    "loss": (jnp.sum(err), n),
    "mse": (jnp.sum(err), n),
    "baseline_mse": (jnp.sum(base), n),
  }
  return jnp.mean(err), metrics


def report(config, model, params, datasets, results) -> dict[str, Any]:
  """Prints the test MSE beside the always-1 baseline."""
  del model, params, datasets
  if "test/mse" in results:
    print(
      f"adding T={config.data.seq_len}: test MSE {results['test/mse']:.5f} "
      f"(always 1: {BASELINE_MSE:.4f}; target < 0.01)"
    )
  return {}
