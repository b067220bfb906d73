"""A task that lives outside the library: classify the sign of a sequence's sum.

It exists to show (and test, in `tests/system/custom_task_test.py`) that a new task is
one module plus one config: nothing in `lstm_jax/training/train.py`,
`experiments/base.py` or `lstm_jax/training/metrics.py` knows about it. Its config is
`tests/support/toy/sign_config.py`, which declares the task's own keys.

Each example is a sequence of `x_t ~ N(0, 1)` of a random length in
[min_len, seq_len] (right-padded); the label is 1 when the sum of its real
steps is positive. The model reads it with an LSTM and classifies the last
real step's output.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from lstm_jax.errors import ConfigError
from lstm_jax.nn.layers import LSTM, lstm_from_config
from lstm_jax.tasks.base import Datasets

TOKEN_METRIC = "accuracy"  # a "token" is one classified sequence
RESUMABLE_KEYS = ("data.eval_examples",)


def validate(config) -> None:
  if not 1 <= config.data.min_len <= config.data.seq_len:
    raise ConfigError(
      f"data.min_len must be in [1, data.seq_len={config.data.seq_len}], "
      f"got {config.data.min_len}"
    )


def _examples(seed: list[int], n: int, seq_len: int, min_len: int):
  # A SeedSequence of (config seed, split, step): the same batch in every
  # process (Python's str hash is salted per process, so it is not used).
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((n, seq_len, 1)).astype(np.float32)
  lengths = rng.integers(min_len, seq_len + 1, size=n)
  mask = np.arange(seq_len)[None, :] < lengths[:, None]
  x = np.where(mask[..., None], x, 0.0)
  label = (x.sum(axis=(1, 2)) > 0).astype(np.int32)
  return {"inputs": x, "mask": mask, "label": label}


def make_datasets(config) -> Datasets:
  d = config.data
  shape = (d.seq_len, d.min_len)

  def train_batch(step: int):
    return _examples([config.seed, 0, step], d.batch_size, *shape)

  def split(split_id: int):
    full = _examples([config.seed, split_id], d.eval_examples, *shape)

    def batches():
      for i in range(0, d.eval_examples, d.batch_size):
        yield {k: v[i : i + d.batch_size] for k, v in full.items()}

    return batches

  return Datasets(
    train_batch=train_batch,
    eval_batches=split(1),
    test_batches=split(2),
    info={"generator": "sign_of_sum", "seq_len": d.seq_len, "min_len": d.min_len},
  )


class SignClassifier(nn.Module):
  lstm: LSTM

  @nn.compact
  def __call__(self, batch, carry=None, deterministic=True):
    del carry
    y, _ = self.lstm(batch["inputs"], mask=batch["mask"], deterministic=deterministic)
    last = jnp.maximum(jnp.sum(batch["mask"], axis=1) - 1, 0)
    h = jnp.take_along_axis(y, last[:, None, None], axis=1)[:, 0]
    return nn.Dense(2)(h.astype(jnp.float32)), None


def make_model(config, info: dict[str, Any]) -> SignClassifier:
  del info
  return SignClassifier(lstm=lstm_from_config(config.model.lstm))


def loss_and_metrics(logits: jax.Array, batch):
  nll = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])
  n = jnp.asarray(nll.shape[0], jnp.float32)
  correct = jnp.sum(jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32)
  return jnp.mean(nll), {"loss": (jnp.sum(nll), n), "accuracy": (correct, n)}
