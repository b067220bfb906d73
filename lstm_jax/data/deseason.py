"""Seasonal adjustment by classical decomposition, fit on the training part.

  s = deseason.indices(train, m, "additive")     # <float64>[m]
  a = deseason.adjust(values, s, "additive")     # the seasonally adjusted series
  y = deseason.readjust(a[10:20], s, "additive", start=10)  # == values[10:20]

The trend is the centred moving average of one season (2 x m for an even m);
the index of position k = t mod m is the mean of the detrended values
(y_t - trend_t, or y_t / trend_t for "multiplicative") at that position,
centred to sum 0 (mean 1). This is `statsmodels.tsa.seasonal_decompose`'s
seasonal component, per position. The forecasting task removes the indices
of its training part from the whole series, lets the model forecast the
adjusted series, and puts them back: the deseasonalised LSTM of Hewamalage,
Bergmeir and Bandara (IJF 2021), which found seasonal adjustment the most
useful preprocessing for RNN forecasters on seasonal series. Positions count
from the series' first value, so the indices line up wherever a window starts.
"""

from __future__ import annotations

import numpy as np

from lstm_jax.errors import DataError

KINDS = ("additive", "multiplicative")


def indices(train: np.ndarray, season: int, kind: str) -> np.ndarray:
  """<float64>[season] the seasonal index of each position, from `train`.

  Args:
    train: <float>[n] the training part (n >= 2 seasons + 1).
    season: the period m >= 2.
    kind: "additive" (indices sum to 0) or "multiplicative" (mean 1; every
      value must be positive).
  """
  z = np.asarray(train, np.float64)
  m = season
  if kind not in KINDS:
    raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
  if len(z) < 2 * m + 1:
    raise DataError(
      f"seasonal adjustment needs at least {2 * m + 1} training values for "
      f"season {m}, got {len(z)}"
    )
  if kind == "multiplicative" and np.any(z <= 0):
    raise DataError("a multiplicative seasonal adjustment needs positive values")
  weights = np.r_[0.5, np.ones(m - 1), 0.5] / m if m % 2 == 0 else np.ones(m) / m
  trend = np.convolve(z, weights, mode="valid")
  t = np.arange(len(trend)) + (len(weights) - 1) // 2
  detrended = z[t] / trend if kind == "multiplicative" else z[t] - trend
  s = np.array([detrended[t % m == k].mean() for k in range(m)])
  return s / s.mean() if kind == "multiplicative" else s - s.mean()


def adjust(values: np.ndarray, s: np.ndarray, kind: str, start: int = 0):
  """`values` (positions start, start+1, ...) with the indices removed."""
  v = np.asarray(values, np.float64)
  idx = s[(start + np.arange(len(v))) % len(s)]
  return v / idx if kind == "multiplicative" else v - idx


def readjust(adjusted: np.ndarray, s: np.ndarray, kind: str, start: int = 0):
  """The inverse of `adjust`: the indices of positions start, ... put back."""
  a = np.asarray(adjusted, np.float64)
  idx = s[(start + np.arange(a.shape[-1])) % len(s)]
  return a * idx if kind == "multiplicative" else a + idx
