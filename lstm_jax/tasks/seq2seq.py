"""Sequence to sequence on generated data: multi-digit addition or reversal.

Config (declared in `experiments/seq2seq.py`): `data.problem` ("addition":
"123+45" -> "168"; "addition_lsb": the same numbers written least-significant
digit first, "321+54" -> "861"; "reversal": "abc" -> "cba"), the training lengths
`data.min_len`..`data.max_len` (digits of the longer operand, or letters),
`data.extra` (held-out lengths beyond training), batch sizes; `model.lstm`
(encoder), `model.decoder_lstm` (unidirectional, as many layers),
`model.embed_dim`, `model.attention`; `decode.temperature`.

Training is teacher-forced; batches are pure f(seed, step)
(`data.synthetic.seq2seq_batch`). Metrics: `loss` (cross-entropy per target
token incl. EOS), `token_accuracy` and `exact_match` (every target token and
the EOS right under teacher forcing, which for greedy decoding is the same as
decoding the whole answer right: each greedy step then sees the true prefix).

The final evaluation (split "test", best checkpoint by validation
`exact_match`) decodes the held-out set (`synthetic.seq2seq_heldout`, its own
random stream) with `models.seq2seq.generate` (greedy at temperature 0) and
reports `exact_match` over the training lengths, `exact_match/longer` over
the `data.extra` longer lengths, and `exact_match/len_<n>` for each length.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from lstm_jax.data import synthetic
from lstm_jax.errors import ConfigError
from lstm_jax.models.seq2seq import ATTENTION, Seq2Seq, generate
from lstm_jax.nn.layers import lstm_from_config
from lstm_jax.tasks.base import Batch, Datasets, Metrics

TOKEN_METRIC = "loss"  # a "token" is one target token
RESUMABLE_KEYS = ("data.test_per_length", "decode.*")
EVAL_STEP = 2**31


def validate(config: ml_collections.ConfigDict) -> None:
  d, m = config.data, config.model
  if d.problem not in synthetic.SEQ2SEQ_TASKS:
    raise ConfigError(
      f"data.problem must be one of {synthetic.SEQ2SEQ_TASKS}, got {d.problem!r}"
    )
  if not 1 <= d.min_len <= d.max_len:
    raise ConfigError(
      f"need 1 <= data.min_len <= data.max_len, got {d.min_len} and {d.max_len}"
    )
  for key in ("batch_size", "eval_batches", "test_per_length"):
    if d[key] < 1:
      raise ConfigError(f"data.{key} must be >= 1, got {d[key]}")
  if d.extra < 0:
    raise ConfigError(f"data.extra must be >= 0, got {d.extra}")
  if m.attention not in ATTENTION:
    raise ConfigError(
      f"model.attention must be one of {ATTENTION}, got {m.attention!r}"
    )
  if m.decoder_lstm.bidirectional:
    raise ConfigError("model.decoder_lstm.bidirectional must be False")
  if m.decoder_lstm.num_layers != m.lstm.num_layers:
    raise ConfigError(
      f"model.decoder_lstm.num_layers ({m.decoder_lstm.num_layers}) must equal "
      f"model.lstm.num_layers ({m.lstm.num_layers})"
    )
  if not config.decode.temperature >= 0:
    raise ConfigError(
      f"decode.temperature must be >= 0, got {config.decode.temperature}"
    )


def make_datasets(config: ml_collections.ConfigDict) -> Datasets:
  d = config.data

  def batch(step: int) -> Batch:
    return synthetic.seq2seq_batch(
      config.seed, step, d.batch_size, d.problem, d.min_len, d.max_len
    )

  return Datasets(
    train_batch=batch,
    eval_batches=lambda: (batch(EVAL_STEP + i) for i in range(d.eval_batches)),
    info={
      "generator": f"seq2seq/{d.problem}",
      "vocab_size": synthetic.SEQ2SEQ_VOCAB,
      "min_len": d.min_len,
      "max_len": d.max_len,
    },
  )


def make_model(config: ml_collections.ConfigDict, info: dict[str, Any]) -> Seq2Seq:
  m = config.model
  return Seq2Seq(
    lstm=lstm_from_config(m.lstm),
    decoder=lstm_from_config(m.decoder_lstm),
    vocab_size=info["vocab_size"],
    embed_dim=m.embed_dim,
    attention=m.attention or None,
  )


def loss_and_metrics(logits: jax.Array, batch: Batch) -> tuple[jax.Array, Metrics]:
  """Teacher-forced cross-entropy per real target token; exact match per row."""
  mask, targets = batch["mask"], batch["targets"]
  nll = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
  tokens = jnp.sum(mask).astype(jnp.float32)
  nll_sum = jnp.sum(jnp.where(mask, nll, 0.0))
  right = (jnp.argmax(logits, -1) == targets) | ~mask
  rows = jnp.asarray(targets.shape[0], jnp.float32)
  metrics = {
    "loss": (nll_sum, tokens),
    "token_accuracy": (
      jnp.sum(jnp.where(mask, right, False)).astype(jnp.float32),
      tokens,
    ),
    "exact_match": (jnp.sum(jnp.all(right, -1)).astype(jnp.float32), rows),
  }
  return nll_sum / jnp.maximum(tokens, 1.0), metrics


def decode_heldout(
  config: ml_collections.ConfigDict, model: Seq2Seq, params: Any
) -> tuple[Batch, np.ndarray]:
  """The held-out set and its decoded tokens <int32>[N, U] (PAD after EOS)."""
  d = config.data
  held = synthetic.seq2seq_heldout(
    config.seed, d.test_per_length, d.problem, d.min_len, d.max_len, d.extra
  )
  inputs = {k: held[k] for k in ("inputs", "inputs_mask")}
  max_len = held["targets"].shape[1]
  temperature = config.decode.temperature
  rng = jax.random.key(config.seed) if temperature > 0 else None
  run = jax.jit(
    lambda p, b, r: generate(model, {"params": p}, b, max_len, temperature, r)[0]
  )
  return held, np.asarray(run(params, inputs, rng))


def final_evaluation(config, model, params, datasets, workdir=None) -> dict[str, float]:
  """Exact match of decoded answers: training lengths, longer ones, each length."""
  del datasets, workdir
  held, tokens = decode_heldout(config, model, params)
  # Exact: the decoded ids equal the target ids (with EOS, then PAD) everywhere.
  exact = np.all(tokens == held["targets"], axis=1)
  lengths = held["length"]
  seen = lengths <= config.data.max_len
  out = {"exact_match": float(exact[seen].mean())}
  if config.data.extra:
    out["exact_match/longer"] = float(exact[~seen].mean())
  for n in np.unique(lengths):
    out[f"exact_match/len_{int(n)}"] = float(exact[lengths == n].mean())
  return out


def report(config, model, params, datasets, results) -> dict[str, Any]:
  del datasets
  if "test/exact_match" in results:
    print(
      f"{config.data.problem} {config.data.min_len}-{config.data.max_len}: held-out "
      f"exact match {results['test/exact_match']:.4f}; longer: "
      f"{results.get('test/exact_match/longer', float('nan')):.4f}"
    )
    for line in examples(config, model, params):
      print(f"  {line}")
  return {}


def shown(ids: np.ndarray) -> str:
  """A decoded answer as printed: its text up to EOS, with "<eos>" for an
  answer that ends before its first character and "<pad>" / "<bos>" for
  those tokens if the model emits them before EOS (`synthetic.decode`
  would drop them and print nothing)."""
  markers = {synthetic.PAD: "<pad>", synthetic.BOS: "<bos>"}
  out = []
  for i in np.asarray(ids).tolist():
    if i == synthetic.EOS:
      break
    out.append(markers.get(i) or synthetic.decode([i]))
  return "".join(out) or "<eos>"


def examples(
  config: ml_collections.ConfigDict, model: Seq2Seq, params: Any, count: int = 4
) -> list[str]:
  """`count` held-out problems spread over the lengths, each as
  "<source> -> <greedy answer> (target <answer>)"."""
  held, tokens = decode_heldout(config, model, params)
  lines = []
  for i in np.linspace(0, len(tokens) - 1, count).astype(int):
    src, want = (
      synthetic.decode(held["inputs"][i]),
      synthetic.decode(held["targets"][i]),
    )
    lines.append(f"{src} -> {shown(tokens[i])} (target {want})")
  return lines
