"""Word-level language modelling on a text file or the built-in corpus.

Config (declared in `experiments/wordlm.py`): `data.*` (corpus, tokenisation,
vocabulary, splits, window and batch sizes, carry resets), `model.*`
(embedding, output layer, the LSTM section `model.lstm`) and `baseline.*`
(the Kneser-Ney n-gram scored in the same run).

Metrics (per target word, padding excluded): `loss` (mean NLL in nats) and
`bits_per_word` (loss / ln 2); perplexity = exp(loss) is printed, and the
test record holds it beside the Kneser-Ney model's on the same test tokens
(same split, same vocabulary, `<unk>` included). Validation and test are read
as contiguous streams with the carry passed along. A token (for
`tokens_per_sec`) is a target word.
"""

from __future__ import annotations

import math
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from lstm_jax.baselines.kneser_ney import KneserNey
from lstm_jax.data import text, words
from lstm_jax.errors import ConfigError
from lstm_jax.models.wordlm import SOFTMAXES, WordLanguageModel
from lstm_jax.nn.layers import lstm_from_config
from lstm_jax.nn.softmax import check_cutoffs
from lstm_jax.parallel import sharding
from lstm_jax.tasks.base import Batch, Datasets, Metrics
from lstm_jax.tasks.charlm import budget_steps

VOCAB_FILE = "vocab.json"
# The corpus's identity is data.json's sha256 and vocabulary; the baseline
# only scores the final model.
RESUMABLE_KEYS = ("data.path", "baseline.*")
TOKEN_METRIC = "loss"
PARAM_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def validate(config: ml_collections.ConfigDict) -> None:
  """The task's own keys, checked before anything is loaded or written."""
  data, model = config.data, config.model
  for key in ("valid_fraction", "test_fraction"):
    if not 0.0 < data[key] < 1.0:
      raise ConfigError(f"data.{key} must be in (0, 1), got {data[key]}")
  if data.valid_fraction + data.test_fraction >= 1.0:
    raise ConfigError(
      "data.valid_fraction + data.test_fraction must be < 1, got "
      f"{data.valid_fraction} + {data.test_fraction}"
    )
  for section, key, allowed in (
    ("data", "tokenizer", words.TOKENIZERS),
    ("data", "reset", words.RESETS),
    ("model", "softmax", SOFTMAXES),
  ):
    if config[section][key] not in allowed:
      raise ConfigError(
        f"{section}.{key} must be one of {list(allowed)}, got {config[section][key]!r}"
      )
  for key in ("seq_len", "batch_size", "eval_batch_size", "min_count"):
    if data[key] < 1:
      raise ConfigError(f"data.{key} must be >= 1, got {data[key]}")
  if data.max_vocab != 0 and data.max_vocab < 3:
    raise ConfigError(
      f"data.max_vocab must be 0 (no cap) or >= 3, got {data.max_vocab}"
    )
  if not data.min_epochs >= 0:  # also catches NaN
    raise ConfigError(f"data.min_epochs must be >= 0, got {data.min_epochs}")
  if model.embed_dim < 1:
    raise ConfigError(f"model.embed_dim must be >= 1, got {model.embed_dim}")
  if not 0.0 <= model.embed_dropout < 1.0:
    raise ConfigError(
      f"model.embed_dropout must be in [0, 1), got {model.embed_dropout}"
    )
  if model.param_dtype not in PARAM_DTYPES:
    raise ConfigError(
      f"model.param_dtype must be one of {list(PARAM_DTYPES)}, got "
      f"{model.param_dtype!r}"
    )
  if model.softmax == "sampled" and model.num_samples < 1:
    raise ConfigError(f"model.num_samples must be >= 1, got {model.num_samples}")
  if model.softmax == "adaptive":
    if model.tie_embeddings:
      raise ConfigError(
        "model.softmax='adaptive' has its own output parameters: set "
        "model.tie_embeddings=False"
      )
    if not model.div_value >= 1:
      raise ConfigError(f"model.div_value must be >= 1, got {model.div_value}")
  if config.baseline.order < 0:
    raise ConfigError(f"baseline.order must be >= 0, got {config.baseline.order}")


def load(config: ml_collections.ConfigDict) -> words.WordCorpus:
  """The tokenised corpus of `config.data` (raises DataError on bad input)."""
  d = config.data
  return words.build(
    text.load_corpus(d.path),
    tokenizer=d.tokenizer,
    lowercase=d.lowercase,
    valid_fraction=d.valid_fraction,
    test_fraction=d.test_fraction,
    min_count=d.min_count,
    max_vocab=d.max_vocab,
  )


def make_data(config: ml_collections.ConfigDict, corpus: words.WordCorpus):
  """The `words.WordData` batches of `corpus` under `config`."""
  return words.WordData(
    corpus,
    seq_len=config.data.seq_len,
    batch_size=config.data.batch_size,
    eval_batch_size=config.data.eval_batch_size,
    seed=config.seed,
    stateful=config.train.stateful,
    reset=config.data.reset,
  )


def make_datasets(config: ml_collections.ConfigDict) -> Datasets:
  """Loads and tokenises the corpus and builds the batch functions.

  Like the char-LM, raises `config.train.steps` to `data.min_epochs` passes
  over the training tokens when that is more.
  """
  corpus = load(config)
  data = make_data(config, corpus)
  need = budget_steps(
    data.train_end, config.data.min_epochs, config.data.batch_size, config.data.seq_len
  )
  if need > config.train.steps:
    config.train.steps = need
  train_end, valid_end = corpus.bounds
  info = {
    **corpus.info,
    "valid_unk_rate": round(corpus.unk_rate(train_end, valid_end), 6),
    "test_unk_rate": round(corpus.unk_rate(valid_end, len(corpus.ids)), 6),
  }
  return Datasets(
    train_batch=data.train_batch,
    eval_batches=lambda: data.eval_batches("valid"),
    test_batches=lambda: data.eval_batches("test"),
    info=info,
    eval_stateful=True,
    assets={VOCAB_FILE: {"words": corpus.words, "counts": corpus.counts.tolist()}},
  )


def make_model(
  config: ml_collections.ConfigDict, info: dict[str, Any]
) -> WordLanguageModel:
  """The model of `config.model`; bad settings name their key."""
  m = config.model
  lstm = lstm_from_config(m.lstm)
  if lstm.bidirectional:
    raise ConfigError("model.lstm.bidirectional must be False for a language model")
  vocab = int(info["vocab_size"])
  if m.softmax == "adaptive":
    problem = check_cutoffs(tuple(m.cutoffs), vocab)
    if problem:
      raise ConfigError(f"model.cutoffs {problem}")
  # Pad the vocabulary so that the mesh's "model" axis can split its matrices.
  rows = vocab
  if m.pad_vocab:
    width = max(m.embed_dim, lstm.proj_size or lstm.hidden_size)
    model_axis = sharding.model_axis(config.parallel.mesh_shape, jax.device_count())
    rows = sharding.padded_vocab(vocab, width, model_axis)
  return WordLanguageModel(
    vocab_size=vocab,
    lstm=lstm,
    embed_dim=m.embed_dim,
    tie_embeddings=m.tie_embeddings,
    embed_dropout=m.embed_dropout,
    softmax=m.softmax,
    num_samples=m.num_samples,
    cutoffs=tuple(m.cutoffs),
    div_value=m.div_value,
    padded_vocab=rows,
    param_dtype=PARAM_DTYPES[m.param_dtype],
  )


def loss_and_metrics(
  outputs: dict[str, jax.Array], batch: Batch
) -> tuple[jax.Array, Metrics]:
  """Mean next-word NLL over real positions (0 for a batch with none)."""
  mask = batch.get("mask")
  if mask is None:
    mask = jnp.ones(outputs["nll"].shape, bool)
  nll_sum = jnp.sum(jnp.where(mask, outputs["nll"], 0.0))
  count = jnp.sum(mask).astype(jnp.float32)
  loss = nll_sum / jnp.maximum(count, 1.0)
  return loss, {
    "loss": (nll_sum, count),
    "bits_per_word": (nll_sum / math.log(2.0), count),
  }


def final_evaluation(
  config: ml_collections.ConfigDict,
  model: WordLanguageModel,
  params: Any,
  datasets: Datasets,
  workdir: str | None,
) -> dict[str, float]:
  """Test loss, bits per word and perplexity of `params`, and those of the
  interpolated modified Kneser-Ney `baseline.order`-gram trained on the
  training split, on the same test tokens (each from its history in the
  corpus; the LSTM's from its stream, see `words.WordData.eval_batches`)."""
  del workdir
  values = evaluate(model, params, datasets.test_batches(), config)
  order = config.baseline.order
  if order:
    corpus = load(config)  # the same tokens, re-read (fast next to training)
    train_end, valid_end = corpus.bounds
    start = time.perf_counter()
    kn = KneserNey(corpus.ids[:train_end], order, len(corpus.words))
    p = kn.prob(corpus.ids, valid_end, len(corpus.ids))
    nll = float(-np.mean(np.log(p)))
    values.update(
      kn_order=float(order),
      kn_loss=nll,
      kn_bits_per_word=nll / math.log(2.0),
      kn_perplexity=math.exp(nll),
    )
    # Printed, not recorded: the record must not depend on timing.
    print(f"Kneser-Ney {order}-gram: {time.perf_counter() - start:.1f} s")
  return values


def evaluate(
  model: WordLanguageModel,
  params: Any,
  batches: Any,
  config: ml_collections.ConfigDict,
) -> dict[str, float]:
  """loss, bits_per_word, perplexity and tokens over consecutive `batches`
  (the carry passed from one to the next)."""
  apply = jax.jit(model.apply)
  carry = model.initialize_carry(config.data.eval_batch_size)
  nll, count = 0.0, 0.0
  for batch in batches:
    out, carry = apply({"params": params}, batch, carry=carry)
    _, metrics = loss_and_metrics(out, batch)
    nll += float(metrics["loss"][0])
    count += float(metrics["loss"][1])
  loss = nll / max(count, 1.0)
  return {
    "loss": loss,
    "bits_per_word": loss / math.log(2.0),
    "perplexity": math.exp(loss),
    "tokens": count,
  }


def report(
  config: ml_collections.ConfigDict,
  model: WordLanguageModel,
  params: Any,
  datasets: Datasets,
  results: dict[str, Any],
) -> dict[str, Any]:
  """Prints validation and test perplexity beside the n-gram's."""
  del config, model, params
  if "eval/loss" in results:
    print(
      f"validation perplexity {math.exp(results['eval/loss']):.2f} at step "
      f"{results['step']} ({int(results.get('eval/tokens', 0)):,} of "
      f"{datasets.info['valid_tokens']:,} validation words)"
    )
  if "test/perplexity" in results:
    line = f"test perplexity {results['test/perplexity']:.2f}"
    if "test/kn_perplexity" in results:
      line += (
        f"; interpolated modified Kneser-Ney {int(results['test/kn_order'])}-gram "
        f"{results['test/kn_perplexity']:.2f} (same split and vocabulary)"
      )
    print(line)
  return {}
