"""The forecasting task's final evaluation: the model's holdout forecasts on
the original scale, scored beside the baselines fit on the same history, and
the plot of them (`lstm_jax.tasks.forecast` lists the metrics)."""

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
from lstm_jax.models.forecaster import rollout
from lstm_jax.tasks.base import Datasets
from lstm_jax.tasks.forecast.prepare import Prepared
from lstm_jax.util import plotting

PLOT_FILE = "forecast.png"


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
