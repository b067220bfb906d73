"""Output layers for huge vocabularies, as pure functions.

Sampled softmax (Jean et al. 2015; the BIG LSTM of Jozefowicz et al. 2016)
----------------------------------------------------------------------------
Training scores the target and `S` candidate words drawn (with replacement,
shared by every position of the batch) from a proposal `Q`, here the
log-uniform (Zipf) distribution over frequency-ranked word ids::

  Q(k) = log((k + 2) / (k + 1)) / log(V + 1),   k = 0 .. V-1

The normaliser `Z = sum_k exp(s_k)` is replaced by the importance-sampling
estimate::

  Z_hat = exp(s_t) + sum_{j in samples, j != t} exp(s_j - log(S * Q(j)))

(the "logQ correction" on the sampled logits; a sample equal to the target,
an "accidental hit", is removed, since the target is counted exactly).
`E[Z_hat] = Z` exactly, and the loss `log Z_hat - s_t` and its gradient
converge to the full softmax's as S grows (the gradient is a ratio estimate:
bias O(1/S), spread O(1/sqrt(S))). TensorFlow's `sampled_softmax_loss`
corrects the target's logit as well (`s_t - log(S * Q(t))`), which makes its
gradient on the target off by the target's probability however large S is;
here the target's logit is left alone (Bengio & Senecal 2008).

Adaptive softmax (Grave et al. 2017)
------------------------------------
Word ids sorted by frequency are split by `cutoffs` = (c_0 < c_1 < ...) into
a head [0, c_0) and tail clusters [c_0, c_1), ..., [c_last, V). The head is a
softmax over the c_0 frequent words plus one entry per tail cluster; cluster
i is a softmax over its words computed from a projection of h to
`D / div**(i+1)` dimensions, so::

  log p(w) = log p_head(w)                              for w in the head
  log p(w) = log p_head(cluster i) + log p_i(w | h)     for w in cluster i

Under `jit` (static shapes) every position computes every cluster's logits;
the saving is the smaller projections, not skipped positions.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

Array = jax.Array


def log_uniform_log_prob(ids: Array, vocab_size: int) -> Array:
  """`log Q(ids)` of the log-uniform (Zipf) proposal over `vocab_size` ids."""
  k = jnp.asarray(ids, jnp.float32)
  return jnp.log(jnp.log1p(1.0 / (k + 1.0))) - jnp.log(jnp.log(vocab_size + 1.0))


def sample_log_uniform(key: Array, num_samples: int, vocab_size: int) -> Array:
  """`num_samples` ids drawn with replacement from the log-uniform proposal.

  Inverse CDF: `P(id <= k) = log(k + 2) / log(V + 1)`, so
  `id = floor(exp(u * log(V + 1))) - 1` for `u ~ U[0, 1)`.

  Returns:
    <int32>[num_samples] ids in [0, vocab_size).
  """
  u = jax.random.uniform(key, (num_samples,))
  ids = jnp.floor(jnp.exp(u * jnp.log(vocab_size + 1.0))) - 1.0
  return jnp.clip(ids, 0, vocab_size - 1).astype(jnp.int32)


def sampled_softmax_nll(
  h: Array,
  weights: Array,
  bias: Array,
  targets: Array,
  samples: Array,
  log_q: Array,
) -> Array:
  """Sampled-softmax loss `log Z_hat - s_t` per position (module docstring).

  Args:
    h: [..., D] inputs of the output layer.
    weights: [V, D] output embedding, one row per word (V may include
      padding rows; samples and targets never point at them).
    bias: [V] output bias.
    targets: <int>[...] target ids.
    samples: <int32>[S] candidate ids, shared by every position.
    log_q: [S] `log Q(samples)`, the proposal's log-probabilities.

  Returns:
    [...] float32 negative log-likelihood estimates.
  """
  h = h.astype(jnp.float32)
  w_true = jnp.take(weights, targets, axis=0).astype(jnp.float32)  # [..., D]
  b_true = jnp.take(bias, targets).astype(jnp.float32)
  true_logit = jnp.sum(h * w_true, -1) + b_true
  w_s = jnp.take(weights, samples, axis=0).astype(jnp.float32)  # [S, D]
  log_count = jnp.log(jnp.float32(samples.shape[0])) + log_q
  b_s = jnp.take(bias, samples).astype(jnp.float32)
  sampled = jnp.einsum("...d,sd->...s", h, w_s) + b_s - log_count
  hit = samples == targets[..., None]
  sampled = jnp.where(hit, -jnp.inf, sampled)
  both = jnp.concatenate([true_logit[..., None], sampled], -1)
  return jax.nn.logsumexp(both, -1) - true_logit


def full_logits(h: Array, weights: Array, bias: Array, vocab_size: int) -> Array:
  """`h @ weights.T + bias`, with padding entries (>= vocab_size) at -inf.

  Args:
    h: [..., D]; weights: [V_padded, D]; bias: [V_padded].

  Returns:
    [..., V_padded] float32 logits whose softmax is the unpadded model's
    (exp(-inf) = 0), so the loss and accuracy are those of `vocab_size` words.
  """
  logits = jnp.einsum(
    "...d,vd->...v", h.astype(jnp.float32), weights.astype(jnp.float32)
  )
  return mask_padding(logits + bias.astype(jnp.float32), vocab_size)


def mask_padding(logits: Array, vocab_size: int) -> Array:
  """[..., V_padded] -> the same with entries >= `vocab_size` at -inf."""
  if logits.shape[-1] == vocab_size:
    return logits
  real = jnp.arange(logits.shape[-1]) < vocab_size
  return jnp.where(real, logits, -jnp.inf)


def cluster_bounds(cutoffs: Sequence[int], vocab_size: int) -> list[tuple[int, int]]:
  """[(start, end)] of the head and every tail cluster."""
  edges = [0, *cutoffs, vocab_size]
  return list(zip(edges[:-1], edges[1:]))


def _head_and_tails(
  h: Array, head_kernel: Array, head_bias: Array, tails: Sequence[tuple[Array, Array]]
) -> tuple[Array, list[Array]]:
  h = h.astype(jnp.float32)
  head = jax.nn.log_softmax(h @ head_kernel.astype(jnp.float32) + head_bias, -1)
  outs = [
    jax.nn.log_softmax((h @ p.astype(jnp.float32)) @ o.astype(jnp.float32), -1)
    for p, o in tails
  ]
  return head, outs


def adaptive_log_probs(
  h: Array,
  head_kernel: Array,
  head_bias: Array,
  tails: Sequence[tuple[Array, Array]],
  cutoffs: Sequence[int],
) -> Array:
  """Every word's log-probability under the adaptive softmax.

  Args:
    h: [..., D].
    head_kernel: [D, c_0 + n_tails]; head_bias: [c_0 + n_tails].
    tails: per cluster i, (projection [D, d_i], output [d_i, size_i]).
    cutoffs: (c_0, ..., c_{n_tails - 1}), increasing, the clusters' starts.

  Returns:
    [..., V] float32 log-probabilities (V = c_0 + sum of cluster sizes).
  """
  head, outs = _head_and_tails(h, head_kernel, head_bias, tails)
  c0 = cutoffs[0]
  parts = [head[..., :c0]]
  parts += [head[..., c0 + i, None] + out for i, out in enumerate(outs)]
  return jnp.concatenate(parts, -1)


def adaptive_nll(
  h: Array,
  targets: Array,
  head_kernel: Array,
  head_bias: Array,
  tails: Sequence[tuple[Array, Array]],
  cutoffs: Sequence[int],
) -> Array:
  """`-log p(targets)` under the adaptive softmax without building [..., V].

  Args: as `adaptive_log_probs`, plus targets <int>[...].

  Returns:
    [...] float32, equal to `-take(adaptive_log_probs(...), targets)`.
  """
  head, outs = _head_and_tails(h, head_kernel, head_bias, tails)
  vocab = cutoffs[0] + sum(o.shape[-1] for o in outs)
  bounds = cluster_bounds(cutoffs, vocab)
  start, end = bounds[0]
  pick = lambda lp, i: jnp.take_along_axis(lp, i[..., None], -1)[..., 0]  # noqa: E731
  nll = -pick(head, jnp.clip(targets, 0, end - 1))
  for i, (out, (start, end)) in enumerate(zip(outs, bounds[1:])):
    inside = (targets >= start) & (targets < end)
    lp = head[..., cutoffs[0] + i] + pick(
      out, jnp.clip(targets - start, 0, end - start - 1)
    )
    nll = jnp.where(inside, -lp, nll)
  return nll
