"""Output layers of a language model: full, sampled and adaptive softmax.

Thin Flax shells over `lstm_jax.ops.softmax`. Each is called as
`layer(h, targets=None, deterministic=True)` on `h [batch, time, D]`:

* with `targets` and `deterministic=False` (training), it returns the
  per-position loss `[batch, time]` (negative log-likelihood, or its sampled
  estimate), so the sampled softmax never builds `[batch, time, V]`;
* otherwise (evaluation, sampling) it returns `[batch, time, V_out]` logits
  whose softmax is the model's distribution over the vocabulary: the exact
  full softmax for "sampled" (the loss is only sampled in training), the
  log-probabilities for "adaptive".

`padded_size` (full and sampled): the output matrix has this many columns
(the vocabulary padded to a multiple of the mesh's "model" axis, see
`lstm_jax.parallel.sharding.padded_vocab`) and the padding columns' logits
are -inf, so losses and metrics are those of the `vocab_size` real words.
Parameters are `weights [V_out, D]` (one row per word, the embedding's
layout) and `bias [V_out]`, split over "model" by the sharding rules;
`param_dtype` may be bfloat16 (storage: the products are computed in
float32).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from lstm_jax.ops import softmax as ops

Array = jax.Array
SOFTMAXES = ("full", "sampled", "adaptive")


def _training(targets: Array | None, deterministic: bool) -> bool:
  return targets is not None and not deterministic


class FullSoftmax(nn.Module):
  """`h @ weights.T + bias` over the (padded) vocabulary.

  Attributes:
    vocab_size: real words; padded_size: rows stored (0 = vocab_size);
    param_dtype: storage dtype of weights and bias.
  """

  vocab_size: int
  padded_size: int = 0
  param_dtype: Any = jnp.float32

  def params_of(self, d: int) -> tuple[Array, Array]:
    width = self.padded_size or self.vocab_size
    init = nn.initializers.normal(d**-0.5)
    weights = self.param("weights", init, (width, d), self.param_dtype)
    bias = self.param("bias", nn.initializers.zeros, (width,), self.param_dtype)
    return weights, bias

  @nn.compact
  def __call__(
    self, h: Array, targets: Array | None = None, deterministic: bool = True
  ) -> Array:
    """Logits [..., V_out] (padding at -inf), or the NLL [...] in training."""
    weights, bias = self.params_of(h.shape[-1])
    logits = ops.full_logits(h, weights, bias, self.vocab_size)
    if not _training(targets, deterministic):
      return logits
    log_p = jax.nn.log_softmax(logits, -1)
    return -jnp.take_along_axis(log_p, targets[..., None], -1)[..., 0]


class SampledSoftmax(FullSoftmax):
  """Sampled softmax in training, the exact full softmax otherwise.

  Attributes (besides FullSoftmax's):
    num_samples: S candidates per step from the log-uniform proposal (word
      ids must be ranked by frequency, id 0 the most frequent), drawn with
      the "dropout" RNG stream (the train step's per-step key).
  """

  num_samples: int = 8192

  @nn.compact
  def __call__(
    self, h: Array, targets: Array | None = None, deterministic: bool = True
  ) -> Array:
    """Logits [..., V_out] (padding at -inf), or the sampled NLL [...]."""
    weights, bias = self.params_of(h.shape[-1])
    if not _training(targets, deterministic):
      return ops.full_logits(h, weights, bias, self.vocab_size)
    key = self.make_rng("dropout")
    samples = ops.sample_log_uniform(key, self.num_samples, self.vocab_size)
    log_q = ops.log_uniform_log_prob(samples, self.vocab_size)
    return ops.sampled_softmax_nll(h, weights, bias, targets, samples, log_q)


class AdaptiveSoftmax(nn.Module):
  """Adaptive softmax (Grave et al. 2017) over frequency-ranked ids.

  Attributes:
    vocab_size: words.
    cutoffs: increasing starts of the tail clusters, each in (0, vocab_size).
    div_value: tail cluster i projects to `D // div_value**(i+1)` (>= 1).
    param_dtype: storage dtype.

  Parameters: `head_kernel [D, c_0 + n]`, `head_bias [c_0 + n]`, and per
  cluster `tail_{i}_proj [D, d_i]`, `tail_{i}_out [d_i, size_i]`.
  """

  vocab_size: int
  cutoffs: Sequence[int] = ()
  div_value: float = 4.0
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(
    self, h: Array, targets: Array | None = None, deterministic: bool = True
  ) -> Array:
    """Log-probabilities [..., vocab_size], or the exact NLL [...] in training."""
    d, cutoffs = h.shape[-1], tuple(self.cutoffs)
    init = nn.initializers.lecun_normal()
    head_width = cutoffs[0] + len(cutoffs)
    head = self.param("head_kernel", init, (d, head_width), self.param_dtype)
    head_bias = self.param(
      "head_bias", nn.initializers.zeros, (head_width,), self.param_dtype
    )
    tails = []
    for i, (start, end) in enumerate(ops.cluster_bounds(cutoffs, self.vocab_size)[1:]):
      dim = max(1, int(d // self.div_value ** (i + 1)))
      proj = self.param(f"tail_{i}_proj", init, (d, dim), self.param_dtype)
      out = self.param(f"tail_{i}_out", init, (dim, end - start), self.param_dtype)
      tails.append((proj, out))
    if _training(targets, deterministic):
      return ops.adaptive_nll(h, targets, head, head_bias, tails, cutoffs)
    return ops.adaptive_log_probs(h, head, head_bias, tails, cutoffs)


def check_cutoffs(cutoffs: Sequence[int], vocab_size: int) -> str | None:
  """What is wrong with adaptive-softmax `cutoffs` for `vocab_size`, or None."""
  edges = [0, *cutoffs, vocab_size]
  if not cutoffs or any(b <= a for a, b in zip(edges[:-1], edges[1:])):
    return (
      f"must be a non-empty increasing list of ids in (0, {vocab_size}) "
      f"(the vocabulary size), got {list(cutoffs)}"
    )
  return None
