"""Normalisation of time series for classification (the UCR/UEA task).

Three ways (`NORMALIZATIONS`), named by `data.normalization`:

* "train": one per-channel mean and std over all real steps of the training
  series (`fit`, `apply`): statistics from the training split only.
* "series": each series z-normalised per channel over its own real steps
  (`normalize_each`), as the UCR archive ships most of its univariate sets
  and as Fawaz et al. (2019) preprocess the ones that are not. PLAID's raw
  currents span five orders of magnitude, so under one training scale most
  of its series are near-constant.
* "auto": "series" for univariate files, "train" for multivariate ones
  (`resolve`), whose channels' relative sizes carry the class.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

NORMALIZATIONS = ("auto", "train", "series")


def fit(series: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
  """Per-channel mean and std <float32>[C] over every step of `series`.

  A constant channel gets std 1 (it is only centred), not a division by zero.
  """
  allsteps = np.concatenate(series, axis=0).astype(np.float64)
  mean, std = allsteps.mean(0), allsteps.std(0)
  std = np.where(std > 0, std, 1.0)
  return mean.astype(np.float32), std.astype(np.float32)


def apply(series: Sequence[np.ndarray], mean: np.ndarray, std: np.ndarray):
  """Each series minus `mean`, over `std` (statistics from `fit`)."""
  return [((s - mean) / std).astype(np.float32) for s in series]


def normalize_each(series: Sequence[np.ndarray]) -> list[np.ndarray]:
  """Each series minus its own per-channel mean, over its own per-channel std.

  A constant channel of a series gets std 1 (it is only centred).
  """
  out = []
  for s in series:
    s64 = s.astype(np.float64)
    std = s64.std(0)
    out.append(((s64 - s64.mean(0)) / np.where(std > 0, std, 1.0)).astype(np.float32))
  return out


def resolve(normalization: str, num_channels: int) -> str:
  """What `normalization` means for this many channels: "train" or "series".

  "auto" z-normalises each univariate series on its own, as the UCR archive
  ships most univariate sets, and keeps one per-channel scale fit on the
  training part for multivariate ones, whose channels' relative sizes carry
  the class (UEA's sets ship unnormalised).
  """
  if normalization not in NORMALIZATIONS:
    raise ValueError(
      f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}"
    )
  if normalization == "auto":
    return "series" if num_channels == 1 else "train"
  return normalization
