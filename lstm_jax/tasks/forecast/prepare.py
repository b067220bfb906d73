"""The forecasting task's data: a series loaded, its settings resolved, split,
transformed, seasonally adjusted and scaled (`Prepared`), with the residual
base and the seasonal adjustment chosen on the validation part.

`lstm_jax.tasks.forecast` documents the task and its config.
"""

from __future__ import annotations

import hashlib
from typing import Any

import ml_collections
import numpy as np

from lstm_jax.baselines import forecast as baselines
from lstm_jax.data import deseason, series
from lstm_jax.errors import ConfigError, DataError
from lstm_jax.tasks.forecast import settings


class Prepared:
  """The loaded series, its resolved settings, split points and scaled values.

  The target is transformed (`data.transform`), then seasonally adjusted with
  the training part's indices (`data.deseason`), then scaled with the training
  part's statistics; `back` undoes all three for a span of positions.
  """

  def __init__(self, config: ml_collections.ConfigDict):
    d = config.data
    self.series = series.load_series(d.dataset or d.path, d.columns or "", d.target)
    self.settings = r = settings.resolve(config, self.series)
    self.transform = r["transform"]
    values = self.series.values.copy()
    t = self.target = self.series.target
    values[:, t] = series.transform(values[:, t], self.transform, self.series.source)
    self.valid_start, self.test_start = series.split_points(
      len(values), d.holdout, d.valid
    )
    self._z = values[:, t].copy()  # the transformed target, before adjustment
    self._choose_base(self._z)
    if r["deseason"]:
      values[:, t] = deseason.adjust(values[:, t], self.indices, r["deseason"])
    self.scaler = series.Scaler.fit(values[: self.valid_start])
    self.scaled = self.scaler.transform(values)
    src, L, h = self.series.source, r["input_len"], settings.horizon(r)
    self.train = series.windows(
      self.scaled[: self.valid_start], L, h, t, f"{src} (train part)"
    )
    # Validation windows may read the end of the training part; their targets
    # all lie in the validation part.
    lo = self.valid_start - L
    if lo < 0:
      raise DataError(
        f"{src}: the training part ({self.valid_start} steps) is shorter than "
        f"one input window (data.input_len {L})"
      )
    self.valid = series.windows(
      self.scaled[lo : self.test_start], L, h, t, f"{src} (validation part)"
    )

  def _choose_base(self, z: np.ndarray) -> None:
    """Resolves "auto" residual and seasonal adjustment (`z`: the transformed
    target); checks the window fits the residual's base.

    Each candidate (adjustment, base) forecasts the validation part from the
    end of the training part; the lowest MAE on the original scale wins. The
    seasonal indices come from the training part alone.
    """
    r, L, m, v0 = (
      self.settings,
      self.settings["input_len"],
      self.settings["season"],
      self.valid_start,
    )
    fits = {
      name: m_ + drift <= L
      for name in settings.RESIDUALS[1:-1]
      for m_, drift, _ in [settings.base_season(name, m)]
    }
    kinds = [r["deseason"]] if r["deseason"] != "auto" else [""]
    if r["deseason"] == "auto" and m > 1 and v0 >= 2 * m + 1:
      kinds += ["additive"] + (["multiplicative"] if np.all(z[:v0] > 0) else [])
    if r["deseason"] and r["deseason"] != "auto" and m < 2:
      raise ConfigError(f"data.deseason={r['deseason']!r} needs a season >= 2, got {m}")
    self.candidate_indices = {k: deseason.indices(z[:v0], m, k) for k in kinds if k}
    if r["residual"] == "auto":
      t0, y = self.test_start, self.series.target_values[v0 : self.test_start]
      maes = {}
      for kind in kinds:
        names = [n for n, ok in fits.items() if ok]
        if kind:  # the adjusted series has no season left to repeat
          names = [n for n in names if n in ("naive", "naive_drift", "mean")]
        for name in names:
          fc = self._base(z, kind, name, v0, t0 - v0)
          maes[f"{kind + ' ' if kind else ''}{name}"] = (
            baselines.mae(y, fc),
            kind,
            name,
          )
      best = min(maes, key=lambda k: maes[k][0])
      r["residual_valid_mae"] = {k: v[0] for k, v in maes.items()}
      r["deseason"], r["residual"] = maes[best][1], maes[best][2]
    else:
      if r["deseason"] == "auto":
        r["deseason"] = ""
      if r["residual"] and not fits[r["residual"]]:
        m_, drift, _ = settings.base_season(r["residual"], m)
        raise ConfigError(
          f"model.residual={r['residual']!r} needs data.input_len >= "
          f"{m_ + drift} (season {m_}{' + 1 for the drift' if drift else ''}), got {L}"
        )
    self.indices = self.candidate_indices.get(r["deseason"])  # <float64>[m] or None

  def _base(self, z, kind: str, residual: str, origin: int, steps: int) -> np.ndarray:
    """<float64>[steps] a base forecast from z[:origin] (the transformed
    target) after adjustment `kind`, on the original scale. The bases are
    affine-equivariant, so computing them before scaling is the same."""
    m, drift, average = settings.base_season(residual, self.settings["season"])
    s = self.candidate_indices.get(kind)
    h = deseason.adjust(z[:origin], s, kind) if kind else np.asarray(z[:origin])
    if average:
      fc = np.full(steps, h[origin - m :].mean())
    elif drift:
      fc = baselines.seasonal_drift(h, steps, m, self.settings["input_len"])
    else:
      fc = np.resize(h[origin - m :], steps)
    if kind:
      fc = deseason.readjust(fc, s, kind, origin)
    return series.untransform(fc, self.transform)

  def base_forecast(self, residual: str, origin: int, steps: int) -> np.ndarray:
    """<float64>[steps] a residual's base forecast from the values before
    `origin` over its window (what the untrained model forecasts), on the
    original scale."""
    return self._base(self._z, self.settings["deseason"], residual, origin, steps)

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
      "settings": {k: list(v) if isinstance(v, tuple) else v
                   for k, v in self.settings.items()},
    }  # fmt: skip

  def back(self, scaled_target: Any, start: int) -> np.ndarray:
    """Scaled target values of positions start, start + 1, ... (along the last
    axis) -> the original scale: unscaled, readjusted, untransformed."""
    x = self.scaler.inverse(np.asarray(scaled_target, np.float64), self.target)
    if self.settings["deseason"]:
      x = deseason.readjust(x, self.indices, self.settings["deseason"], start)
    return series.untransform(x, self.transform)

  def describe(self) -> str:
    """One line: the season and where it came from, the residual chosen."""
    r = self.settings
    line = f"{self.series.source}: season {r['season']} ({r['season_from']})"
    if r["deseason"]:
      line += f"; {r['deseason']} seasonal adjustment"
    if "residual_valid_mae" in r:
      maes = ", ".join(f"{k} {v:.4g}" for k, v in r["residual_valid_mae"].items())
      line += f"; residual {r['residual'] or 'none'} (validation MAE: {maes})"
    return line
