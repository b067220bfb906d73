"""Word language model: embedding -> LSTM stack -> hidden state h -> output
layer, with the loss computed inside the model.

The output layer over a word vocabulary is the expensive part, and sampled
or adaptive softmaxes need its parameters and a random key, so the model
computes the loss itself: `__call__` returns `{"nll": [batch, time]}`, the
per-word NLL (0 on padding; the task sums it into metrics), and `log_probs` the full
`[batch, time, vocab]` log-probabilities. Both go through `output_loss` /
`output_log_probs`, which switch on `softmax`: "full" (logits = h @ W.T + b
over the whole vocabulary), "sampled" (`lstm_jax.ops.softmax`: a sampled
softmax loss in training, the full softmax in evaluation) or "adaptive"
(Grave et al. 2017, `lstm_jax.nn.softmax.AdaptiveSoftmax`: head and tail
clusters with their own parameters under `out/`; exact in training and
evaluation). The loss gets a random key in training
and `key=None` in evaluation, where an approximate loss (a sampled softmax)
must compute the exact one, so validation and test perplexities are exact.

The output weights `W` are `[vocab, D]` (one row per word, the embedding's
layout), the embedding table itself when `tie_embeddings` (with a projection
of h to `embed_dim` first if the LSTM's output width differs). The carry and
its reset at segment boundaries are `models.lm`'s (`LMCarry`).

`padded_vocab` rows are stored (the vocabulary padded to a multiple of the
mesh's "model" axis, `lstm_jax.parallel.sharding.padded_vocab`, so the
embedding and output matrices can be split); the padding rows are never
looked up and their logits are -inf, so every loss and log-probability is
that of the `vocab_size` real words. `param_dtype` is the storage dtype of
the embedding and output matrices (bfloat16 halves the largest parameters;
the products are computed in float32).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from lstm_jax.models.lm import LMCarry, _last_segment
from lstm_jax.nn.layers import LSTM
from lstm_jax.nn.softmax import AdaptiveSoftmax
from lstm_jax.ops import regularisation as reg
from lstm_jax.ops import softmax as ops

Array = jax.Array
SOFTMAXES = ("full", "sampled", "adaptive")


def full_log_probs(
  h: Array, *, weights: Array, bias: Array, vocab_size: int | None = None
) -> Array:
  """<float32>[batch, time, rows] log-softmax of `h @ weights.T + bias`.

  Args:
    h: <float>[batch, time, D] hidden states.
    weights: [rows, D] output embedding; bias: [rows].
    vocab_size: the real words; rows beyond it (padding) get -inf.
  """
  logits = ops.full_logits(h, weights, bias, vocab_size or weights.shape[0])
  return jax.nn.log_softmax(logits, axis=-1)


def full_loss(
  h: Array,
  targets: Array,
  mask: Array,
  *,
  weights: Array,
  bias: Array,
  key: Array | None = None,
  vocab_size: int | None = None,
  num_samples: int = 0,
) -> Array:
  """Per-word NLL of `targets` under the full softmax.

  Args:
    h: <float>[batch, time, D]; targets: <int32>[batch, time];
    mask: <bool>[batch, time], false on padding.
    weights, bias, vocab_size: as `full_log_probs`. key, num_samples: unused
      (the full softmax is exact).

  Returns:
    <float32>[batch, time] -log P(target), 0 where `mask` is false.
  """
  del key, num_samples
  logp = full_log_probs(h, weights=weights, bias=bias, vocab_size=vocab_size)
  nll = -jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]
  return jnp.where(mask, nll, 0.0)


def sampled_loss(
  h: Array,
  targets: Array,
  mask: Array,
  *,
  weights: Array,
  bias: Array,
  key: Array | None = None,
  vocab_size: int | None = None,
  num_samples: int = 0,
) -> Array:
  """`full_loss`, but with `key` (training) the sampled-softmax estimate:
  `num_samples` log-uniform candidates shared by the batch
  (`lstm_jax.ops.softmax.sampled_softmax_nll`; ids ranked by frequency)."""
  if key is None:
    return full_loss(
      h, targets, mask, weights=weights, bias=bias, vocab_size=vocab_size
    )
  vocab = vocab_size or weights.shape[0]
  samples = ops.sample_log_uniform(key, num_samples, vocab)
  log_q = ops.log_uniform_log_prob(samples, vocab)
  nll = ops.sampled_softmax_nll(h, weights, bias, targets, samples, log_q)
  return jnp.where(mask, nll, 0.0)


_LOSSES = {"full": full_loss, "sampled": sampled_loss}
_LOG_PROBS = {"full": full_log_probs, "sampled": full_log_probs}


def output_loss(
  softmax: str, h: Array, targets: Array, mask: Array, **kw: Any
) -> Array:
  """<float32>[batch, time] per-word NLL of the output layer named `softmax`
  (see `full_loss`)."""
  return _LOSSES[softmax](h, targets, mask, **kw)


def output_log_probs(softmax: str, h: Array, **kw: Any) -> Array:
  """<float32>[batch, time, vocab] of the output layer named `softmax`."""
  return _LOG_PROBS[softmax](h, **kw)


class WordLanguageModel(nn.Module):
  """Word-level LSTM language model.

  Attributes:
    vocab_size: number of words (from the data).
    lstm: the unidirectional LSTM stack; its `dropout` also applies to the
      last layer's output (its locked `output_dropout` and AR/TAR act inside
      it).
    embed_dim: embedding width.
    tie_embeddings: the output weights are the embedding table.
    embed_dropout: drop whole words (embedding rows) at this rate per batch.
    softmax: the output layer, one of `SOFTMAXES`.
    num_samples: "sampled": candidates per training step.
    cutoffs, div_value: "adaptive": the tail clusters' first ids, and the
      factor by which each cluster's projection narrows.
    padded_vocab: rows stored (0 = vocab_size), see the module docstring.
    param_dtype: storage dtype of the embedding and output layer.
  """

  vocab_size: int
  lstm: LSTM
  embed_dim: int = 128
  tie_embeddings: bool = True
  embed_dropout: float = 0.0
  softmax: str = "full"
  num_samples: int = 8192
  cutoffs: tuple[int, ...] = ()
  div_value: float = 4.0
  padded_vocab: int = 0
  param_dtype: Any = jnp.float32

  def initialize_carry(self, batch: int) -> LMCarry:
    """Zero state for `batch` rows (no previous segment)."""
    return LMCarry(self.lstm.initialize_carry(batch), jnp.zeros((batch,), jnp.int32))

  def setup(self):
    rows, dtype = self.padded_vocab or self.vocab_size, self.param_dtype
    self.embed = nn.Embed(rows, self.embed_dim, param_dtype=dtype)
    if self.softmax == "adaptive":
      self.out = AdaptiveSoftmax(
        self.vocab_size, tuple(self.cutoffs), self.div_value, param_dtype=dtype
      )
    else:
      self.out_bias = self.param("out_bias", nn.initializers.zeros, (rows,), dtype)
    if not self.tie_embeddings and self.softmax != "adaptive":
      width = self.lstm.proj_size or self.lstm.hidden_size
      self.out_embed = self.param(
        "out_embed", nn.initializers.normal(width**-0.5), (rows, width), dtype
      )
    width = self.lstm.proj_size or self.lstm.hidden_size
    self.tie_proj = (
      nn.Dense(self.embed_dim, use_bias=False)
      if self.tie_embeddings and width != self.embed_dim
      else None
    )
    self.out_dropout = nn.Dropout(self.lstm.dropout)

  def hidden(
    self, batch: dict[str, Array], carry: LMCarry | None, deterministic: bool
  ) -> tuple[Array, LMCarry]:
    """<float32>[batch, time, D] inputs of the output layer, and the carry."""
    inputs = batch["inputs"]
    segment_ids = batch.get("segment_ids")
    if carry is None:
      carry = self.initialize_carry(inputs.shape[0])
    lstm_carry = carry.lstm
    if segment_ids is not None:  # a new segment at the window's first step
      new = (carry.segment != 0) & (segment_ids[:, 0] != carry.segment)
      lstm_carry = jax.tree.map(
        lambda a: jnp.where(new[:, None], jnp.zeros_like(a), a), lstm_carry
      )
    table = self.embed.embedding
    if self.embed_dropout > 0 and not deterministic:
      table = reg.embedding_dropout(self.make_rng("dropout"), self.embed_dropout, table)
    x = jnp.take(table, inputs, axis=0)
    y, finals = self.lstm(
      x,
      mask=batch.get("mask"),
      segment_ids=segment_ids,
      initial_carry=lstm_carry,
      deterministic=deterministic,
    )
    y = y.astype(jnp.float32)
    if self.lstm.dropout > 0:
      y = self.out_dropout(y, deterministic=deterministic)
    if self.tie_proj is not None:
      y = self.tie_proj(y)
    segment = carry.segment
    if segment_ids is not None:
      segment = _last_segment(segment_ids, segment)
    return y, LMCarry(finals, segment)

  def _weights(self) -> dict[str, Any]:
    weights = self.embed.embedding if self.tie_embeddings else self.out_embed
    return {"weights": weights, "bias": self.out_bias, "vocab_size": self.vocab_size}

  def __call__(
    self,
    batch: dict[str, Array],
    carry: LMCarry | None = None,
    deterministic: bool = True,
  ) -> tuple[dict[str, Array], LMCarry]:
    """The batch's summed next-word NLL.

    Args:
      batch: "inputs", "targets" <int32>[batch, time]; optional "mask"
        <bool>[batch, time] and "segment_ids" <int32>[batch, time] (0 =
        padding; the carry resets where the id changes).
      carry: state from the previous window; zeros if None.
      deterministic: disables dropout (and a sampled softmax's sampling).

    Returns:
      ({"nll": <float32>[batch, time]} per-word NLL, 0 on padding; the carry
      after the window).
    """
    h, carry = self.hidden(batch, carry, deterministic)
    mask = batch.get("mask")
    if mask is None:
      mask = jnp.ones(batch["targets"].shape, bool)
    if self.softmax == "adaptive":  # exact: the same in training and eval
      nll = self.out(h, batch["targets"], deterministic=False)
      return {"nll": jnp.where(mask, nll, 0.0)}, carry
    key = None if deterministic else self.make_rng("dropout")
    nll = output_loss(
      self.softmax,
      h,
      batch["targets"],
      mask,
      key=key,
      num_samples=self.num_samples,
      **self._weights(),
    )
    return {"nll": nll}, carry

  def log_probs(
    self, batch: dict[str, Array], carry: LMCarry | None = None
  ) -> tuple[Array, LMCarry]:
    """<float32>[batch, time, vocab] next-word log-probabilities (eval mode)."""
    h, carry = self.hidden(batch, carry, deterministic=True)
    if self.softmax == "adaptive":
      return self.out(h), carry
    return output_log_probs(self.softmax, h, **self._weights()), carry
