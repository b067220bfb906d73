"""UCR/UEA time-series classification: the `.ts` format, read here.

The parser is our own; aeon (or sktime) only ships data files (the `ucr` extra:
`pip install lstm_jax[ucr]`, aeon >= 1.0) and is never imported: a NAME is
looked up as `<pkg>/datasets/data/<Name>/<Name>_{TRAIN,TEST}.ts` inside the
installed package, nothing is downloaded.

A `.ts` file: `#` (or `%`, as in aeon's UnitTest) comment lines, `@key value` header lines up to `@data`, then
one series per line: channels separated by `:`, values by `,`, the class label
last (`1.0,2.0:3.0,4.0:label`). `?` (or `NaN`) is a missing value.

Series keep their own length (JapaneseVowels: 7 to 29 frames of 12 channels);
`pad` stacks them into `[N, T_max, C]` with a mask, so the model sees every real
step and no padding: no truncation, no resampling. Missing values are an error
naming the file and line unless `fill_missing` says how to fill them.

Normalisation (`prepare`'s `normalization`) lives in `data.ts_normalize`.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import os
from collections.abc import Sequence

import numpy as np

from lstm_jax.data import ts_normalize
from lstm_jax.errors import DataError

Batch = dict[str, np.ndarray]
PACKAGES = ("aeon", "sktime")  # searched in this order
FILL_MISSING = (None, "zero", "ffill")
_MISSING = {"?", "nan", "NaN"}
_BOOL_KEYS = ("timestamps", "missing", "univariate", "equallength")


@dataclasses.dataclass(frozen=True)
class TsData:
  """One parsed `.ts` file.

  Attributes:
    series: per example <float32>[time_i, channels].
    labels: per example its class label, as written in the file.
    metadata: header values (`problemname`, `univariate`, `dimensions`,
      `equallength`, `serieslength`, `classlabel`: the declared labels in
      order) plus `path`.
  """

  series: list[np.ndarray]
  labels: list[str]
  metadata: dict

  @property
  def num_channels(self) -> int:
    return self.series[0].shape[1]


def _header(path: str, lineno: int, line: str, meta: dict) -> None:
  key, _, value = line[1:].partition(" ")
  key, value = key.lower(), value.strip()
  where = f"{path}:{lineno}"
  if key in _BOOL_KEYS:
    if value.lower() not in ("true", "false"):
      raise DataError(f"{where}: @{key} must be true or false, got {value!r}")
    meta[key] = value.lower() == "true"
  elif key in ("dimensions", "serieslength"):
    if not value.isdigit() or int(value) < 1:
      raise DataError(f"{where}: @{key} must be a positive integer, got {value!r}")
    meta[key] = int(value)
  elif key == "classlabel":
    flag, *labels = value.split()
    if flag.lower() != "true" or not labels:
      raise DataError(
        f"{where}: @classLabel must be 'true' followed by the class labels "
        f"(a classification file), got {value!r}"
      )
    meta[key] = labels
  elif key == "problemname" or key in ("targetlabel", "dataname"):
    meta[key] = value
  else:
    raise DataError(
      f"{where}: unknown header @{key} (expected @problemName, "
      "@timeStamps, @missing, @univariate, @dimensions, @equalLength, "
      "@seriesLength, @classLabel or @data)"
    )


def _fill(values: np.ndarray, how: str) -> np.ndarray:
  """Fills NaNs per channel of <float>[time, channels]: zeros, or the last value
  before (the first value after for a leading gap)."""
  if how == "zero":
    return np.nan_to_num(values, nan=0.0)
  out = values.copy()
  for c in range(out.shape[1]):
    col = out[:, c]
    ok = ~np.isnan(col)
    if not ok.any():
      col[:] = 0.0
      continue
    idx = np.where(ok, np.arange(len(col)), 0)
    np.maximum.accumulate(idx, out=idx)
    first = np.argmax(ok)
    idx[:first] = first
    out[:, c] = col[idx]
  return out


def _series(path: str, lineno: int, line: str, fill_missing: str | None):
  *channels, label = line.split(":")
  where = f"{path}:{lineno}"
  if not channels:
    raise DataError(f"{where}: a series line needs values and a label separated by ':'")
  rows = []
  for c, text in enumerate(channels):
    fields = [v.strip() for v in text.split(",")]
    vals = []
    for v in fields:
      if v in _MISSING:
        if fill_missing is None:
          raise DataError(
            f"{where}: missing value ({v!r}) in channel {c}; set fill_missing "
            f"to one of {FILL_MISSING[1:]} to fill it"
          )
        vals.append(np.nan)
        continue
      try:
        vals.append(float(v))
      except ValueError:
        raise DataError(f"{where}: channel {c}: {v!r} is not a number") from None
    rows.append(vals)
  lengths = {len(r) for r in rows}
  if len(lengths) > 1:
    raise DataError(
      f"{where}: ragged channels: lengths {[len(r) for r in rows]} differ "
      "within one series (channels of a series must have equal length)"
    )
  values = np.asarray(rows, np.float64).T  # [time, channels]
  if np.isnan(values).any():
    values = _fill(values, fill_missing)
  return values.astype(np.float32), label.strip()


def load_ts(path: str, fill_missing: str | None = None) -> TsData:
  """Parses a classification `.ts` file.

  Args:
    path: the file.
    fill_missing: None (missing values are an error), "zero" or "ffill"
      (previous value of the channel; the first real value for a leading gap).

  Raises:
    DataError naming the file and line: bad header, no `@data`, empty data,
    ragged channels, a channel count differing from `@dimensions` or from the
    first series, a non-number, a missing value (unless filled), or a label
    not declared in `@classLabel`.
  """
  if fill_missing not in FILL_MISSING:
    raise DataError(f"fill_missing must be one of {FILL_MISSING}, got {fill_missing!r}")
  if not os.path.isfile(path):
    raise DataError(f"{path}: no such file")
  meta: dict = {"path": path}
  series, labels = [], []
  in_data = False
  with open(path, encoding="utf-8", errors="replace") as f:
    for lineno, raw in enumerate(f, 1):
      line = raw.strip()
      if not line or line.startswith(("#", "%")):
        continue
      if not in_data:
        if not line.startswith("@"):
          raise DataError(
            f"{path}:{lineno}: expected a @header line or @data, got {line[:40]!r}"
          )
        if line.lower() == "@data":
          if "classlabel" not in meta:
            raise DataError(f"{path}:{lineno}: @data before any @classLabel header")
          if meta.get("timestamps"):
            raise DataError(f"{path}: @timeStamps true series are not supported")
          in_data = True
        else:
          _header(path, lineno, line, meta)
        continue
      values, label = _series(path, lineno, line, fill_missing)
      want = meta.get("dimensions", series[0].shape[1] if series else values.shape[1])
      if values.shape[1] != want:
        raise DataError(
          f"{path}:{lineno}: {values.shape[1]} channels, expected {want} "
          f"({'@dimensions' if 'dimensions' in meta else 'as in the first series'})"
        )
      if meta.get("equallength") and len(values) != meta.get(
        "serieslength", len(values)
      ):
        raise DataError(
          f"{path}:{lineno}: {len(values)} steps, but @equalLength true with "
          f"@seriesLength {meta['serieslength']}"
        )
      if label not in meta["classlabel"]:
        raise DataError(
          f"{path}:{lineno}: label {label!r} is not declared in @classLabel "
          f"{meta['classlabel']}"
        )
      series.append(values)
      labels.append(label)
  if not in_data:
    raise DataError(f"{path}: no @data line (empty or not a .ts file)")
  if not series:
    raise DataError(f"{path}: no series after @data")
  return TsData(series, labels, meta)


def _is_classification(path: str) -> bool:
  """Whether the header of `path` declares `@classLabel true`."""
  with open(path, encoding="utf-8", errors="replace") as f:
    for line in f:
      low = line.strip().lower()
      if low.startswith("@classlabel"):
        return low.split()[1:2] == ["true"]
      if low == "@data":
        return False
  return False


def shipped_datasets() -> dict[str, tuple[str, str]]:
  """Classification sets shipped inside installed aeon/sktime wheels.

  Found without importing the packages (`importlib.util.find_spec` only).

  Returns:
    {name: (train_path, test_path)}, sorted by name; the first package wins.
  """
  found: dict[str, tuple[str, str]] = {}
  for pkg in PACKAGES:
    spec = importlib.util.find_spec(pkg)
    if spec is None or not spec.submodule_search_locations:
      continue
    root = os.path.join(list(spec.submodule_search_locations)[0], "datasets", "data")
    if not os.path.isdir(root):
      continue
    for name in os.listdir(root):
      paths = tuple(
        os.path.join(root, name, f"{name}_{s}.ts") for s in ("TRAIN", "TEST")
      )
      if name in found or not all(os.path.isfile(p) for p in paths):
        continue
      if _is_classification(paths[0]):  # aeon also ships regression sets
        found[name] = paths
  return dict(sorted(found.items()))


def resolve(name: str) -> tuple[str, str]:
  """(train_path, test_path) of a shipped set; an error lists the available ones."""
  shipped = shipped_datasets()
  if name in shipped:
    return shipped[name]
  if not shipped:
    raise DataError(
      f"unknown UCR/UEA dataset {name!r}: no aeon or sktime installed "
      "(pip install 'lstm_jax[ucr]'), or pass train and test .ts paths"
    )
  raise DataError(f"unknown UCR/UEA dataset {name!r}; shipped: {', '.join(shipped)}")


def check_compatible(train: TsData, test: TsData) -> None:
  """The test file must have train's channel count and only train's labels."""
  if test.num_channels != train.num_channels:
    raise DataError(
      f"{test.metadata['path']}: {test.num_channels} channels, but the training "
      f"file {train.metadata['path']} has {train.num_channels}"
    )
  unknown = sorted(set(test.labels) - set(train.metadata["classlabel"]))
  if unknown:
    raise DataError(
      f"{test.metadata['path']}: labels {unknown} are not declared in the training "
      f"file's @classLabel {train.metadata['classlabel']}"
    )


def encode_labels(labels: Sequence[str], classes: Sequence[str]) -> np.ndarray:
  """<int32>[N] index of each label in `classes` (the @classLabel order)."""
  index = {c: i for i, c in enumerate(classes)}
  return np.asarray([index[label] for label in labels], np.int32)


def stratified_split(
  labels: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
  """Seeded stratified (train_idx, valid_idx) with `fraction` of each class held out.

  Every class keeps at least one training example; a class of size n gives
  `round(fraction * n)` validation examples (capped at n - 1).
  """
  if not 0.0 <= fraction < 1.0:
    raise ValueError(f"validation fraction must be in [0, 1), got {fraction}")
  rng = np.random.default_rng(seed)
  train, valid = [], []
  for c in np.unique(labels):
    idx = rng.permutation(np.flatnonzero(labels == c))
    k = min(int(round(fraction * len(idx))), len(idx) - 1)
    valid.extend(idx[:k])
    train.extend(idx[k:])
  return np.sort(np.asarray(train, np.int64)), np.sort(np.asarray(valid, np.int64))


def pad(series: Sequence[np.ndarray], length: int | None = None):
  """Stacks series into (<float32>[N, T, C], <bool>[N, T] mask), padding right.

  `length` defaults to the longest series; a longer series is an error (never
  truncated).
  """
  longest = max(len(s) for s in series)
  length = longest if length is None else length
  if longest > length:
    raise ValueError(f"a series has {longest} steps, longer than length={length}")
  x = np.zeros((len(series), length, series[0].shape[1]), np.float32)
  mask = np.zeros((len(series), length), bool)
  for i, s in enumerate(series):
    x[i, : len(s)] = s
    mask[i, : len(s)] = True
  return x, mask


def epoch_batch(arrays: Batch, seed: int, step: int, batch_size: int) -> Batch:
  """Training batch `step`: a slice of a per-epoch permutation, f(seed, step).

  Epoch e = step * batch_size // N uses `default_rng([seed, e])`, so a resumed
  run sees the same rows; a batch crossing an epoch end wraps into the next
  epoch's permutation.
  """
  n = len(next(iter(arrays.values())))
  pos = step * batch_size + np.arange(batch_size)
  epoch, offset = pos // n, pos % n
  rows = np.empty(batch_size, np.int64)
  for e in np.unique(epoch):
    perm = np.random.default_rng([seed, int(e)]).permutation(n)
    rows[epoch == e] = perm[offset[epoch == e]]
  return {k: v[rows] for k, v in arrays.items()}


def prepare(
  train: TsData,
  test: TsData,
  valid_fraction: float,
  seed: int,
  normalization: str = "train",
) -> tuple[dict[str, Batch], dict]:
  """Train/validation/test arrays, normalised without reading the test labels.

  Validation is a stratified `valid_fraction` of the official training file;
  the official test file is kept whole. `normalization` "train": the normaliser
  is fit on the training part (after the validation rows are removed);
  "series": each series on its own (`ts_normalize.normalize_each`; `mean` 0,
  `std` 1); "auto": "series" for univariate files, "train" for multivariate
  ones (`ts_normalize.resolve`).

  Returns:
    ({"train"|"valid"|"test": {"inputs" <float32>[N, T_max, C], "mask"
    <bool>[N, T_max], "labels" <int32>[N]}}, info with `classes`, `mean`,
    `std`, `max_len`), all splits padded to the longest series of any split.
  """
  check_compatible(train, test)
  classes = train.metadata["classlabel"]
  y = encode_labels(train.labels, classes)
  tr, va = stratified_split(y, valid_fraction, seed)
  parts = {
    "train": ([train.series[i] for i in tr], y[tr]),
    "valid": ([train.series[i] for i in va], y[va]),
    "test": (test.series, encode_labels(test.labels, classes)),
  }
  if ts_normalize.resolve(normalization, train.num_channels) == "series":
    channels = train.num_channels
    mean, std = np.zeros(channels, np.float32), np.ones(channels, np.float32)
    normalized = ts_normalize.normalize_each
  else:
    mean, std = ts_normalize.fit(parts["train"][0])
    normalized = functools.partial(ts_normalize.apply, mean=mean, std=std)
  max_len = max(len(s) for s in train.series + test.series)
  out = {}
  for split, (series, labels) in parts.items():
    if not len(series):
      continue
    x, mask = pad(normalized(series), max_len)
    out[split] = {"inputs": x, "mask": mask, "labels": labels}
  info = {"classes": list(classes), "mean": mean, "std": std, "max_len": max_len}
  return out, info
