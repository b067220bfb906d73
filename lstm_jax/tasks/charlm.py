"""Character language modelling on a text file or the built-in corpus.

Metrics (per target character, padding excluded): `loss` (mean NLL in nats),
`bpc` (bits per character = loss / ln 2) and `accuracy` (top-1). Validation
bpc is over every character of the validation split (the last
`data.valid_fraction` of the corpus), each predicted from its full left
context within its eval stream.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

from lstm_jax import sample as sample_lib
from lstm_jax.data import text
from lstm_jax.errors import ConfigError
from lstm_jax.layers import CELLS
from lstm_jax.models.lm import DTYPES, LanguageModel
from lstm_jax.recurrent import IMPLS
from lstm_jax.tasks.base import Batch, Datasets, Metrics

VOCAB_FILE = "vocab.json"


def make_datasets(config: ml_collections.ConfigDict) -> Datasets:
  """Loads the corpus, builds the vocabulary and the batch functions."""
  corpus = text.load_corpus(config.data.path)
  vocab = text.Vocab.build(corpus.text)
  # The end-of-run sample must not fail after the training: check it now.
  missing = vocab.missing(config.train.sample_prompt)
  if missing or not config.train.sample_prompt:
    raise ConfigError(
      f"train.sample_prompt={config.train.sample_prompt!r} must be non-empty "
      f"corpus text; these characters are not in the corpus: {missing}"
    )
  if config.train.sample_temperature < 0 or config.train.sample_length < 0:
    raise ConfigError("train.sample_temperature and train.sample_length must be >= 0")
  data = text.CharData(
    vocab.encode(corpus.text),
    corpus.doc_ids,
    valid_fraction=config.data.valid_fraction,
    seq_len=config.data.seq_len,
    batch_size=config.data.batch_size,
    eval_batch_size=config.data.eval_batch_size,
    seed=config.seed,
    stateful=config.train.stateful,
    source=corpus.info["source"],
  )
  info = {
    **corpus.info,
    "vocab_size": len(vocab),
    "train_chars": data.split,
    "valid_chars": data.valid_chars,
  }
  return Datasets(
    train_batch=data.train_batch,
    eval_batches=data.eval_batches,
    info=info,
    eval_stateful=True,
    assets={VOCAB_FILE: vocab.to_json()},
  )


def make_model(
  config: ml_collections.ConfigDict, info: dict[str, Any]
) -> LanguageModel:
  """`LanguageModel(vocab_size, **config.model)`; bad choices name their key."""
  m = config.model
  choices = {"dtype": tuple(DTYPES), "cell": CELLS, "impl": IMPLS}
  for key, allowed in choices.items():
    if m[key] not in allowed:
      raise ConfigError(f"model.{key} must be one of {list(allowed)}, got {m[key]!r}")
  for key in ("embed_dim", "hidden_size", "num_layers"):
    if m[key] < 1:
      raise ConfigError(f"model.{key} must be >= 1, got {m[key]}")
  if not 0.0 <= m.dropout < 1.0:
    raise ConfigError(f"model.dropout must be in [0, 1), got {m.dropout}")
  return LanguageModel(vocab_size=info["vocab_size"], **m)


def loss_and_metrics(logits: jax.Array, batch: Batch) -> tuple[jax.Array, Metrics]:
  """Mean next-character NLL over real (mask) positions, plus metrics.

  A batch with no real position has loss 0 and so contributes no gradient.
  """
  mask = batch["mask"]
  nll = optax.softmax_cross_entropy_with_integer_labels(logits, batch["targets"])
  nll_sum = jnp.sum(jnp.where(mask, nll, 0.0))
  count = jnp.sum(mask).astype(jnp.float32)
  correct = jnp.sum(jnp.where(mask, jnp.argmax(logits, -1) == batch["targets"], 0))
  loss = nll_sum / jnp.maximum(count, 1.0)
  metrics = {
    "loss": (nll_sum, count),
    "bpc": (nll_sum / math.log(2.0), count),
    "accuracy": (correct.astype(jnp.float32), count),
  }
  return loss, metrics


def report(
  config: ml_collections.ConfigDict,
  model: LanguageModel,
  params: Any,
  datasets: Datasets,
  results: dict[str, Any],
) -> dict[str, Any]:
  """Prints a sample from the final parameters (unless train.sample_length is
  0) and the validation bpc."""
  generated = ""
  if config.train.sample_length:
    vocab = text.Vocab(datasets.assets[VOCAB_FILE]["chars"])
    prompt = config.train.sample_prompt
    generated = sample_lib.sample(
      params,
      model,
      vocab,
      prompt,
      config.train.sample_length,
      config.train.sample_temperature,
      jax.random.PRNGKey(config.seed),
    )
    print(f"\n--- sample (temperature {config.train.sample_temperature}) ---")
    print(prompt + generated)
    print("---")
  if "eval/bpc" in results:
    print(
      f"validation bpc {results['eval/bpc']:.4f} at step {results['step']} "
      f"({datasets.info['valid_chars']} characters)"
    )
  return {"sample": generated}
