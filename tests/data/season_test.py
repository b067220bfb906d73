"""The seasonal period: pandas' date frequencies, the ACF fallback, and what a
CSV run of the forecast task resolves and reports (seeded data)."""

import numpy as np
import pytest

from lstm_jax.data import season, series
from lstm_jax.errors import ConfigError

pd = pytest.importorskip("pandas")

# pandas frequency -> the calendar cycle in steps (the period a seasonal
# naive forecast of such data uses).
KNOWN = {"MS": 12, "ME": 12, "QS": 4, "QE-DEC": 4, "D": 7, "B": 5, "h": 24,
         "W-SUN": 52, "YS": 1, "2h": 12}  # fmt: skip


@pytest.mark.parametrize("freq", sorted(KNOWN))
def test_period_from_pandas_date_frequency(freq):
  dates = pd.date_range("2001-01-01", periods=40, freq=freq)
  for fmt in ("%Y-%m-%d %H:%M:%S", None):
    text = dates.strftime(fmt) if fmt else dates.astype(str)
    m, why = season.from_dates(list(text))
    assert m == KNOWN[freq], why


def test_month_and_quarter_strings_and_years():
  assert season.from_dates(["1949-01", "1949-02", "1949-03"])[0] == 12
  assert season.from_dates(["1960Q1", "1960Q2", "1960Q3", "1960Q4"])[0] == 4
  assert season.from_dates(["1871", "1872", "1873"])[0] == 1


@pytest.mark.parametrize(
  "dates, why",
  [
    (["2001-01-01", "2001-01-02", "2001-01-05", "2001-01-06"], "irregular"),
    (["a", "b", "c", "d"], "does not parse"),
    (["0", "1", "2", "3"], "numbers"),
  ],
)
def test_no_period_from_irregular_or_unparsable_dates(dates, why):
  m, reason = season.from_dates(dates)
  assert m is None and why in reason


def _seasonal(n, m, seed=0, trend=0.05):
  rng = np.random.default_rng(seed)
  t = np.arange(n)
  return trend * t + np.sin(2 * np.pi * t / m) + 0.2 * rng.normal(size=n)


@pytest.mark.parametrize("m", [4, 7, 12])
def test_acf_finds_the_period_of_a_trending_seasonal_series(m):
  assert season.from_acf(_seasonal(240, m, seed=m))[0] == m


def test_acf_of_noise_is_period_1():
  m, why = season.from_acf(np.random.default_rng(1).normal(size=300).cumsum())
  assert m == 1 and "period 1" in why


def _config(path, **data):
  from experiments import forecast as experiment

  config = experiment.get_config("")  # the CSV defaults (nothing is trained)
  config.data.dataset = ""
  config.data.path = str(path)
  config.data.columns = "y"
  for key, value in data.items():
    config.data[key] = value
  return config


def _write(tmp_path, dates, y, name="s.csv"):
  path = tmp_path / name
  path.write_text("date,y\n" + "".join(f"{d},{float(v)!r}\n" for d, v in zip(dates, y)))
  return path


def test_csv_run_uses_the_dates_period_for_seasonal_naive(tmp_path):
  from lstm_jax.tasks.forecast import evaluate, prepare

  y = 10 + _seasonal(120, 12, seed=3)
  dates = pd.date_range("1990-01-01", periods=120, freq="MS").strftime("%Y-%m")
  p = prepare.Prepared(_config(_write(tmp_path, dates, y)))
  assert p.settings["season"] == 12 and "monthly" in p.settings["season_from"]
  assert "season 12 (monthly dates (MS))" in p.describe()
  assert p.settings["seasonal_order"] == (0, 1, 1, 12)
  # The run's seasonal naive repeats the last 12 observed months.
  config = _config(_write(tmp_path, dates, y))
  config.forecast.arima = False
  got = evaluate.baseline_forecasts(config, p)["seasonal_naive"]["multi"]
  np.testing.assert_array_equal(got, np.resize(y[p.test_start - 12 : p.test_start], 24))
  # "auto" picks the base with the lowest validation MAE, computed here by hand.
  v0, t0, L = p.valid_start, p.test_start, p.settings["input_len"]
  w = y[v0 - L : v0]
  drift = np.mean(w[12:] - w[:-12])
  j = np.arange(t0 - v0)
  bases = {
    "seasonal": np.resize(y[v0 - 12 : v0], t0 - v0),
    "seasonal_drift": w[L - 12 + j % 12] + (j // 12 + 1) * drift,
    "naive": np.full(t0 - v0, y[v0 - 1]),
  }
  # The adjusted candidates: statsmodels' classical decomposition of the
  # training part gives the seasonal indices (position k = t mod 12).
  from statsmodels.tsa.seasonal import seasonal_decompose

  s = seasonal_decompose(y[:v0], model="additive", period=12).seasonal[:12]
  # float64 seasonal indices vs the same computation: rounding only
  np.testing.assert_allclose(p.candidate_indices["additive"], s, atol=1e-12)
  adjusted, ahead = y[:v0] - s[np.arange(v0) % 12], s[np.arange(v0, t0) % 12]
  bases["additive naive"] = adjusted[-1] + ahead
  bases["additive mean"] = adjusted[-12:].mean() + ahead
  for name, f in bases.items():
    want = np.abs(f - y[v0:t0]).mean()
    # float64 MAE of the same residuals computed two ways: rounding only
    assert p.settings["residual_valid_mae"][name] == pytest.approx(want, rel=1e-9)
  best = min(p.settings["residual_valid_mae"], key=p.settings["residual_valid_mae"].get)
  chosen = f"{p.settings['deseason']} {p.settings['residual']}".strip()
  assert chosen == best


def test_csv_with_irregular_dates_runs_on_the_acf_period(tmp_path):
  from lstm_jax.tasks.forecast import prepare

  y = _seasonal(200, 7, seed=4)
  days = np.cumsum(np.random.default_rng(0).integers(1, 3, size=200))
  dates = (pd.Timestamp("2020-01-01") + pd.to_timedelta(days, "D")).strftime("%Y-%m-%d")
  p = prepare.Prepared(_config(_write(tmp_path, dates, y)))
  assert p.settings["season"] == 7
  assert p.describe().startswith(
    f"{tmp_path / 's.csv'}: season 7 (the dates are irregular"
  )


@pytest.mark.parametrize("bad", [0, -3, 1000])
def test_bad_season_is_one_clear_error(tmp_path, bad):
  from lstm_jax.tasks import forecast
  from lstm_jax.tasks.forecast import prepare

  y = _seasonal(120, 12)
  path = _write(tmp_path, range(120), y)
  config = _config(path, season=bad)
  with pytest.raises(ConfigError, match=rf"data\.season must be .*got {bad}"):
    forecast.validate(config)
    prepare.Prepared(config)


def test_explicit_season_overrides_the_dates(tmp_path):
  from lstm_jax.tasks.forecast import prepare

  dates = pd.date_range("1990-01-01", periods=120, freq="MS").strftime("%Y-%m")
  p = prepare.Prepared(_config(_write(tmp_path, dates, _seasonal(120, 12)), season=6))
  assert p.settings["season"] == 6 and p.settings["season_from"] == "data.season"


def test_series_keeps_the_first_column_as_dates(tmp_path):
  path = _write(tmp_path, ["2001-01", "2001-02", "2001-03"], [1.0, 2.0, 3.0])
  assert series.load_series(str(path), "y").dates == ("2001-01", "2001-02", "2001-03")
  path = _write(tmp_path, [1, 2, 3], [1.0, 2.0, 3.0], "n.csv")
  assert series.load_series(str(path), "date,y").dates is None  # a value column


def test_yearly_dates_fall_back_to_the_acf():
  y = _seasonal(150, 10, seed=2, trend=0.0)  # a 10-year cycle in yearly data
  years = [str(1800 + i) for i in range(150)]
  m, why = season.infer(y, years)
  assert m == 10 and why.startswith("yearly dates (consecutive years); autocorr")
  m, _ = season.infer(np.random.default_rng(3).normal(size=150), years)
  assert m == 1
