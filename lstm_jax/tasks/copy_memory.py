"""Copy memory (Arjovsky et al. 2016): remember 10 symbols across T blanks.

Input: 10 symbols from 8 categories, T - 1 blanks, a delimiter, 10 blanks
(length T + 20, `data.synthetic.copy_batch`, T = `data.seq_len`). Output:
blanks, then the 10 symbols after the delimiter. The model embeds the symbols,
runs a unidirectional LSTM and predicts every step's output
(`models.tagger.SequenceTagger`). The memoryless baseline (blanks, then
uniform over the 8 categories) has cross-entropy 10 log 8 / (T + 20) per step
(`synthetic.copy_memoryless_ce`); the acceptance bar is 10% of it.

Metrics: `loss` (mean cross-entropy per step, in nats, over all T + 20 steps),
`ce_ratio` (loss over the memoryless baseline, on the same steps) and
`copy_accuracy` (symbols right among the last 10 steps).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

from lstm_jax.data import synthetic
from lstm_jax.errors import ConfigError
from lstm_jax.models.tagger import SequenceTagger
from lstm_jax.nn.layers import lstm_from_config
from lstm_jax.tasks.base import Batch, Datasets, Metrics, generated_datasets

TOKEN_METRIC = "loss"  # a "token" is one scored time step
RESUMABLE_KEYS = ("data.eval_batches", "data.test_batches")
VOCAB = synthetic.COPY_DELIMITER + 1


def validate(config: ml_collections.ConfigDict) -> None:
  d = config.data
  for key in ("seq_len", "batch_size", "eval_batches", "test_batches"):
    if d[key] < 1:
      raise ConfigError(f"data.{key} must be >= 1, got {d[key]}")
  if config.model.embed_dim < 1:
    raise ConfigError(f"model.embed_dim must be >= 1, got {config.model.embed_dim}")


def make_datasets(config: ml_collections.ConfigDict) -> Datasets:
  """Train batches f(seed, step); fixed validation and test batches."""
  d = config.data

  def batch(step: int) -> Batch:
    return synthetic.copy_batch(config.seed, step, d.batch_size, d.seq_len)

  return generated_datasets(
    batch,
    d.eval_batches,
    d.test_batches,
    info={
      "generator": "copy",
      "seq_len": d.seq_len,
      "memoryless_ce": float(synthetic.copy_memoryless_ce(d.seq_len)),
    },
  )


def make_model(
  config: ml_collections.ConfigDict, info: dict[str, Any]
) -> SequenceTagger:
  del info
  lstm = lstm_from_config(config.model.lstm)
  if lstm.bidirectional:
    raise ConfigError("model.lstm.bidirectional must be False for the copy task")
  return SequenceTagger(lstm=lstm, vocab_size=VOCAB, embed_dim=config.model.embed_dim)


def loss_and_metrics(logits: jax.Array, batch: Batch) -> tuple[jax.Array, Metrics]:
  """Mean per-step cross-entropy over every step of the T + 20."""
  targets = batch["targets"]
  nll = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
  n = jnp.asarray(nll.size, jnp.float32)
  total = jnp.sum(nll)
  delay = targets.shape[1] - 2 * synthetic.COPY_LENGTH
  baseline = synthetic.copy_memoryless_ce(delay)
  last = slice(-synthetic.COPY_LENGTH, None)
  correct = jnp.sum(jnp.argmax(logits[:, last], -1) == targets[:, last])
  n_copy = jnp.asarray(targets[:, last].size, jnp.float32)
  metrics = {
    "loss": (total, n),
    "ce_ratio": (total / baseline, n),
    "copy_accuracy": (correct.astype(jnp.float32), n_copy),
  }
  return total / n, metrics


def report(config, model, params, datasets, results) -> dict[str, Any]:
  del model, params
  if "test/loss" in results:
    base = datasets.info["memoryless_ce"]
    print(
      f"copy T={config.data.seq_len}: test CE {results['test/loss']:.5f} nats/step "
      f"= {results['test/ce_ratio']:.3f} x memoryless ({base:.4f}; target < 0.1)"
    )
  return {}
