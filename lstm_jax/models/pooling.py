"""Sequence readouts over LSTM outputs that never look at padding.

Pure functions of `<float>[batch, time, features]` outputs and a
`<bool>[batch, time]` mask (true on real steps). Shared by the classifier and
the forecaster.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array
POOLINGS = ("mean", "max", "last")


def masked_mean(y: Array, mask: Array) -> Array:
  """<float>[batch, features] mean over real steps (0 for an empty row)."""
  m = mask[..., None].astype(y.dtype)
  return (y * m).sum(1) / jnp.maximum(m.sum(1), 1)


def masked_max(y: Array, mask: Array) -> Array:
  """<float>[batch, features] max over real steps (0 for an empty row)."""
  neg = jnp.finfo(y.dtype).min
  out = jnp.where(mask[..., None], y, neg).max(1)
  return jnp.where(mask.any(1)[:, None], out, 0)


def last_real(y: Array, mask: Array, num_directions: int = 1) -> Array:
  """The state that has read the whole row, per direction.

  Forward features (the first 1/num_directions of the feature axis) at the
  last real step; for a bidirectional output, the backward features at the
  first real step (where the reversed pass ends). 0 for an empty row.
  """
  t = jnp.arange(y.shape[1])
  last = jnp.max(jnp.where(mask, t, -1), axis=1)
  first = jnp.min(jnp.where(mask, t, y.shape[1]), axis=1)
  empty = last < 0
  last, first = jnp.maximum(last, 0), jnp.minimum(first, y.shape[1] - 1)
  width = y.shape[-1] // num_directions
  fwd = jnp.take_along_axis(y[..., :width], last[:, None, None], 1)[:, 0]
  parts = [fwd]
  if num_directions == 2:
    parts.append(jnp.take_along_axis(y[..., width:], first[:, None, None], 1)[:, 0])
  out = jnp.concatenate(parts, -1)
  return jnp.where(empty[:, None], 0, out)


def pool(y: Array, mask: Array | None, method: str, num_directions: int = 1) -> Array:
  """Readout `method` ("mean", "max" or "last") of <float>[batch, time, F]."""
  if mask is None:
    mask = jnp.ones(y.shape[:2], bool)
  if method == "mean":
    return masked_mean(y, mask)
  if method == "max":
    return masked_max(y, mask)
  if method == "last":
    return last_real(y, mask, num_directions)
  raise ValueError(f"pooling must be one of {POOLINGS}, got {method!r}")
