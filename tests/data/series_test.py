"""Forecasting data: CSV loading and its errors, splits, scaling, windows."""

import numpy as np
import pytest

from lstm_jax.data import series
from lstm_jax.errors import DataError


def _csv(tmp_path, text, name="s.csv"):
  path = tmp_path / name
  path.write_text(text)
  return str(path)


def test_csv_columns_and_target(tmp_path):
  path = _csv(tmp_path, "date,load,temp\n1,10,0.5\n2,11,0.25\n3,12.5,-1\n")
  s = series.load_series(path, "temp, load")
  np.testing.assert_array_equal(s.values, [[0.5, 10], [0.25, 11], [-1, 12.5]])
  assert s.names == ["temp", "load"] and s.target == 0
  s = series.load_series(path, "temp,load", target="load")
  np.testing.assert_array_equal(s.target_values, [10, 11, 12.5])


@pytest.mark.parametrize(
  "text, columns, match",
  [
    (
      "a,b\n1,2\n",
      "a,c",
      r"s\.csv: column\(s\) \['c'\] not in the header; available: \['a', 'b'\]",
    ),
    ("a,b\n1,2\n3,x\n", "a,b", r"s\.csv:3: column 'b': 'x' is not a number"),
    ("a,b\n1,2\n3,\n", "b", r"s\.csv:3: column 'b': '' is not a number"),
    ("a,b\n1,nan\n", "b", r"s\.csv:2: column 'b': 'nan' is not finite"),
    ("", "a", r"s\.csv: empty file"),
    ("a,b\n", "a", r"s\.csv: a header but no data rows"),
  ],
  ids=["missing-column", "non-numeric", "empty-cell", "nan", "empty", "header-only"],
)
def test_csv_errors_name_file_row_and_column(tmp_path, text, columns, match):
  with pytest.raises(DataError, match=match):
    series.load_series(_csv(tmp_path, text), columns)


def test_target_must_be_a_named_column(tmp_path):
  with pytest.raises(DataError, match="target column 'c' is not one of"):
    series.load_csv(_csv(tmp_path, "a,b,c\n1,2,3\n"), "a,b", target="c")


def test_statsmodels_shortcuts():
  pytest.importorskip("statsmodels")
  sun = series.load_series("sunspots")
  assert sun.values.shape == (309, 1) and sun.values[0, 0] == 5.0  # 1700
  co2 = series.load_series("co2")
  assert co2.values.shape == (526, 1) and np.isfinite(co2.values).all()
  # March 1958 holds one weekly reading (316.1 ppm, 1958-03-29).
  assert co2.values[0, 0] == pytest.approx(316.1)


def test_split_scaler_and_windows():
  v0, t0 = series.split_points(100, holdout=0.2, valid=0.1)
  assert (v0, t0) == (70, 80)
  values = np.stack([np.arange(100.0), np.arange(100.0) ** 2], axis=1)
  scaler = series.Scaler.fit(values[:v0])
  z = scaler.transform(values)
  # float64 mean/std of standardised data: exact up to rounding of a len(x)-term sum
  np.testing.assert_allclose(z[:v0].mean(0), 0, atol=1e-12)
  np.testing.assert_allclose(z[:v0].std(0), 1, atol=1e-12)
  assert z[v0:].mean() > 1  # the later parts are not re-centred
  np.testing.assert_allclose(scaler.inverse(z[:, 1], channel=1), values[:, 1])
  x, y = series.windows(values, input_len=5, horizon=3, target=0)
  assert x.shape == (93, 5, 2) and y.shape == (93, 3)
  np.testing.assert_array_equal(x[10, :, 0], np.arange(10, 15))
  np.testing.assert_array_equal(y[10], [15, 16, 17])
  one = series.one_step_inputs(values, start=80, input_len=4)
  assert one.shape == (20, 4, 2)
  np.testing.assert_array_equal(one[0, :, 0], [76, 77, 78, 79])


def test_series_shorter_than_one_window_is_an_error():
  with pytest.raises(
    DataError,
    match=r"valid: 6 steps, shorter than one window \(input_len 5 \+ horizon 2 = 7\)",
  ):
    series.windows(np.zeros((6, 1)), 5, 2, 0, source="valid")


def test_window_batches_are_f_of_seed_and_step():
  x, y = series.windows(np.arange(50.0)[:, None], 4, 1, 0)
  a, b = series.window_batch(x, y, 0, 3, 8), series.window_batch(x, y, 0, 3, 8)
  np.testing.assert_array_equal(a["inputs"], b["inputs"])
  assert not np.array_equal(a["inputs"], series.window_batch(x, y, 0, 4, 8)["inputs"])
  np.testing.assert_array_equal(a["targets"][:, 0], a["inputs"][:, -1, 0] + 1)


@pytest.mark.parametrize(
  "name,fn", [("sqrt", np.sqrt), ("log1p", np.log1p), ("", None)]
)
def test_transform_matches_numpy_and_inverts(name, fn):
  x = np.array([0.0, 0.5, 4.0, 190.2])
  got = series.transform(x, name)
  # the transform applied by the library and by numpy's same function: float64, equal up to rounding (default rtol 1e-7)
  np.testing.assert_allclose(got, fn(x) if fn else x)
  np.testing.assert_allclose(series.untransform(got, name), x, rtol=1e-12)


def test_transform_domain():
  with pytest.raises(DataError, match="sqrt.*>= 0"):
    series.transform(np.array([1.0, -0.5]), "sqrt", "mine.csv")
  with pytest.raises(DataError, match="log1p"):
    series.transform(np.array([-1.0]), "log1p")
  # A forecast below 0 in sqrt units is 0 on the original (non-negative) scale.
  np.testing.assert_allclose(series.untransform(np.array([-2.0, 3.0]), "sqrt"), [0, 9])
