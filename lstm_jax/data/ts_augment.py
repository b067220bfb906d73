"""Training-time augmentation of time-series batches: jitter and scaling.

The two label-preserving transforms of Um et al. (2017) and Iwana & Uchida
(2021, "An empirical survey of data augmentation for time series
classification"): additive Gaussian noise at every real step ("jitter") and
one multiplicative factor per series and channel ("scaling"). Both act on the
normalised inputs, so a std is in units of the channel's training std.

Draws are a pure function of (seed, step), so a resumed run sees the same
batches; padding stays exactly zero (the mask is unchanged).
"""

from __future__ import annotations

import numpy as np

Batch = dict[str, np.ndarray]
_STREAM = 0x7A06  # separates these draws from the epoch permutations


def jitter_scale(
  batch: Batch, seed: int, step: int, jitter_std: float, scale_std: float
) -> Batch:
  """A copy of `batch` with scaled and jittered `inputs`.

  Args:
    batch: "inputs" <float32>[B, T, C], "mask" <bool>[B, T], others kept.
    seed: the run's seed.
    step: the training step (one draw per step).
    jitter_std: std of the additive N(0, jitter_std^2) noise per value.
    scale_std: std of the factor N(1, scale_std^2) per series and channel.

  Returns:
    The batch with new "inputs" (<float32>[B, T, C], zero where mask is false);
    the input batch itself when both stds are 0.
  """
  if jitter_std <= 0 and scale_std <= 0:
    return batch
  x = batch["inputs"].astype(np.float32)
  rng = np.random.default_rng([seed, step, _STREAM])
  b, _, c = x.shape
  if scale_std > 0:
    x = x * rng.normal(1.0, scale_std, (b, 1, c)).astype(np.float32)
  if jitter_std > 0:
    x = x + rng.normal(0.0, jitter_std, x.shape).astype(np.float32)
  x = np.where(batch["mask"][..., None], x, 0.0).astype(np.float32)
  return {**batch, "inputs": x}
