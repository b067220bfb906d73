"""The .ts parser against aeon's own loader, and every malformed-input error."""

import numpy as np
import pytest
import scipy.stats

from lstm_jax.data import ts_augment, ts_normalize, ucr
from lstm_jax.errors import DataError

F32_ROUNDING = float(np.finfo(np.float32).eps)  # relative rounding of one float32

HEADER = (
  "@problemName toy\n@univariate false\n@dimensions 2\n@classLabel true a b\n@data\n"
)


def _write(tmp_path, text, name="x.ts"):
  path = tmp_path / name
  path.write_text(text)
  return str(path)


def _shipped(name):
  shipped = ucr.shipped_datasets()
  if name not in shipped:
    pytest.skip(f"{name} not shipped in an installed aeon/sktime")
  return shipped[name]


@pytest.mark.parametrize("name", ["GunPoint", "BasicMotions", "JapaneseVowels"])
def test_parse_matches_aeon_loader(name):
  aeon_datasets = pytest.importorskip("aeon.datasets")
  for path in _shipped(name):
    ours = ucr.load_ts(path)
    x_ref, y_ref = aeon_datasets.load_from_ts_file(path)  # [N, C, T] or list of [C, T]
    # aeon lowercases every line it reads (labels too); we keep the file's case.
    assert [v.lower() for v in ours.labels] == [str(v) for v in y_ref]
    assert len(ours.series) == len(x_ref)
    for got, want in zip(ours.series, x_ref):
      # the parser's float32 values vs aeon's float64: one float32 rounding (6e-8 relative)
      np.testing.assert_allclose(got, np.asarray(want).T, rtol=1e-6)


def test_japanese_vowels_keeps_variable_lengths():
  train, test = (ucr.load_ts(p) for p in _shipped("JapaneseVowels"))
  lengths = [len(s) for s in train.series + test.series]
  assert min(lengths) == 7 and max(lengths) == 29  # the UCI description
  assert train.num_channels == 12
  splits, info = ucr.prepare(train, test, 0.2, seed=0)
  x, mask = splits["test"]["inputs"], splits["test"]["mask"]
  assert x.shape == (len(test.series), 29, 12)
  np.testing.assert_array_equal(mask.sum(1), [len(s) for s in test.series])
  assert (x[~mask] == 0).all()
  # Normalisation from the training part only: zero mean, unit std there.
  tr = splits["train"]
  real = tr["inputs"][tr["mask"]]
  # float32 standardisation: the mean of n float32 values is within n*eps of 0 (sum_tol), std within the same relative
  np.testing.assert_allclose(real.mean(0), 0, atol=1e-5)
  np.testing.assert_allclose(real.std(0), 1, atol=1e-4)
  assert len(tr["labels"]) + len(splits["valid"]["labels"]) == len(train.series)


def test_series_normalization_is_each_series_own_zscore():
  # Against scipy's zscore of each real series, per channel; PLAID's raw
  # currents (five orders of magnitude apart) are why the option exists.
  train, test = (ucr.load_ts(p) for p in _shipped("JapaneseVowels"))
  splits, info = ucr.prepare(train, test, 0.2, seed=0, normalization="series")
  x, mask = splits["test"]["inputs"], splits["test"]["mask"]
  for i, s in enumerate(test.series):
    np.testing.assert_allclose(
      x[i, : len(s)],
      scipy.stats.zscore(s.astype(np.float64), axis=0),
      rtol=0,
      atol=F32_ROUNDING * 8,  # |z| <= sqrt(29) < 8: float32 rounding of each value
    )
  assert (x[~mask] == 0).all()
  assert (info["mean"] == 0).all() and (info["std"] == 1).all()
  # A constant channel is only centred, not divided by zero.
  flat = ts_normalize.normalize_each([np.array([[3.0, 1.0], [3.0, 2.0], [3.0, 3.0]])])[
    0
  ]
  np.testing.assert_array_equal(flat[:, 0], 0)
  np.testing.assert_allclose(flat[:, 1], scipy.stats.zscore([1.0, 2.0, 3.0]), rtol=1e-6)
  with pytest.raises(ValueError, match="normalization must be one of"):
    ucr.prepare(train, test, 0.2, seed=0, normalization="global")


def test_auto_normalization_is_per_series_only_for_univariate_files():
  # JapaneseVowels (12 channels) keeps the training part's per-channel scale.
  train, test = (ucr.load_ts(p) for p in _shipped("JapaneseVowels"))
  auto, _ = ucr.prepare(train, test, 0.2, seed=0, normalization="auto")
  fit, _ = ucr.prepare(train, test, 0.2, seed=0, normalization="train")
  np.testing.assert_array_equal(auto["test"]["inputs"], fit["test"]["inputs"])
  # GunPoint (1 channel): each series its own z-score.
  train, test = (ucr.load_ts(p) for p in _shipped("GunPoint"))
  auto, _ = ucr.prepare(train, test, 0.2, seed=0, normalization="auto")
  want = scipy.stats.zscore(test.series[3][:, 0].astype(np.float64))
  np.testing.assert_allclose(
    auto["test"]["inputs"][3, :, 0], want, rtol=0, atol=F32_ROUNDING * 16
  )  # |z| <= sqrt(150) < 16: float32 rounding of each value


def test_stratified_split_keeps_class_proportions_and_is_seeded():
  labels = np.repeat(np.arange(3), [10, 20, 40])
  tr, va = ucr.stratified_split(labels, 0.25, seed=1)
  assert sorted(np.concatenate([tr, va]).tolist()) == list(range(70))
  assert np.bincount(labels[va]).tolist() == [2, 5, 10]  # round(0.25 * n)
  tr2, va2 = ucr.stratified_split(labels, 0.25, seed=1)
  np.testing.assert_array_equal(va, va2)
  assert not np.array_equal(va, ucr.stratified_split(labels, 0.25, seed=2)[1])


def test_small_file_values_and_missing_fill(tmp_path):
  text = (
    HEADER.replace("@data", "@missing true\n@data") + "1,2,3:4,5,6:a\n1,?,3:?,5,6:b\n"
  )
  data = ucr.load_ts(_write(tmp_path, text), fill_missing="ffill")
  np.testing.assert_array_equal(data.series[0], [[1, 4], [2, 5], [3, 6]])
  np.testing.assert_array_equal(data.series[1], [[1, 5], [1, 5], [3, 6]])
  zero = ucr.load_ts(_write(tmp_path, text), fill_missing="zero")
  np.testing.assert_array_equal(zero.series[1], [[1, 0], [0, 5], [3, 6]])
  assert data.labels == ["a", "b"]


@pytest.mark.parametrize(
  "text, match",
  [
    (
      "@problemName toy\n@univariate maybe\n@classLabel true a\n@data\n1:a\n",
      r"x\.ts:2: @univariate",
    ),
    ("@problemName toy\n@weird 1\n@data\n", r"x\.ts:2: unknown header @weird"),
    (HEADER + "1,2,3:4,5:a\n", r"x\.ts:6: ragged channels"),
    (HEADER + "1,2:3,4:c\n", r"x\.ts:6: label 'c' is not declared"),
    (HEADER + "1,2:3,4:a\n1,nan:3,4:b\n", r"x\.ts:7: missing value"),
    (HEADER + "1,2:3,x4:a\n", r"x\.ts:6: channel 1: 'x4' is not a number"),
    (HEADER + "1,2:a\n", r"x\.ts:6: 1 channels, expected 2"),
    ("", r"x\.ts: no @data"),
    (HEADER, r"x\.ts: no series after @data"),
    ("1,2:a\n", r"x\.ts:1: expected a @header"),
    (
      HEADER.replace("@data", "@equalLength true\n@seriesLength 3\n@data")
      + "1,2:3,4:a\n",
      r"x\.ts:8: 2 steps, but @equalLength true with @seriesLength 3",
    ),
  ],
  ids=[
    "bad-bool",
    "unknown-header",
    "ragged",
    "undeclared-label",
    "nan",
    "non-numeric",
    "channels",
    "empty",
    "no-series",
    "no-header",
    "length",
  ],
)
def test_malformed_files_name_file_and_line(tmp_path, text, match):
  with pytest.raises(DataError, match=match):
    ucr.load_ts(_write(tmp_path, text))


def test_test_file_with_other_channel_count_is_an_error(tmp_path):
  train = ucr.load_ts(_write(tmp_path, HEADER + "1,2:3,4:a\n", "tr.ts"))
  one = HEADER.replace("@dimensions 2", "@dimensions 1")
  test = ucr.load_ts(_write(tmp_path, one + "1,2:a\n", "te.ts"))
  with pytest.raises(
    DataError, match=r"te\.ts: 1 channels, but the training file .*tr\.ts has 2"
  ):
    ucr.prepare(train, test, 0.0, 0)


def test_unknown_name_lists_the_shipped_ones():
  _shipped("GunPoint")
  with pytest.raises(DataError, match="unknown UCR/UEA dataset 'NoSuchSet'.*GunPoint"):
    ucr.resolve("NoSuchSet")
  assert ucr.resolve("GunPoint")[0].endswith("GunPoint_TRAIN.ts")
  assert "Covid3Month" not in ucr.shipped_datasets()  # a regression set


def test_epoch_batch_visits_every_row_once_per_epoch():
  arrays = {"x": np.arange(10)}
  seen = np.concatenate([ucr.epoch_batch(arrays, 3, k, 5)["x"] for k in range(2)])
  assert sorted(seen.tolist()) == list(range(10))
  np.testing.assert_array_equal(
    ucr.epoch_batch(arrays, 3, 7, 4)["x"], ucr.epoch_batch(arrays, 3, 7, 4)["x"]
  )


def test_jitter_scale_moments_padding_and_seeding():
  # Independent check: the noise's sample moments against the requested stds.
  rng = np.random.default_rng(0)
  x = rng.normal(size=(400, 50, 3)).astype(np.float32)
  mask = np.arange(50)[None, :] < rng.integers(10, 51, size=(400, 1))
  x[~mask] = 0
  batch = {"inputs": x, "mask": mask, "labels": np.zeros(400, np.int32)}
  assert ts_augment.jitter_scale(batch, 0, 5, 0.0, 0.0) is batch
  jit = ts_augment.jitter_scale(batch, 0, 5, 0.3, 0.0)
  noise = (jit["inputs"] - x)[mask]
  # a seeded Monte Carlo mean/std of the augmentation noise: several standard errors
  np.testing.assert_allclose([noise.mean(), noise.std()], [0, 0.3], atol=0.005)
  assert (jit["inputs"][~mask] == 0).all() and jit["mask"] is mask
  ones = {**batch, "inputs": np.where(mask[..., None], 1.0, 0.0).astype(np.float32)}
  scaled = ts_augment.jitter_scale(ones, 0, 5, 0.0, 0.2)["inputs"]
  # One factor per series and channel: constant over the series' real steps.
  factors = scaled.max(1)
  np.testing.assert_allclose(scaled.min(1, where=mask[..., None], initial=9), factors)
  np.testing.assert_allclose([factors.mean(), factors.std()], [1, 0.2], atol=0.02)
  again = ts_augment.jitter_scale(batch, 0, 5, 0.3, 0.2)["inputs"]
  np.testing.assert_array_equal(
    again, ts_augment.jitter_scale(batch, 0, 5, 0.3, 0.2)["inputs"]
  )
  assert not np.array_equal(
    again, ts_augment.jitter_scale(batch, 0, 6, 0.3, 0.2)["inputs"]
  )
