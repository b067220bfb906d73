"""Forecasting data: a CSV (or a statsmodels data set), splits, scaling, windows.

Sources:
* a CSV file with a header row; `columns` names the columns to use
  (comma-separated for a multivariate series), the first named one is the
  target unless `target` says otherwise. Values must be numbers; an empty cell
  or text is an error naming the row and column. A first column that is not
  named is kept as the time stamps (`Series.dates`, for `data.season`).
* `sunspots`: yearly sunspot numbers 1700-2008 (309 values,
  `sm.datasets.sunspots`, column SUNACTIVITY).
* `co2`: Mauna Loa weekly CO2 1958-2001 (`sm.datasets.co2`), averaged per
  calendar month (526 months); the 5 months with no weekly reading at all are
  linearly interpolated in time. The weekly series itself has 59 gaps, which the
  monthly mean skips.
  Both need the `forecast` extra (`pip install lstm_jax[forecast]`,
  statsmodels >= 0.14); without it a `DataError` says so.

Splits are chronological: the last `holdout` fraction (default 20%) is the
test part, the `valid` fraction before it the validation part, the rest
training. The scaler (per-channel mean and std) is fit on the training part
only; an optional `transform` ("sqrt", "log1p") of the target channel comes
before it (and is undone on the forecasts). Windows: `input_len` steps of every channel in, the next `horizon` values
of the target out. Training batches are pure f(seed, step).
"""

from __future__ import annotations

import csv
import dataclasses
import importlib.util
import os
from collections.abc import Sequence

import numpy as np

from lstm_jax.errors import DataError

Batch = dict[str, np.ndarray]
SHORTCUTS = ("sunspots", "co2")
TRANSFORMS = ("", "sqrt", "log1p")


@dataclasses.dataclass(frozen=True)
class Series:
  """A (multivariate) series.

  Attributes:
    values: <float64>[time, channels], column order as requested.
    names: the channel names.
    target: index of the target channel in `names`.
    source: the path or shortcut it came from.
    dates: a CSV's first column, one string per step, when it is not one of
      the named columns (read as dates for the seasonal period), else None.
  """

  values: np.ndarray
  names: list[str]
  target: int
  source: str
  dates: tuple[str, ...] | None = None

  @property
  def target_values(self) -> np.ndarray:
    """<float64>[time] the target channel."""
    return self.values[:, self.target]


def _columns(columns: str | Sequence[str]) -> list[str]:
  names = columns.split(",") if isinstance(columns, str) else list(columns)
  names = [n.strip() for n in names if n.strip()]
  if not names:
    raise DataError(f"no column named: columns={columns!r}")
  return names


def load_csv(
  path: str, columns: str | Sequence[str], target: str | None = None
) -> Series:
  """Reads the named columns of a CSV with a header row.

  Raises:
    DataError: missing file, empty file, a named (or target) column not in the
      header (the available ones are listed), or a non-numeric/empty cell
      (file, line and column named).
  """
  names = _columns(columns)
  if not os.path.isfile(path):
    raise DataError(f"{path}: no such file")
  with open(path, newline="", encoding="utf-8", errors="replace") as f:
    rows = list(csv.reader(f))
  if not rows or not any(cell.strip() for cell in rows[0]):
    raise DataError(f"{path}: empty file (expected a header row and data rows)")
  header = [h.strip() for h in rows[0]]
  missing = [n for n in names if n not in header]
  if missing:
    raise DataError(
      f"{path}: column(s) {missing} not in the header; available: {header}"
    )
  target = names[0] if target is None else target
  if target not in names:
    raise DataError(f"{path}: target column {target!r} is not one of columns {names}")
  idx = [header.index(n) for n in names]
  values, dates = [], []
  for lineno, row in enumerate(rows[1:], 2):
    if not row:
      continue
    dates.append(row[0].strip())
    out = []
    for name, i in zip(names, idx):
      cell = row[i].strip() if i < len(row) else ""
      try:
        out.append(float(cell))
      except ValueError:
        raise DataError(
          f"{path}:{lineno}: column {name!r}: {cell!r} is not a number"
        ) from None
      if not np.isfinite(out[-1]):
        raise DataError(f"{path}:{lineno}: column {name!r}: {cell!r} is not finite")
    values.append(out)
  if not values:
    raise DataError(f"{path}: a header but no data rows")
  # The first column, when not a value column, is the time stamp (dates).
  stamps = tuple(dates) if 0 not in idx else None
  return Series(
    np.asarray(values, np.float64), names, names.index(target), path, stamps
  )


def _statsmodels(name: str) -> np.ndarray:
  if importlib.util.find_spec("statsmodels") is None:
    raise DataError(
      f"data source {name!r} needs statsmodels: pip install 'lstm_jax[forecast]' "
      "(or pass a CSV path)"
    )
  import statsmodels.api as sm  # optional dependency, imported on use only

  if name == "sunspots":
    return sm.datasets.sunspots.load_pandas().data["SUNACTIVITY"].to_numpy(np.float64)
  weekly = sm.datasets.co2.load_pandas().data["co2"]
  monthly = weekly.resample("MS").mean().interpolate(method="time")
  return monthly.to_numpy(np.float64)


def load_series(
  source: str, columns: str | Sequence[str] = "", target: str | None = None
) -> Series:
  """`sunspots`, `co2`, or a CSV path with `columns` (and optional `target`)."""
  if source in SHORTCUTS:
    return Series(_statsmodels(source)[:, None], [source], 0, source)
  if not columns:
    raise DataError(f"{source}: a CSV source needs columns (comma-separated names)")
  return load_csv(source, columns, target)


def split_points(n: int, holdout: float = 0.2, valid: float = 0.1) -> tuple[int, int]:
  """(valid_start, test_start): train [0, v), valid [v, t), test [t, n).

  The test part is the last `round(holdout * n)` steps, the validation part the
  `round(valid * n)` steps before it.
  """
  if not (0 < holdout < 1 and 0 <= valid < 1 and holdout + valid < 1):
    raise ValueError(
      f"need 0 < holdout, 0 <= valid, holdout + valid < 1; got {holdout}, {valid}"
    )
  test_start = n - int(round(holdout * n))
  valid_start = test_start - int(round(valid * n))
  return valid_start, test_start


def transform(values: np.ndarray, name: str, source: str = "series") -> np.ndarray:
  """A variance-stabilising transform of a non-negative series ("" = none).

  Raises:
    DataError: a value below the transform's domain (sqrt: < 0, log1p: <= -1).
  """
  if name not in TRANSFORMS:
    raise ValueError(f"transform must be one of {TRANSFORMS}, got {name!r}")
  values = np.asarray(values, np.float64)
  if not name:
    return values
  low = 0.0 if name == "sqrt" else -1.0
  bad = values < low if name == "sqrt" else values <= low
  if np.any(bad):
    raise DataError(
      f"{source}: transform {name!r} needs values {'>=' if name == 'sqrt' else '>'} "
      f"{low:g}, got {values[bad].min():g}"
    )
  return np.sqrt(values) if name == "sqrt" else np.log1p(values)


def untransform(values: np.ndarray, name: str) -> np.ndarray:
  """The inverse of `transform`; a negative forecast in sqrt units maps to 0
  (the original series is non-negative there, and squaring would flip it)."""
  values = np.asarray(values, np.float64)
  if name == "sqrt":
    return np.square(np.maximum(values, 0.0))
  return np.expm1(values) if name == "log1p" else values


@dataclasses.dataclass(frozen=True)
class Scaler:
  """Per-channel standardisation fit on the training part.

  Attributes:
    mean, std: <float64>[channels]; a constant channel gets std 1.
  """

  mean: np.ndarray
  std: np.ndarray

  @classmethod
  def fit(cls, train: np.ndarray) -> Scaler:
    """Statistics of <float>[time, channels] (the training part only)."""
    std = train.std(0)
    return cls(train.mean(0), np.where(std > 0, std, 1.0))

  def transform(self, values: np.ndarray) -> np.ndarray:
    return (values - self.mean) / self.std

  def inverse(self, values: np.ndarray, channel: int | None = None) -> np.ndarray:
    """Back to the original scale: all channels, or one channel's values."""
    if channel is None:
      return values * self.std + self.mean
    return values * self.std[channel] + self.mean[channel]


def windows(
  values: np.ndarray, input_len: int, horizon: int, target: int, source: str = "series"
) -> tuple[np.ndarray, np.ndarray]:
  """Every (input window, following target values) pair of a part.

  Args:
    values: <float>[time, channels].
    input_len, horizon: window and forecast lengths.
    target: the target channel.
    source: named in the error.

  Returns:
    inputs <float32>[N, input_len, channels], targets <float32>[N, horizon],
    N = time - input_len - horizon + 1; row i covers steps [i, i + input_len).

  Raises:
    DataError: the part is shorter than one window.
  """
  need = input_len + horizon
  if len(values) < need:
    raise DataError(
      f"{source}: {len(values)} steps, shorter than one window "
      f"(input_len {input_len} + horizon {horizon} = {need})"
    )
  n = len(values) - need + 1
  idx = np.arange(n)[:, None] + np.arange(input_len)[None, :]
  tgt = np.arange(n)[:, None] + input_len + np.arange(horizon)[None, :]
  return values[idx].astype(np.float32), values[tgt, target].astype(np.float32)


def one_step_inputs(values: np.ndarray, start: int, input_len: int) -> np.ndarray:
  """Inputs for one-step-ahead forecasts of steps start..time-1 from observed data.

  Returns:
    <float32>[time - start, input_len, channels]; row j is steps
    [start + j - input_len, start + j).
  """
  if start < input_len:
    raise DataError(
      f"only {start} steps before the forecast origin, input_len is {input_len}"
    )
  rows = (
    np.arange(start, len(values))[:, None] - input_len + np.arange(input_len)[None, :]
  )
  return values[rows].astype(np.float32)


def window_batch(
  inputs: np.ndarray, targets: np.ndarray, seed: int, step: int, batch_size: int
) -> Batch:
  """Training batch `step`: windows drawn from `default_rng([seed, step])`."""
  rows = np.random.default_rng([seed, step]).integers(0, len(inputs), batch_size)
  return {"inputs": inputs[rows], "targets": targets[rows]}
