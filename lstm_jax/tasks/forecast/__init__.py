"""Time-series forecasting on a CSV or a statsmodels series, judged by baselines.

Config (declared in `experiments/forecast.py`): the source (`data.dataset`
shortcut or `data.path` + `data.columns` [+ `data.target`]), the
chronological split (`data.holdout`, `data.valid`), the season
(`data.season`), the windows (`data.input_len`, `data.horizon`),
`data.transform` (sqrt or log1p of the target before scaling),
`model.residual` (the model predicts a correction to a base forecast:
seasonal naive, with or without drift, chosen on the validation part by
"auto"), `model.relative` and `forecast.*`: the multi-step strategy and the
ARIMA orders. Unset keys resolve per source (`settings.resolve`): the
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

The package holds the task's parts: `settings.py` (the per-source values of
the unset keys), `prepare.py` (`Prepared`: the series split, transformed,
adjusted and scaled, the residual base and seasonal adjustment chosen on the
validation part) and `evaluate.py` (the final evaluation against the
baselines, and the plot). Loading, splitting and scaling a series, its season
and the seasonal adjustment's maths are data: `lstm_jax.data.series`,
`season` and `deseason`.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from lstm_jax.data import series
from lstm_jax.errors import ConfigError
from lstm_jax.models.forecaster import Forecaster, RelativeForecaster
from lstm_jax.nn.layers import lstm_from_config
from lstm_jax.tasks.base import Batch, Datasets, Metrics
from lstm_jax.tasks.forecast import settings
from lstm_jax.tasks.forecast.evaluate import final_evaluation
from lstm_jax.tasks.forecast.prepare import Prepared

__all__ = [
  "RESUMABLE_KEYS", "TOKEN_METRIC", "final_evaluation", "loss_and_metrics",
  "make_datasets", "make_model", "report", "validate",
]  # fmt: skip

TOKEN_METRIC = "mse"  # a "token" is one window
RESUMABLE_KEYS = ("data.path", "forecast.plot", "forecast.fallback")


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
  if settings.transform_name(config) not in series.TRANSFORMS:
    raise ConfigError(
      f"data.transform must be one of {series.TRANSFORMS}, got {d.transform!r}"
    )
  if f.strategy is not None and f.strategy not in settings.STRATEGIES:
    raise ConfigError(
      f"forecast.strategy must be one of {settings.STRATEGIES}, got {f.strategy!r}"
    )
  if d.deseason is not None and d.deseason not in settings.DESEASONS:
    raise ConfigError(
      f"data.deseason must be one of {settings.DESEASONS}, got {d.deseason!r}"
    )
  if (
    config.model.residual is not None
    and config.model.residual not in settings.RESIDUALS
  ):
    raise ConfigError(
      f"model.residual must be one of {settings.RESIDUALS}, got {config.model.residual!r}"
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
  m, drift, average = settings.base_season(r["residual"], r["season"])
  cls = RelativeForecaster if r["relative"] else Forecaster
  return cls(
    lstm=lstm_from_config(config.model.lstm),
    horizon=settings.horizon(r),
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
