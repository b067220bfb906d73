"""A long-range task outside the library: recall the sign of the first input.

Each example is `x_t ~ N(0, 1)` for `data.seq_len` steps; the label is 1 when
`x_0 > 0`, read from the LSTM's output at the LAST step. The loss is on the
last step only, so every bit of information has to travel the whole sequence
back in time: the classic setting where the forget gate decides whether the
gradient survives (`tests/training/diagnostics_test.py`).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from lstm_jax.nn.layers import LSTM, lstm_from_config
from lstm_jax.tasks.base import Datasets

TOKEN_METRIC = "accuracy"


def _examples(seed: list[int], n: int, seq_len: int):
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((n, seq_len, 1)).astype(np.float32)
  return {"inputs": x, "label": (x[:, 0, 0] > 0).astype(np.int32)}


def make_datasets(config) -> Datasets:
  d = config.data

  def eval_batches():
    yield _examples([config.seed, 1], d.batch_size, d.seq_len)

  return Datasets(
    train_batch=lambda step: _examples([config.seed, 0, step], d.batch_size, d.seq_len),
    eval_batches=eval_batches,
    info={"generator": "recall_first_sign", "seq_len": d.seq_len},
  )


class LastStepClassifier(nn.Module):
  lstm: LSTM

  @nn.compact
  def __call__(self, batch, carry=None, deterministic=True):
    del carry
    y, _ = self.lstm(batch["inputs"], deterministic=deterministic)
    return nn.Dense(2)(y[:, -1].astype(jnp.float32)), None


def make_model(config, info: dict[str, Any]) -> LastStepClassifier:
  del info
  return LastStepClassifier(lstm=lstm_from_config(config.model.lstm))


def loss_and_metrics(logits: jax.Array, batch):
  nll = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])
  n = jnp.asarray(nll.shape[0], jnp.float32)
  correct = jnp.sum(jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32)
  return jnp.mean(nll), {"loss": (jnp.sum(nll), n), "accuracy": (correct, n)}
