"""Time-series forecasting on a CSV or a statsmodels series, judged by baselines.

Config (declared in `experiments/forecast.py`): the source (`data.dataset`
shortcut or `data.path` + `data.columns` [+ `data.target`]), the
chronological split (`data.holdout`, `data.valid`), the season
(`data.season`), the windows (`data.input_len`, `data.horizon`),
`data.transform` (sqrt or log1p of the target before scaling),
`model.residual` (the model predicts a correction to a base forecast:
seasonal naive, with or without drift, chosen on the validation part by
"auto"), `model.relative` and `forecast.*`: the multi-step strategy and the
ARIMA orders. Unset keys resolve per source (`data.series_defaults`): the
shortcuts' values, or, for a CSV, values scaled to its season and length;
the season of a CSV comes from its dates or the ACF of its training part.
The run prints the season and the residual chosen in one line, and
`data.json` records every resolved value (`settings`).

Training: windows of the training part, scaled with statistics of the
training part only; the model (`models.forecaster.Forecaster`) predicts the
next `horizon` target values (1 for the recursive strategy). Validation: the
same loss on windows whose targets lie in the validation part (`eval/mse`, in
scaled units); it picks the best checkpoint.

Final evaluation (`final_evaluation`, once, on the best checkpoint; split
"test"), on the original scale over the whole holdout (the last `holdout`
fraction):

* `mae`, `rmse`, `mase`, `smape`: the multi-step forecast from the end of the
  validation part, no holdout value seen ("recursive": one step at a time,
  each forecast fed back; "direct": `horizon` values per call, block by block);
* `valid_multi/mae`, `valid_multi/seasonal_naive/mae`: the same multi-step
  forecast over the validation part, from the end of the training part (for
  choosing a configuration without looking at the holdout);
* `one_step/mae` ...: each holdout step forecast from the observed values
  before it;
* `naive/*`, `seasonal_naive/*`, `arima/*` (multi-step) and
  `<baseline>/one_step/*`, fit on the same history in the same run
  (`lstm_jax.baselines.forecast`); `base/*`: the residual's base forecast
  alone (the untrained model), so the gain of training shows.

`forecast.png` in the workdir plots the holdout with every multi-step forecast.
A multivariate model is fed the observed future values of the other channels
(known covariates) during the multi-step rollout.
"""

from __future__ import annotations

import os
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from lstm_jax.baselines import forecast as baselines
from lstm_jax.data import series
from lstm_jax.data import series_defaults as defaults
from lstm_jax.errors import ConfigError
from lstm_jax.models.forecaster import Forecaster, RelativeForecaster, rollout
from lstm_jax.nn.layers import lstm_from_config
from lstm_jax.tasks.base import Batch, Datasets, Metrics
from lstm_jax.tasks.forecast_prep import Prepared
from lstm_jax.util import plotting

TOKEN_METRIC = "mse"  # a "token" is one window
RESUMABLE_KEYS = ("data.path", "forecast.plot", "forecast.fallback")
PLOT_FILE = "forecast.png"
RESIDUALS, STRATEGIES = defaults.RESIDUALS, defaults.STRATEGIES
transform_name, horizon = defaults.transform_name, defaults.horizon
base_season = defaults.base_season


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
  for key in ("season", "input_len", "horizon", "batch_size"):
    if d[key] is not None and (isinstance(d[key], bool) or d[key] < 1):
      raise ConfigError(f"data.{key} must be an integer >= 1, got {d[key]!r}")
  if transform_name(config) not in series.TRANSFORMS:
    raise ConfigError(
      f"data.transform must be one of {series.TRANSFORMS}, got {d.transform!r}"
    )
  if f.strategy is not None and f.strategy not in STRATEGIES:
    raise ConfigError(
      f"forecast.strategy must be one of {STRATEGIES}, got {f.strategy!r}"
    )
  if d.deseason is not None and d.deseason not in defaults.DESEASONS:
    raise ConfigError(
      f"data.deseason must be one of {defaults.DESEASONS}, got {d.deseason!r}"
    )
  if config.model.residual is not None and config.model.residual not in RESIDUALS:
    raise ConfigError(
      f"model.residual must be one of {RESIDUALS}, got {config.model.residual!r}"
    )
  for key, n in (("arima_order", 3), ("seasonal_order", 4)):
    if f[key] is not None and len(f[key]) != n:
      raise ConfigError(
        f"forecast.{key} needs {n} integers ((p, d, q) / (P, D, Q, m)), got {f[key]}"
      )


def make_datasets(config: ml_collections.ConfigDict) -> Datasets:
  p = Prepared(config)
  if jax.process_index() == 0:
    print(p.describe(), flush=True)
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


def make_model(config: ml_collections.ConfigDict, info: dict[str, Any]) -> nn.Module:
  """`Forecaster`, or `RelativeForecaster` when model.relative resolves true."""
  r = info["settings"]
  m, drift, average = base_season(r["residual"], r["season"])
  cls = RelativeForecaster if r["relative"] else Forecaster
  return cls(
    lstm=lstm_from_config(config.model.lstm),
    horizon=horizon(r),
    season=m,
    target=info["columns"].index(info["target"]),
    drift=drift,
    average=average,
  )


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
  inputs = series.one_step_inputs(p.scaled, p.test_start, p.settings["input_len"])
  one, _ = jax.jit(model.apply)(variables, {"inputs": jnp.asarray(inputs)})
  return {"multi": multi, "one_step": p.back(one[:, 0], p.test_start)}


def multi_step(config, model, variables, p: Prepared, start: int, stop: int):
  """<float64>[stop - start] the multi-step forecast of steps start..stop-1 from
  the observed values before `start`, on the original scale."""
  del config
  n, L, h = stop - start, p.settings["input_len"], model.horizon
  window = jnp.asarray(p.scaled[start - L : start][None], jnp.float32)
  future = np.zeros((1, -(-n // h) * h, p.scaled.shape[1]), np.float32)
  future[0, :n] = p.scaled[start:stop]  # known covariates; target replaced
  multi = jax.jit(rollout, static_argnums=(0, 3, 4))(
    model, variables, window, n, p.target, jnp.asarray(future)
  )
  return p.back(multi[0], start)


def baseline_forecasts(
  config: ml_collections.ConfigDict, p: Prepared
) -> dict[str, dict[str, np.ndarray]]:
  """The baselines' holdout forecasts (`baselines.baseline_forecasts`), fit on
  the same history (training + validation parts) as the model."""
  r, y = p.settings, p.series.target_values
  return baselines.baseline_forecasts(
    y[: p.test_start], y[p.test_start :], r["season"], r["arima_order"],
    r["seasonal_order"], config.forecast.arima,
  )  # fmt: skip


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
  m = p.settings["season"]
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
      valid, baselines.seasonal_naive(train, valid, m, False)
    ),
  }
  if p.settings["residual"]:  # the base alone: what training added to it
    base = p.base_forecast(p.settings["residual"], p.test_start, len(test))
    others["base"] = {"multi": base}
    valid_base = p.base_forecast(p.settings["residual"], p.valid_start, len(valid))
    out["valid_multi/base/mae"] = baselines.mae(valid, valid_base)
    # forecast.fallback: the base alone replaces the trained correction when
    # it forecasts the validation part better (never looking at the holdout);
    # `trained/*` keeps the trained model's holdout scores either way.
    out.update({f"trained/{k}": v for k, v in
                baselines.scores(test, ours["multi"], train, m).items()})  # fmt: skip
    fallback = bool(
      config.forecast.fallback and out["valid_multi/base/mae"] < out["valid_multi/mae"]
    )
    out["fallback"] = float(fallback)
    if fallback:
      ours = {**ours, "multi": base}
  for name, fc in (("", ours), *((f"{k}/", v) for k, v in others.items())):
    for mode in fc:
      prefix = name if mode == "multi" else f"{name}one_step/"
      scores = baselines.scores(test, fc[mode], train, m)
      out.update({f"{prefix}{k}": v for k, v in scores.items()})
  if workdir and config.forecast.plot and jax.process_index() == 0:
    multi = {
      (k if k != "base" else f"base ({p.settings['residual']})").replace("_", " "): v[
        "multi"
      ]
      for k, v in others.items()
    }
    plot(os.path.join(workdir, PLOT_FILE), p, ours["multi"], multi)
  return out


def report(config, model, params, datasets, results) -> dict[str, Any]:
  del config, model, params
  if "test/mae" in results:
    names = ("", "base/", "seasonal_naive/", "naive/", "arima/")
    row = ", ".join(
      f"{n.rstrip('/') or 'LSTM'} {results[f'test/{n}mae']:.3f}"
      for n in names
      if f"test/{n}mae" in results
    )
    print(f"{datasets.info['source']}: holdout multi-step MAE: {row}")
  return {}
