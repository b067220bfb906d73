"""The forecasting task's per-source settings, scaled to the data for a CSV.

The keys a user may leave unset (`KEYS`: the season, window, horizon,
strategy, residual, relative windows, transform, ARIMA orders) resolve here:
a set key wins; otherwise the statsmodels shortcut's value (`DEFAULTS`), or,
for a CSV, `csv_defaults` of its season and part lengths. The season of a CSV
comes from its training part only (`season.infer`: the dates' frequency, else
the autocorrelation).
"""

from __future__ import annotations

from typing import Any

import ml_collections

from lstm_jax.data import season, series
from lstm_jax.errors import ConfigError

STRATEGIES = ("recursive", "direct")
# model.residual: the base forecast the model corrects ("" = none). "auto"
# picks, among those the window allows, the one with the lowest multi-step MAE
# over the validation part from the end of the training part (no training,
# no holdout value): a trend-aware base for a trending series, plain seasonal
# naive for a level one.
# "mean": the mean of the window's last season, repeated (a level for a
# seasonally adjusted series). "auto" also chooses `data.deseason` when that
# is "auto" (every base on the series as it is, and naive, naive_drift and
# mean on the additively and, for a positive series, multiplicatively adjusted
# one), by the same validation MAE.
RESIDUALS = ("", "seasonal", "seasonal_drift", "naive", "naive_drift", "mean", "auto")
# data.deseason: remove the training part's seasonal indices before the model
# sees the series (`lstm_jax.data.deseason`), or "auto" (with model.residual).
DESEASONS = ("", "additive", "multiplicative", "auto")
# Per-source values of the unset keys. Sunspots: the ~11-year solar cycle,
# direct 11-year blocks, no transform (the lowest validation MAE of the
# configurations in experiments/forecast.py's table); co2: monthly, where a
# non-seasonal ARIMA reverts to the mean over the holdout (MAE 16.3) while
# (1,1,1)x(0,1,1,12) gets 1.74 (`lstm_jax.baselines.forecast`). CSV:
# `csv_defaults`, scaled to the data.
DEFAULTS = {
  "sunspots": {"season": 11, "input_len": 33, "horizon": 11, "strategy": "direct",
               "residual": "", "relative": False, "transform": "", "deseason": "",
               "arima_order": (2, 0, 1), "seasonal_order": (0, 0, 0, 0)},
  "co2": {"season": 12, "input_len": 36, "horizon": 12, "strategy": "recursive",
          "residual": "", "relative": True, "transform": "", "deseason": "",
          "arima_order": (1, 1, 1), "seasonal_order": (0, 1, 1, 12)},
}  # fmt: skip
KEYS = {
  "season": "data.season", "input_len": "data.input_len", "horizon": "data.horizon",
  "transform": "data.transform", "deseason": "data.deseason",
  "strategy": "forecast.strategy",
  "residual": "model.residual", "relative": "model.relative",
  "arima_order": "forecast.arima_order", "seasonal_order": "forecast.seasonal_order",
}  # fmt: skip


def csv_defaults(season: int, train_len: int, valid_len: int) -> dict[str, Any]:
  """Unset keys of a CSV, scaled to its season m and part lengths.

  Window: two seasons (the drift base reads a seasonal change), at most a third
  of the training part (enough training windows on a short series), at least
  4 steps. Direct blocks of one season (at most the validation part, whose
  windows pick the checkpoint); recursive when m = 1. Relative windows (a
  trend leaves the training range), the "auto" residual and seasonal
  adjustment (chosen together on the validation part), and SARIMA
  (1,1,1)x(0,1,1,m) (the co2 model) or ARIMA(1,1,1) when m = 1.
  """
  window = max(4, min(2 * season if season > 1 else 24, train_len // 3))
  return {
    "input_len": window,
    "horizon": max(1, min(season, valid_len)),
    "strategy": "direct" if season > 1 else "recursive",
    "residual": "auto",
    "deseason": "auto" if season > 1 else "",
    "relative": True,
    "transform": "",
    "arima_order": (1, 1, 1),
    "seasonal_order": (0, 1, 1, season) if season > 1 else (0, 0, 0, 0),
  }


def transform_name(config: ml_collections.ConfigDict) -> str:
  """`data.transform`, or the source's default when unset."""
  if config.data.transform is not None:
    return config.data.transform
  return DEFAULTS.get(config.data.dataset, {}).get("transform", "")


def _get(config, key):
  section, name = KEYS[key].split(".")
  return config[section][name]


def resolve(config: ml_collections.ConfigDict, s: series.Series) -> dict[str, Any]:
  """Every source-dependent setting: the set keys, the rest from the defaults.

  The season of a CSV is inferred from its training part (`season.infer`);
  "auto" residuals are resolved later, by `Prepared`.
  """
  d = config.data
  valid_start, test_start = series.split_points(len(s.values), d.holdout, d.valid)
  out = {"season_from": "data.season"}
  if d.season is not None:
    out["season"] = int(d.season)
  elif d.dataset:
    out["season"], out["season_from"] = DEFAULTS[d.dataset]["season"], d.dataset
  else:
    train = s.target_values[:valid_start]
    dates = s.dates[:valid_start] if s.dates is not None else None
    out["season"], out["season_from"] = season.infer(train, dates)
  m, most = out["season"], valid_start // 2
  if d.season is None and m > most:  # e.g. monthly dates, under 2 years to train
    out["season"], out["season_from"] = 1, f"{out['season_from']}: over {most}, so 1"
    m = 1
  if not 1 <= m <= most:
    raise ConfigError(
      f"data.season must be an integer in [1, {valid_start // 2}] (half the "
      f"{valid_start}-step training part of {s.source}), got {d.season!r}"
    )
  base = DEFAULTS.get(d.dataset) or csv_defaults(
    m, valid_start, test_start - valid_start
  )
  for key in KEYS:
    if key != "season":
      value = _get(config, key)
      out[key] = base[key] if value is None else value
  out["arima_order"] = tuple(out["arima_order"])
  out["seasonal_order"] = tuple(out["seasonal_order"])
  return out


def horizon(r: dict[str, Any]) -> int:
  """Values per model call: 1 for the recursive strategy, the horizon direct."""
  return 1 if r["strategy"] == "recursive" else r["horizon"]


def base_season(residual: str, season: int) -> tuple[int, bool, bool]:
  """(m, drift, average) of a residual's base forecast; m = 0 for none.

  The base repeats the window's last m values (seasonal naive; m = 1 naive),
  plus the mean change per m steps with `drift`, or, with `average`, repeats
  the mean of the last m values ("mean")."""
  if not residual:
    return 0, False, False
  if residual == "mean":
    return season, False, True
  m = 1 if residual.startswith("naive") else season
  return m, residual.endswith("drift"), False
