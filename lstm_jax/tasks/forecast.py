"""Time-series forecasting on a CSV or a statsmodels series, judged by baselines.

Config (declared in `experiments/forecast.py`): the source (`data.dataset`
shortcut or `data.path` + `data.columns` [+ `data.target`]), the
chronological split (`data.holdout`, `data.valid`), the windows
(`data.input_len`, `data.horizon`), `data.transform` (sqrt or log1p of
the target before scaling), `model.seasonal_residual` (the model predicts a
correction to the seasonal naive forecast) and `forecast.*`: the multi-step strategy,
the season and the ARIMA orders of the baselines (unset = the dataset's
defaults in `DEFAULTS`).

Training: windows of the training part, scaled with statistics of the
training part only; the model (`models.forecaster.Forecaster`) predicts the
next `horizon` target values (1 for the recursive strategy). Validation: the
same loss on windows whose targets lie in the validation part (`eval/mse`, in
scaled units); it picks the best checkpoint.

Final evaluation (`final_evaluation`, once, on the best checkpoint; split
"test"), on the original scale over the whole holdout (the last `holdout`
fraction):

* `mae`, `rmse`, `mase`: the multi-step forecast from the end of the
  validation part, no holdout value seen ("recursive": one step at a time,
  each forecast fed back; "direct": `horizon` values per call, block by block);
* `valid_multi/mae`, `valid_multi/seasonal_naive/mae`: the same multi-step
  forecast over the validation part, from the end of the training part (for
  choosing a configuration without looking at the holdout);
* `one_step/mae` ...: each holdout step forecast from the observed values
  before it;
* `naive/*`, `seasonal_naive/*`, `arima/*` (multi-step) and
  `<baseline>/one_step/*`, fit on the same history in the same run
  (`lstm_jax.baselines.forecast`).

`forecast.png` in the workdir plots the holdout with every multi-step forecast.
A multivariate model is fed the observed future values of the other channels
(known covariates) during the multi-step rollout.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from lstm_jax.baselines import forecast as baselines
from lstm_jax.data import series
from lstm_jax.errors import ConfigError, DataError
from lstm_jax.models.forecaster import Forecaster, rollout
from lstm_jax.nn.layers import LSTM, lstm_from_config
from lstm_jax.tasks.base import Batch, Datasets, Metrics
from lstm_jax.util import plotting

TOKEN_METRIC = "mse"  # a "token" is one window
RESUMABLE_KEYS = ("data.path", "forecast.plot")
STRATEGIES = ("recursive", "direct")
PLOT_FILE = "forecast.png"
# Per-source defaults of the unset `forecast.*` keys: the season (MASE scale
# and seasonal naive) and the SARIMAX orders. Sunspots: the ~11-year solar
# cycle; co2: monthly, where a non-seasonal ARIMA reverts to the mean over the
# holdout (MAE 16.3) while (1,1,1)x(0,1,1,12) gets 1.74 (baselines.py).
DEFAULTS = {
  "sunspots": {"season": 11, "arima_order": (2, 0, 1), "seasonal_order": (0, 0, 0, 0)},
  "co2": {"season": 12, "arima_order": (1, 1, 1), "seasonal_order": (0, 1, 1, 12)},
  "csv": {"season": 1, "arima_order": (2, 0, 1), "seasonal_order": (0, 0, 0, 0)},
}


# Default `data.transform` (unset) per source: sqrt counts for sunspots (skewed,
# as in the classical sunspot models); none for co2 and CSVs (may be negative).
TRANSFORM_DEFAULTS = {"sunspots": "sqrt"}


def transform_name(config: ml_collections.ConfigDict) -> str:
  """`data.transform`, or the source's default when unset."""
  if config.data.transform is not None:
    return config.data.transform
  return TRANSFORM_DEFAULTS.get(config.data.dataset or "csv", "")


def settings(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The `forecast.*` values with unset keys filled from `DEFAULTS`."""
  f = config.forecast
  out = dict(DEFAULTS.get(config.data.dataset or "csv", DEFAULTS["csv"]))
  for key in out:
    if f[key] is not None:
      out[key] = tuple(f[key]) if key != "season" else int(f[key])
  return out


def horizon(config: ml_collections.ConfigDict) -> int:
  """Values per model call: 1 for the recursive strategy, data.horizon direct."""
  return 1 if config.forecast.strategy == "recursive" else config.data.horizon


def validate(config: ml_collections.ConfigDict) -> None:
  d, f = config.data, config.forecast
  if d.dataset and d.dataset not in series.SHORTCUTS:
    raise ConfigError(
      f"data.dataset must be one of {series.SHORTCUTS} (or unset with data.path), "
      f"got {d.dataset!r}"
    )
  if bool(d.dataset) == bool(d.path):
    raise ConfigError(
      "set exactly one of data.dataset (sunspots|co2) and data.path (a CSV with "
      f"data.columns); got dataset={d.dataset!r}, path={d.path!r}"
    )
  if not (0 < d.holdout < 1 and 0 < d.valid < 1 and d.holdout + d.valid < 1):
    raise ConfigError(
      f"data.holdout and data.valid must be in (0, 1) with a sum below 1, got "
      f"{d.holdout} and {d.valid}"
    )
  for key in ("input_len", "horizon", "batch_size"):
    if d[key] < 1:
      raise ConfigError(f"data.{key} must be >= 1, got {d[key]}")
  if transform_name(config) not in series.TRANSFORMS:
    raise ConfigError(
      f"data.transform must be one of {series.TRANSFORMS}, got {d.transform!r}"
    )
  if f.strategy not in STRATEGIES:
    raise ConfigError(
      f"forecast.strategy must be one of {STRATEGIES}, got {f.strategy!r}"
    )
  s = settings(config)
  if s["season"] < 1:
    raise ConfigError(f"forecast.season must be >= 1, got {s['season']}")
  if len(s["arima_order"]) != 3 or len(s["seasonal_order"]) != 4:
    raise ConfigError(
      "forecast.arima_order needs (p, d, q) and forecast.seasonal_order "
      f"(P, D, Q, m); got {s['arima_order']} and {s['seasonal_order']}"
    )
  if config.model.seasonal_residual and d.input_len < s["season"]:
    raise ConfigError(
      f"model.seasonal_residual needs data.input_len >= the season "
      f"({s['season']}), got {d.input_len}"
    )


class Prepared:
  """The loaded series, its split points and the scaled values."""

  def __init__(self, config: ml_collections.ConfigDict):
    d = config.data
    self.series = series.load_series(d.dataset or d.path, d.columns or "", d.target)
    self.transform = transform_name(config)
    values = self.series.values.copy()
    t = self.series.target
    values[:, t] = series.transform(values[:, t], self.transform, self.series.source)
    self.valid_start, self.test_start = series.split_points(
      len(values), d.holdout, d.valid
    )
    self.scaler = series.Scaler.fit(values[: self.valid_start])
    self.scaled = self.scaler.transform(values)
    self.target = self.series.target
    src = self.series.source
    h = horizon(config)
    self.train = series.windows(
      self.scaled[: self.valid_start],
      d.input_len,
      h,
      self.target,
      f"{src} (train part)",
    )
    # Validation windows may read the end of the training part; their targets
    # all lie in the validation part.
    lo = self.valid_start - d.input_len
    if lo < 0:
      raise DataError(
        f"{src}: the training part ({self.valid_start} steps) is shorter than "
        f"one input window (data.input_len {d.input_len})"
      )
    self.valid = series.windows(
      self.scaled[lo : self.test_start], d.input_len, h, self.target,
      f"{src} (validation part)",
    )  # fmt: skip

  def info(self) -> dict[str, Any]:
    v = np.ascontiguousarray(self.series.values)
    return {
      "source": self.series.source,
      "columns": self.series.names,
      "target": self.series.names[self.target],
      "length": len(v),
      "sha256": hashlib.sha256(v.tobytes()).hexdigest(),
      "valid_start": self.valid_start,
      "test_start": self.test_start,
      "num_channels": v.shape[1],
    }

  def back(self, scaled_target: Any) -> np.ndarray:
    """Scaled (transformed) target values -> the original scale."""
    x = self.scaler.inverse(np.asarray(scaled_target, np.float64), self.target)
    return series.untransform(x, self.transform)


def make_datasets(config: ml_collections.ConfigDict) -> Datasets:
  p = Prepared(config)
  (xs, ys), (vx, vy) = p.train, p.valid
  size = config.data.batch_size

  def eval_batches():
    for i in range(0, len(vx), 256):
      yield {"inputs": vx[i : i + 256], "targets": vy[i : i + 256]}

  return Datasets(
    train_batch=lambda step: series.window_batch(xs, ys, config.seed, step, size),
    eval_batches=eval_batches,
    info=p.info(),
  )


class RelativeForecaster(nn.Module):
  """A `Forecaster` that sees each window relative to its last step.

  Every channel minus its value at the window's last step goes in; the
  forecast is a change from the target's last value. The model is then
  translation-invariant, so a trending series (co2) can leave the range of
  the training part: the plain model's bounded hidden state cannot follow
  a level it never saw. Same interface as `Forecaster` (`rollout` works).
  """

  lstm: LSTM
  horizon: int = 1
  target: int = 0
  season: int = 0

  @nn.compact
  def __call__(self, batch: Batch, carry=None, deterministic: bool = True):
    x = batch["inputs"]
    last = x[:, -1:, :]
    inner = Forecaster(
      lstm=self.lstm,
      horizon=self.horizon,
      season=self.season,
      target=self.target,
      name="forecaster",
    )
    preds, finals = inner({"inputs": x - last}, carry, deterministic)
    return preds + last[:, 0, self.target][:, None], finals


def make_model(config: ml_collections.ConfigDict, info: dict[str, Any]) -> nn.Module:
  """`Forecaster`, or `RelativeForecaster` when model.relative is set."""
  lstm = lstm_from_config(config.model.lstm)
  target = info["columns"].index(info["target"])
  season = settings(config)["season"] if config.model.seasonal_residual else 0
  cls = RelativeForecaster if config.model.relative else Forecaster
  return cls(lstm=lstm, horizon=horizon(config), season=season, target=target)


def loss_and_metrics(preds: jax.Array, batch: Batch) -> tuple[jax.Array, Metrics]:
  """Mean squared error (scaled units) over every predicted value."""
  err = preds - batch["targets"]
  n = jnp.asarray(err.size, jnp.float32)
  sq = jnp.sum(jnp.square(err))
  return sq / n, {"mse": (sq, n), "mae": (jnp.sum(jnp.abs(err)), n)}


def forecasts(
  config: ml_collections.ConfigDict, model: nn.Module, params: Any, p: Prepared
) -> dict[str, np.ndarray]:
  """The model's holdout forecasts on the original scale.

  Returns:
    {"multi": <float64>[holdout], "one_step": <float64>[holdout]}.
  """
  variables = {"params": params}
  multi = multi_step(config, model, variables, p, p.test_start, len(p.scaled))
  inputs = series.one_step_inputs(p.scaled, p.test_start, config.data.input_len)
  one, _ = jax.jit(model.apply)(variables, {"inputs": jnp.asarray(inputs)})
  return {"multi": multi, "one_step": p.back(one[:, 0])}


def multi_step(config, model, variables, p: Prepared, start: int, stop: int):
  """<float64>[stop - start] the multi-step forecast of steps start..stop-1 from
  the observed values before `start`, on the original scale."""
  n, L, h = stop - start, config.data.input_len, model.horizon
  window = jnp.asarray(p.scaled[start - L : start][None], jnp.float32)
  future = np.zeros((1, -(-n // h) * h, p.scaled.shape[1]), np.float32)
  future[0, :n] = p.scaled[start:stop]  # known covariates; target replaced
  multi = jax.jit(rollout, static_argnums=(0, 3, 4))(
    model, variables, window, n, p.target, jnp.asarray(future)
  )
  return p.back(multi[0])


def baseline_forecasts(
  config: ml_collections.ConfigDict, p: Prepared
) -> dict[str, dict[str, np.ndarray]]:
  """The baselines' holdout forecasts, {name: {"multi"|"one_step": <float64>[n]}},
  fit on the same history (training + validation parts) as the model."""
  s = settings(config)
  y = p.series.target_values
  history, test = y[: p.test_start], y[p.test_start :]
  out = {}
  for mode, one in (("multi", False), ("one_step", True)):
    out.setdefault("naive", {})[mode] = baselines.naive(history, test, one)
    out.setdefault("seasonal_naive", {})[mode] = baselines.seasonal_naive(
      history, test, s["season"], one
    )
  if config.forecast.arima:
    res = baselines.fit_arima(history, s["arima_order"], s["seasonal_order"])
    out["arima"] = {
      mode: baselines.arima_forecast(res, test, one)
      for mode, one in (("multi", False), ("one_step", True))
    }
  return out


def plot(path: str, p: Prepared, ours: np.ndarray, others: dict[str, np.ndarray]):
  """PNG of the holdout (with some history) and the multi-step forecasts."""
  fig = plotting.figure(path, figsize=(9, 4))  # None without matplotlib
  if fig is None:
    return
  y = p.series.target_values
  t = np.arange(len(y))
  start = max(0, p.test_start - 2 * (len(y) - p.test_start))
  ax = fig.subplots()
  ax.plot(t[start:], y[start:], color="black", lw=1.2, label="observed")
  ax.axvline(p.test_start, color="gray", ls=":", lw=1)
  for name, f in others.items():
    ax.plot(t[p.test_start :], f, lw=1, ls="--", label=name)
  ax.plot(t[p.test_start :], ours, lw=1.5, label="LSTM (multi-step)")
  ax.set_xlabel("step")
  ax.set_ylabel(p.series.names[p.target])
  ax.set_title(f"{p.series.source}: holdout forecasts")
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=100)


def final_evaluation(
  config: ml_collections.ConfigDict,
  model: nn.Module,
  params: Any,
  datasets: Datasets,
  workdir: str | None = None,
) -> dict[str, float]:
  """Holdout scores of the model and the baselines; writes the plot."""
  del datasets
  p = Prepared(config)
  s = settings(config)
  y = p.series.target_values
  test, train = y[p.test_start :], y[: p.valid_start]
  ours = forecasts(config, model, params, p)
  others = baseline_forecasts(config, p)
  valid = y[p.valid_start : p.test_start]
  out = {
    "valid_multi/mae": baselines.mae(
      valid,
      multi_step(config, model, {"params": params}, p, p.valid_start, p.test_start),
    ),
    "valid_multi/seasonal_naive/mae": baselines.mae(
      valid, baselines.seasonal_naive(train, valid, s["season"], False)
    ),
  }
  for name, fc in (("", ours), *((f"{k}/", v) for k, v in others.items())):
    for mode in ("multi", "one_step"):
      prefix = name if mode == "multi" else f"{name}one_step/"
      scores = baselines.scores(test, fc[mode], train, s["season"])
      out.update({f"{prefix}{k}": v for k, v in scores.items()})
  if workdir and config.forecast.plot and jax.process_index() == 0:
    multi = {k.replace("_", " "): v["multi"] for k, v in others.items()}
    plot(os.path.join(workdir, PLOT_FILE), p, ours["multi"], multi)
  return out


def report(config, model, params, datasets, results) -> dict[str, Any]:
  del config, model, params
  if "test/mae" in results:
    names = ("", "seasonal_naive/", "naive/", "arima/")
    row = ", ".join(
      f"{n.rstrip('/') or 'LSTM'} {results[f'test/{n}mae']:.3f}"
      for n in names
      if f"test/{n}mae" in results
    )
    print(f"{datasets.info['source']}: holdout multi-step MAE: {row}")
  return {}
