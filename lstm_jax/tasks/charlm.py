"""Character language modelling on a text file or the built-in corpus.

Config (declared in `experiments/charlm.py`): `data.*` (corpus, split,
window and batch sizes), `model.*` (embedding, tied output layer and the LSTM
section `model.lstm`) and `sample.*` (the end-of-run sample).

Metrics (per target character, padding excluded): `loss` (mean NLL in nats),
`bpc` (bits per character = loss / ln 2) and `accuracy` (top-1). Validation
bpc is over every character of the validation split (the last
`data.valid_fraction` of the corpus), each predicted from its full left
context within its eval stream. A token (for `tokens_per_sec`) is a target
character.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

from lstm_jax.data import text
from lstm_jax.errors import ConfigError
from lstm_jax.models import generate
from lstm_jax.models.lm import LanguageModel
from lstm_jax.nn.layers import lstm_from_config
from lstm_jax.tasks.base import Batch, Datasets, Metrics

VOCAB_FILE = "vocab.json"
# The corpus's identity is its sha256 (data.json), not its path: a moved
# corpus file may be resumed from; the sample only watches the run.
RESUMABLE_KEYS = ("data.path", "sample.*")
TOKEN_METRIC = "loss"


def validate(config: ml_collections.ConfigDict) -> None:
  """The task's own keys, checked before anything is loaded or written."""
  data, sample = config.data, config.sample
  if not 0.0 < data.valid_fraction < 1.0:
    raise ConfigError(
      f"data.valid_fraction must be in (0, 1), got {data.valid_fraction}"
    )
  if not data.min_epochs >= 0:  # also catches NaN
    raise ConfigError(f"data.min_epochs must be >= 0, got {data.min_epochs}")
  for key in ("seq_len", "batch_size", "eval_batch_size"):
    if data[key] < 1:
      raise ConfigError(f"data.{key} must be >= 1, got {data[key]}")
  if config.model.embed_dim < 1:
    raise ConfigError(f"model.embed_dim must be >= 1, got {config.model.embed_dim}")
  if not 0.0 <= config.model.embed_dropout < 1.0:
    raise ConfigError(
      f"model.embed_dropout must be in [0, 1), got {config.model.embed_dropout}"
    )
  if not sample.temperature >= 0:  # also catches NaN
    raise ConfigError(f"sample.temperature must be >= 0, got {sample.temperature}")
  if sample.length < 0:
    raise ConfigError(f"sample.length must be >= 0, got {sample.length}")


def budget_steps(
  train_chars: int, min_epochs: float, batch_size: int, seq_len: int
) -> int:
  """Steps for `min_epochs` passes over `train_chars` characters.

  A step reads `batch_size * seq_len` target characters (random windows, so a
  "pass" counts characters read, not each character once).
  """
  return math.ceil(min_epochs * train_chars / (batch_size * seq_len))


def make_datasets(config: ml_collections.ConfigDict) -> Datasets:
  """Loads the corpus, builds the vocabulary and the batch functions.

  Also applies the data-scaled budget: raises `config.train.steps` (in place,
  before the trainer reads it) to `budget_steps` of `data.min_epochs` when
  that is more, so a larger corpus gets proportionally more steps.
  """
  corpus = text.load_corpus(config.data.path)
  vocab, ids = text.encode_corpus(corpus)
  data = text.CharData(
    ids,
    corpus.doc_ids,
    valid_fraction=config.data.valid_fraction,
    seq_len=config.data.seq_len,
    batch_size=config.data.batch_size,
    eval_batch_size=config.data.eval_batch_size,
    seed=config.seed,
    stateful=config.train.stateful,
    source=corpus.info["source"],
  )
  # The end-of-run sample must not fail after the training: check it now
  # (after CharData, so a corpus shorter than a batch is reported as that).
  if config.sample.length:
    missing = vocab.missing(config.sample.prompt)
    if missing or not config.sample.prompt:
      raise ConfigError(
        f"sample.prompt={config.sample.prompt!r} must be non-empty corpus "
        f"text; these characters are not in the corpus: {missing} (or set "
        "sample.length=0)"
      )
  steps = budget_steps(
    data.split, config.data.min_epochs, config.data.batch_size, config.data.seq_len
  )
  if steps > config.train.steps:
    config.train.steps = steps
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
  """The language model of `config.model`; bad settings name their key."""
  lstm = lstm_from_config(config.model.lstm)
  if lstm.bidirectional:
    raise ConfigError("model.lstm.bidirectional must be False for a language model")
  return LanguageModel(
    vocab_size=info["vocab_size"],
    lstm=lstm,
    embed_dim=config.model.embed_dim,
    tie_embeddings=config.model.tie_embeddings,
    embed_dropout=config.model.embed_dropout,
  )


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
  """Prints a sample from the final parameters (unless sample.length is 0)
  and the validation bpc."""
  generated = ""
  if config.sample.length:
    vocab = text.Vocab(datasets.assets[VOCAB_FILE]["chars"])
    prompt = config.sample.prompt
    generated = generate.sample_text(
      params,
      model,
      vocab,
      prompt,
      config.sample.length,
      config.sample.temperature,
      jax.random.key(config.seed),
    )
    print(f"\n--- sample (temperature {config.sample.temperature}) ---")
    print(prompt + generated)
    print("---")
  if "eval/bpc" in results:
    total = datasets.info["valid_chars"]
    scored = int(results.get("eval/tokens", total))
    # train.eval_batches may limit the evaluation to the first batches.
    what = (
      f"all {total:,} validation characters"
      if scored >= total
      else f"{scored:,} of the {total:,} validation characters; "
      "train.eval_batches limits it"
    )
    print(
      f"validation bpc {results['eval/bpc']:.4f} at step {results['step']} "
      f"(scored on {what})"
    )
  return {"sample": generated}
