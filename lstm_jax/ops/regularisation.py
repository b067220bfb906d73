"""Regularisers of an LSTM: the masks, sampled once outside the time loop.

Pure functions of a key and shapes; the Flax modules (`nn/layers.py`,
`models/lm.py`) call them in training mode only, so every method is the
identity in eval mode. Dropout masks are "inverted" (kept units scaled by
1 / (1 - rate)), so their expectation is 1 and nothing changes at eval.

* Variational (locked) dropout (Gal & Ghahramani, 2016): one mask per
  sequence and feature, shared by every step: `[batch, 1, features]`.
* Recurrent dropout: one `[batch, H]` mask applied to h_{t-1} before
  `h @ w_hh` at every step (the carry itself is not dropped).
* Zoneout (Krueger et al., 2017): per unit and step, keep the previous
  state instead of the new one: `c_t = z c_{t-1} + (1 - z) c'_t` with
  `z ~ Bernoulli(rate)`, `<bool>[batch, time, H]` (true = keep previous).
  In eval mode no unit is zoned out (the issue's "identity in eval"; the paper
  uses the expectation `rate c_{t-1} + (1 - rate) c'_t` at test time instead).
* Weight-drop / DropConnect on `w_hh` (Merity et al., 2017): one mask of the
  recurrent matrix per batch, shared by all rows and steps.
* Embedding dropout: whole rows of the embedding matrix (a dropped symbol is
  zero wherever it occurs in the batch), Merity et al. (2017).
* AR / TAR: `alpha mean(h^2)` on the dropped outputs of the last layer and
  `beta mean((h_t - h_{t-1})^2)` on the undropped ones, over real steps.

The scans take the recurrent and zoneout masks as inputs
(`lstm_jax.lstm_scan(recurrent_mask=, zoneout_c=, zoneout_h=)`), so the
fused path and the reference path implement the same definition.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array


def keep_mask(key: Array, rate: float, shape: tuple[int, ...]) -> Array:
  """<float32>[shape]: 0 with probability `rate`, else 1 / (1 - rate)."""
  if not 0.0 <= rate < 1.0:
    raise ValueError(f"dropout rate must be in [0, 1), got {rate}")
  keep = jax.random.bernoulli(key, 1.0 - rate, shape)
  return keep.astype(jnp.float32) / (1.0 - rate)


def locked_dropout(key: Array, rate: float, x: Array) -> Array:
  """Variational dropout of `x <float>[batch, time, features]`.

  One mask `[batch, 1, features]` per sequence, the same at every step.
  """
  mask = keep_mask(key, rate, (x.shape[0], 1, x.shape[-1]))
  return (x * mask).astype(x.dtype)


def recurrent_mask(key: Array, rate: float, batch: int, size: int) -> Array:
  """<float32>[batch, size] mask of h_{t-1} on the hidden-to-hidden path."""
  return keep_mask(key, rate, (batch, size))


def zoneout_mask(key: Array, rate: float, batch: int, time: int, size: int) -> Array:
  """<bool>[batch, time, size], true where the unit keeps its previous state."""
  if not 0.0 <= rate <= 1.0:
    raise ValueError(f"zoneout rate must be in [0, 1], got {rate}")
  return jax.random.bernoulli(key, rate, (batch, time, size))


def weight_drop(key: Array, rate: float, w: Array) -> Array:
  """DropConnect of a weight matrix: `w * mask`, one mask for the batch."""
  return (w * keep_mask(key, rate, w.shape)).astype(w.dtype)


def embedding_dropout(key: Array, rate: float, table: Array) -> Array:
  """Drops whole rows (symbols) of an embedding table `[vocab, features]`."""
  return (table * keep_mask(key, rate, (table.shape[0], 1))).astype(table.dtype)


def _real_mean(values: Array, real: Array | None) -> Array:
  """Mean of `values <float>[batch, time, F]` over real steps and features."""
  if real is None:
    return jnp.mean(values)
  w = real[..., None].astype(values.dtype)
  count = jnp.maximum(jnp.sum(w) * values.shape[-1], 1.0)
  return jnp.sum(values * w) / count


def activation_penalty(h: Array, real: Array | None = None) -> Array:
  """AR: mean(h^2) over the real steps of `h <float>[batch, time, F]`."""
  return _real_mean(jnp.square(h.astype(jnp.float32)), real)


def temporal_penalty(h: Array, real: Array | None = None) -> Array:
  """TAR: mean((h_t - h_{t-1})^2) over the pairs of adjacent real steps.

  Args:
    h: <float>[batch, time, F] (undropped) outputs.
    real: <bool>[batch, time] real steps, or None (all real).
  """
  h = h.astype(jnp.float32)
  diff = jnp.square(h[:, 1:] - h[:, :-1])
  pair = None if real is None else jnp.logical_and(real[:, 1:], real[:, :-1])
  return _real_mean(diff, pair)
