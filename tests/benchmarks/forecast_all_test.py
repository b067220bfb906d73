"""benchmarks/forecast_all.py --tiny: one short CSV run, its inferred period
and its baselines against statsmodels and numpy computed here."""

import numpy as np
import pytest

from benchmarks import forecast_all


@pytest.mark.slow  # ~25 s of CPU (JAX compile, ETS and SARIMA fits)
def test_tiny_run_on_a_quarterly_statsmodels_series(tmp_path):
  sm = pytest.importorskip("statsmodels.api")
  from statsmodels.tsa.statespace.sarimax import SARIMAX

  (row,) = forecast_all.main(["--tiny", "--only=macro_cpi", f"--runs_dir={tmp_path}"])
  y = sm.datasets.macrodata.load_pandas().data["cpi"].to_numpy(float)
  assert (row["known"], row["season"]) == (4, 4)
  assert "quarterly dates" in row["season_from"]
  assert row["line"].startswith(f"{tmp_path / 'macro_cpi.csv'}: season 4 (quarterly")
  n_test = round(0.2 * len(y))
  t0 = len(y) - n_test
  v0 = t0 - round(0.1 * len(y))
  scale = np.abs(y[4:v0] - y[: v0 - 4]).mean()
  snaive = np.resize(y[t0 - 4 : t0], n_test)
  # float64, the same formula: approx's default rel 1e-6 is rounding slack
  assert row["snaive/mase"] == pytest.approx(np.abs(snaive - y[t0:]).mean() / scale)
  sarima = SARIMAX(y[:t0], order=(1, 1, 1), seasonal_order=(0, 1, 1, 4)).fit(disp=False)
  want = np.abs(sarima.forecast(n_test) - y[t0:]).mean() / scale
  # the same statsmodels SARIMAX fit on the same float64 data: optimizer run to the same point; rel 1e-6 covers its rounding
  assert row["arima/mase"] == pytest.approx(want, rel=1e-6)
  assert np.isfinite(row["lstm/mase"]) and np.isfinite(row["ets/mase"])
  table = forecast_all.table([row])
  assert "| macro_cpi | 203 | 4 / 4 (quarterly dates" in table
