"""Forecast metrics and the classical baselines every forecaster is judged by.

All on the original scale, over a holdout `test` that follows `history`
(everything before it: training and validation parts).

* MAE, RMSE; MASE (Hyndman & Koehler 2006): MAE over the in-sample MAE of the
  (seasonal) naive forecast on the training part, `mean |y_t - y_{t-m}|`;
  sMAPE (the M3/M4 definition), `200 mean |y - f| / (|y| + |f|)` in percent.
* Two forecasting modes over the holdout:
  - multi-step: one forecast from the origin (the end of history) for every
    holdout step, no holdout value is seen;
  - one-step-ahead: step t is forecast from the observed values before t.
* Baselines: naive (last value), seasonal naive (the value one season back),
  seasonal naive with drift over a window (`seasonal_drift`: the base a
  forecaster's `residual="drift"` corrects), ETS (`fit_ets`, statsmodels'
  ETSModel, chosen by AIC), ARIMA/SARIMAX from statsmodels (optional dependency, `forecast` extra). The
  ARIMA order is fixed by the caller or picked by AIC over a tiny grid
  (p, q in 0..2, d in 0..1: 18 fits; 7 s on sunspots, 10 s on monthly co2,
  measured on 2 shared CPU cores). For a trending seasonal series (co2) give a
  seasonal order: the default non-seasonal (2, 0, 1) with a constant reverts to
  the mean over a multi-step horizon (co2 holdout MAE 16.3 ppm vs 6.5 for
  naive), while (1, 1, 1)x(0, 1, 1, 12) gets 1.74 multi-step, 0.23 one-step.
  One-step-ahead ARIMA keeps the parameters fit on history and runs the Kalman
  filter over the holdout (`results.append(test, refit=False)`).
"""

from __future__ import annotations

import importlib.util
import itertools
import warnings

import numpy as np

from lstm_jax.errors import DataError


def mae(y: np.ndarray, yhat: np.ndarray) -> float:
  return float(np.mean(np.abs(np.asarray(y) - np.asarray(yhat))))


def rmse(y: np.ndarray, yhat: np.ndarray) -> float:
  return float(np.sqrt(np.mean((np.asarray(y) - np.asarray(yhat)) ** 2)))


def mase_scale(train: np.ndarray, season: int = 1) -> float:
  """In-sample MAE of the seasonal naive forecast on `train` (m = season)."""
  train = np.asarray(train, np.float64)
  if len(train) <= season:
    raise DataError(
      f"MASE needs more than season={season} training steps, got {len(train)}"
    )
  scale = float(np.mean(np.abs(train[season:] - train[:-season])))
  if scale == 0:
    raise DataError("MASE is undefined: the training part is constant at lag season")
  return scale


def mase(y: np.ndarray, yhat: np.ndarray, train: np.ndarray, season: int = 1) -> float:
  return mae(y, yhat) / mase_scale(train, season)


def smape(y: np.ndarray, yhat: np.ndarray) -> float:
  """Symmetric MAPE in percent (M3/M4); a step where y = yhat = 0 counts 0."""
  y, yhat = np.asarray(y, np.float64), np.asarray(yhat, np.float64)
  den = np.abs(y) + np.abs(yhat)
  ratio = np.divide(np.abs(y - yhat), den, out=np.zeros_like(den), where=den > 0)
  return float(200 * np.mean(ratio))


def scores(y, yhat, train, season: int = 1) -> dict[str, float]:
  """{"mae", "rmse", "mase", "smape"} of one forecast."""
  return {
    "mae": mae(y, yhat),
    "rmse": rmse(y, yhat),
    "mase": mase(y, yhat, train, season),
    "smape": smape(y, yhat),
  }


def naive(history: np.ndarray, test: np.ndarray, one_step: bool) -> np.ndarray:
  """Last observed value: the origin's for multi-step, the previous step's for one-step."""
  if one_step:
    return np.concatenate([history[-1:], test[:-1]])
  return np.full(len(test), history[-1], np.float64)


def seasonal_naive(
  history: np.ndarray, test: np.ndarray, season: int, one_step: bool
) -> np.ndarray:
  """y_hat_t = y_{t-m}: observed values for one-step, the last season repeated
  (y_hat_{T+h} = y_{T+h-m(floor((h-1)/m)+1)}) for multi-step."""
  if len(history) < season:
    raise DataError(f"seasonal naive needs {season} history steps, got {len(history)}")
  if one_step:
    full = np.concatenate([history, test])
    return full[len(history) - season : len(full) - season]
  last = history[-season:]
  return np.resize(last, len(test))


def seasonal_drift(
  history: np.ndarray, steps: int, season: int, window: int
) -> np.ndarray:
  """Seasonal naive plus the window's mean seasonal change, multi-step.

  With w = the last `window` values of history and the drift per season
  d = mean_i (w_i - w_{i-m}) over the window, step j = 0, 1, ... ahead is
  w[window - m + (j mod m)] + (floor(j / m) + 1) d. m = 1 is the naive
  forecast with the window's drift (a random walk with drift).

  Returns:
    <float64>[steps].
  """
  w = np.asarray(history, np.float64)[-window:]
  m = season
  if len(w) <= m:
    raise DataError(f"seasonal drift needs more than {m} history steps, got {len(w)}")
  d = float(np.mean(w[m:] - w[:-m]))
  j = np.arange(steps)
  return w[len(w) - m + j % m] + (j // m + 1) * d


def _statsmodels():
  if importlib.util.find_spec("statsmodels") is None:
    raise DataError(
      "the ARIMA baseline needs statsmodels: pip install 'lstm_jax[forecast]'"
    )
  from statsmodels.tsa.statespace.sarimax import SARIMAX  # optional, on use only

  return SARIMAX


def fit_arima(
  history: np.ndarray,
  order: tuple[int, int, int] | None = None,
  seasonal_order: tuple[int, int, int, int] = (0, 0, 0, 0),
  grid: list[tuple[int, int, int]] | None = None,
):
  """SARIMAX fit on `history`; `order=None` picks (p, d, q) by AIC on `grid`
  (default: p, q in 0..2, d in 0..1).

  A constant is included when d = 0 (`trend="c"`), none otherwise.
  """
  sarimax = _statsmodels()

  def fit(o):
    with warnings.catch_warnings():
      # Convergence and frequency warnings of small grid fits are expected.
      warnings.simplefilter("ignore")
      model = sarimax(
        np.asarray(history, np.float64),
        order=o,
        seasonal_order=seasonal_order,
        trend="c" if o[1] == 0 and seasonal_order[1] == 0 else "n",
      )
      return model.fit(disp=False)

  if order is not None:
    return fit(tuple(order))
  grid = grid or list(itertools.product(range(3), range(2), range(3)))
  fits = [fit(o) for o in grid]
  return min(fits, key=lambda r: r.aic)


def arima_forecast(results, test: np.ndarray, one_step: bool) -> np.ndarray:
  """Holdout forecasts of a `fit_arima` result (parameters stay fixed)."""
  n = len(test)
  if not one_step:
    return np.asarray(results.forecast(n))
  extended = results.append(np.asarray(test, np.float64), refit=False)
  start = results.nobs
  return np.asarray(extended.predict(start=start, end=start + n - 1))


def fit_ets(history: np.ndarray, season: int = 1):
  """statsmodels ETSModel with the lowest AIC over additive errors, trend
  none / additive / damped additive, and (season > 1, at least two seasons
  of history) seasonality none / additive / multiplicative (positive series)."""
  _statsmodels()
  from statsmodels.tsa.exponential_smoothing.ets import ETSModel  # optional

  y = np.asarray(history, np.float64)
  seasonal = [None]
  if season > 1 and len(y) >= 2 * season + 2:
    seasonal += ["add"] + (["mul"] if y.min() > 0 else [])
  fits = []
  for trend, damped in ((None, False), ("add", False), ("add", True)):
    for seas in seasonal:
      with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence warnings of small fits
        model = ETSModel(
          y, error="add", trend=trend, damped_trend=damped, seasonal=seas,
          seasonal_periods=season if seas else None,
        )  # fmt: skip
        try:
          res = model.fit(disp=False)
        except (ValueError, np.linalg.LinAlgError):
          continue
      if np.isfinite(res.aic):
        fits.append(res)
  if not fits:
    raise DataError("no ETS model could be fit to the history")
  return min(fits, key=lambda r: r.aic)


def baseline_forecasts(
  history: np.ndarray,
  test: np.ndarray,
  season: int = 1,
  arima_order: tuple[int, int, int] | None = (2, 0, 1),
  seasonal_order: tuple[int, int, int, int] = (0, 0, 0, 0),
  with_arima: bool = True,
) -> dict[str, dict[str, np.ndarray]]:
  """Every baseline's holdout forecasts, {name: {"multi"|"one_step": <f64>[n]}},
  fit on `history` (what the forecasts may see: training + validation)."""
  out = {"naive": {}, "seasonal_naive": {}}
  for mode, one in (("multi", False), ("one_step", True)):
    out["naive"][mode] = naive(history, test, one)
    out["seasonal_naive"][mode] = seasonal_naive(history, test, season, one)
  if with_arima:
    res = fit_arima(history, arima_order, seasonal_order)
    out["arima"] = {
      mode: arima_forecast(res, test, one)
      for mode, one in (("multi", False), ("one_step", True))
    }
  return out


def baseline_report(
  history: np.ndarray,
  test: np.ndarray,
  train: np.ndarray,
  season: int = 1,
  arima_order: tuple[int, int, int] | None = (2, 0, 1),
  seasonal_order: tuple[int, int, int, int] = (0, 0, 0, 0),
  with_arima: bool = True,
) -> dict[str, dict[str, float]]:
  """Scores of every baseline, both modes: {"naive/multi": {"mae", ...}, ...}.

  `train` is the part the MASE scale comes from (the training part), `history`
  what the forecasts may see (training + validation).
  """
  forecasts = baseline_forecasts(
    history, test, season, arima_order, seasonal_order, with_arima
  )
  return {
    f"{name}/{mode}": scores(test, f, train, season)
    for name, modes in forecasts.items()
    for mode, f in modes.items()
  }
