"""Seasonal adjustment (lstm_jax.data.deseason) against statsmodels'
classical decomposition, and the forecasting task's use of it."""

from __future__ import annotations

import numpy as np
import pytest

from lstm_jax.data import deseason
from lstm_jax.errors import DataError

sm_seasonal = pytest.importorskip("statsmodels.tsa.seasonal")


def _series(n, m, kind, seed=0):
  rng = np.random.default_rng(seed)
  t = np.arange(n)
  pattern = rng.normal(size=m)
  level = 50 + 0.3 * t
  noise = rng.normal(scale=0.5, size=n)
  if kind == "multiplicative":
    return level * (1 + 0.2 * pattern[t % m]) + noise
  return level + 5 * pattern[t % m] + noise


@pytest.mark.parametrize("kind", deseason.KINDS)
@pytest.mark.parametrize("m", [4, 7, 12])
def test_indices_equal_statsmodels_seasonal_decompose(kind, m):
  y = _series(10 * m + 3, m, kind)
  s = deseason.indices(y, m, kind)
  want = sm_seasonal.seasonal_decompose(y, model=kind, period=m).seasonal[:m]
  # float64 moving averages vs statsmodels' float64 convolution: rounding of ~m-term sums
  np.testing.assert_allclose(s, want, rtol=1e-10, atol=1e-10)
  # adjust/readjust are inverses at any start position.
  a = deseason.adjust(y, s, kind)
  np.testing.assert_allclose(deseason.readjust(a[5:17], s, kind, 5), y[5:17])


def test_bad_input_names_the_problem():
  with pytest.raises(DataError, match="at least 25 training values"):
    deseason.indices(np.ones(20), 12, "additive")
  with pytest.raises(DataError, match="positive"):
    deseason.indices(np.r_[np.ones(30), -1.0], 4, "multiplicative")


def test_csv_run_adjusts_and_falls_back_on_validation_only(tmp_path):
  """A monthly CSV: "auto" picks an adjusted base; the forecast is the base
  alone exactly when its validation MAE beats the trained model's, and the
  holdout scores then equal the base's."""
  import pandas as pd

  from experiments import forecast as experiment
  from lstm_jax.training import train

  y = _series(144, 12, "multiplicative", seed=2)
  dates = pd.date_range("2000-01-01", periods=len(y), freq="MS").strftime("%Y-%m")
  path = tmp_path / "s.csv"
  path.write_text("date,y\n" + "".join(f"{d},{float(v)!r}\n" for d, v in zip(dates, y)))
  config = experiment.get_config("tiny")
  config.data.dataset, config.data.path, config.data.columns = "", str(path), "y"
  config.forecast.plot = config.forecast.arima = False
  config.train.steps = 20
  res = train.train_and_evaluate(config, str(tmp_path / "run"))
  import json

  settings = json.loads((tmp_path / "run" / "data.json").read_text())["settings"]
  assert settings["deseason"] in deseason.KINDS
  test = {k[5:]: v for k, v in res.items() if k.startswith("test/")}
  use_base = test["valid_multi/base/mae"] < test["valid_multi/mae"]
  assert test["fallback"] == float(use_base)
  want = test["base/mae"] if use_base else test["trained/mae"]
  # float64, the same formula: rounding only
  assert test["mae"] == pytest.approx(want, rel=1e-12)
