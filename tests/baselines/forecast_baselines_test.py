"""Forecast metrics by hand, baselines by definition, ARIMA by its recursion."""

import numpy as np
import pytest

from lstm_jax.baselines import forecast as baselines


def test_metrics_by_hand():
  y, yhat = np.array([1.0, 2.0, 4.0]), np.array([2.0, 2.0, 1.0])
  # float64 arithmetic of a few terms: approx's default rel 1e-6 is far above its rounding
  assert baselines.mae(y, yhat) == pytest.approx(4 / 3)
  assert baselines.rmse(y, yhat) == pytest.approx(np.sqrt(10 / 3))
  train = np.array(
    [0.0, 2.0, 1.0, 5.0]
  )  # |diffs| lag 1: 2, 1, 4 -> 7/3; lag 2: 1, 3 -> 2
  assert baselines.mase(y, yhat, train) == pytest.approx((4 / 3) / (7 / 3))
  assert baselines.mase(y, yhat, train, season=2) == pytest.approx((4 / 3) / 2)


def test_naive_forecasts():
  hist, test = np.array([1.0, 2, 3, 4, 5, 6]), np.array([7.0, 8, 9, 10, 11])
  np.testing.assert_array_equal(baselines.naive(hist, test, one_step=False), [6] * 5)
  np.testing.assert_array_equal(
    baselines.naive(hist, test, one_step=True), [6, 7, 8, 9, 10]
  )
  np.testing.assert_array_equal(
    baselines.seasonal_naive(hist, test, 3, one_step=False), [4, 5, 6, 4, 5]
  )
  np.testing.assert_array_equal(
    baselines.seasonal_naive(hist, test, 3, one_step=True), [4, 5, 6, 7, 8]
  )


def _ar1(n, seed=0):
  rng = np.random.default_rng(seed)
  y = np.zeros(n)
  for t in range(1, n):
    y[t] = 2.0 + 0.6 * y[t - 1] + rng.normal()
  return y


def test_arima_forecasts_follow_the_ar1_recursion():
  pytest.importorskip("statsmodels")
  y = _ar1(300)
  hist, test = y[:240], y[240:]
  res = baselines.fit_arima(hist, order=(1, 0, 0))
  c, phi = res.params[0], res.params[1]  # SARIMAX: y_t = c + phi y_{t-1} + e_t
  assert phi == pytest.approx(0.6, abs=0.1) and c / (1 - phi) == pytest.approx(
    5.0, abs=0.3
  )
  one = baselines.arima_forecast(res, test, one_step=True)
  prev = np.concatenate([hist[-1:], test[:-1]])
  # float64 statsmodels forecast vs the AR(1) recursion in float64: rounding of one step
  np.testing.assert_allclose(one, c + phi * prev, rtol=1e-6)
  multi = baselines.arima_forecast(res, test, one_step=False)
  want, last = [], hist[-1]
  for _ in test:
    last = c + phi * last
    want.append(last)
  # float64 recursion of len(test) steps, the same formula: rounding only
  np.testing.assert_allclose(multi, want, rtol=1e-6)


def test_report_on_sunspots_arima_beats_naive_one_step():
  pytest.importorskip("statsmodels")
  from lstm_jax.data import series

  y = series.load_series("sunspots").target_values
  v0, t0 = series.split_points(len(y))
  report = baselines.baseline_report(y[:t0], y[t0:], y[:v0], season=11)
  assert set(report) == {
    f"{m}/{k}"
    for m in ("naive", "seasonal_naive", "arima")
    for k in ("multi", "one_step")
  }
  # An AR(2)-type model tracks the ~11-year cycle one step ahead far better than
  # repeating the last value.
  assert report["arima/one_step"]["mae"] < report["naive/one_step"]["mae"]
  train = y[:v0]
  scale = np.mean(np.abs(train[11:] - train[:-11]))  # seasonal in-sample MAE
  naive_mae = np.mean(np.abs(y[t0:] - y[t0 - 1 : -1]))
  assert report["naive/one_step"]["mase"] == pytest.approx(naive_mae / scale)


def test_smape_and_seasonal_drift_by_hand():
  y, f = np.array([1.0, 2.0, 0.0]), np.array([3.0, 2.0, 0.0])
  assert baselines.smape(y, f) == pytest.approx(200 / 3 * (2 / 4))  # 0/0 counts 0
  hist = np.array([5.0, 1, 2, 3, 4, 2, 4, 6, 8])  # window 6, m = 3
  # Window [3, 4, 2, 4, 6, 8]: seasonal changes 4-3, 6-4, 8-2 -> mean 3.
  got = baselines.seasonal_drift(hist, 7, season=3, window=6)
  np.testing.assert_allclose(got, [7, 9, 11, 10, 12, 14, 13])
  # m = 1: the last value plus the window's mean step ((8 - 3) / 5 = 1).
  np.testing.assert_allclose(baselines.seasonal_drift(hist, 2, 1, 6), [9, 10])


def test_fit_ets_is_statsmodels_lowest_aic():
  pytest.importorskip("statsmodels")
  from statsmodels.tsa.exponential_smoothing.ets import ETSModel

  rng = np.random.default_rng(0)
  t = np.arange(96)
  y = 50 + 0.5 * t + 5 * np.sin(2 * np.pi * t / 12) + rng.normal(size=96)
  res = baselines.fit_ets(y, season=12)
  fits = []
  for trend, damped in ((None, False), ("add", False), ("add", True)):
    for seas in (None, "add", "mul"):
      m = ETSModel(y, error="add", trend=trend, damped_trend=damped, seasonal=seas,
                   seasonal_periods=12 if seas else None)  # fmt: skip
      fits.append(m.fit(disp=False))
  best = min(fits, key=lambda r: r.aic)
  assert res.aic == pytest.approx(best.aic)
  # the same fitted statsmodels model selected two ways: float64, equal up to rounding (default rtol 1e-7)
  np.testing.assert_allclose(res.forecast(24), best.forecast(24))
  assert best.model.seasonal is not None  # the seasonal pattern is found
