r"""Runs every task at a documented CPU budget and writes benchmarks/RESULTS.md.

  python benchmarks/tasks.py                      # everything (hours on 2 cores)
  python benchmarks/tasks.py --only=forecast,copy  # some groups
  python benchmarks/tasks.py --seeds=1            # one seed per entry
  python benchmarks/tasks.py --runs_dir=/tmp/b --report_only  # re-read runs

Each entry is one `python -m lstm_jax.main` command per seed, in
`<runs_dir>/<entry>_s<seed>`. A workdir that already holds a test record is
read, not retrained (delete it to rerun); an unfinished one is resumed.
Minutes are the wall time between the run's config.json and its last
metrics record (resumed runs include the gap). The table holds our figure
(mean +- sample std over the seeds that finished) and the same-split
baseline. UCR/UEA classification: benchmarks/ucr_all.py. Entries with no
finished run in runs_dir (or left out by --only) keep their row of the
existing RESULTS.md, and the notes written after the table are kept.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# UCR/UEA classification is not here: benchmarks/ucr_all.py runs the one
# default config on every shipped set beside same-run MiniRocket and 1-NN DTW
# (the per-set flags this table once used were chosen on test means).

# name -> (group, config, flags, metric, baseline keys or note, seeds)
ENTRIES = {
  # The default (no transform: chosen on validation) and the sqrt rows of
  # experiments/forecast.py's table.
  "sunspots": ("forecast", "experiments/forecast.py", [], "mae", None, 1),
  "sunspots_sqrt": ("forecast", "experiments/forecast.py", ["--config.data.transform=sqrt"], "mae", None, 3),
  "sunspots_sqrt_recursive": ("forecast", "experiments/forecast.py", ["--config.data.transform=sqrt", "--config.forecast.strategy=recursive"], "mae", None, 1),
  "sunspots_sqrt_recursive_relative": ("forecast", "experiments/forecast.py", ["--config.data.transform=sqrt", "--config.forecast.strategy=recursive", "--config.model.relative=True"], "mae", None, 1),
  "co2": ("forecast", "experiments/forecast.py:co2", [], "mae", None, 3),
  "seq2seq_addition_lsb": ("seq2seq", "experiments/seq2seq.py", [], "exact_match", None, 1),
  "seq2seq_addition": ("seq2seq", "experiments/seq2seq.py:addition", [], "exact_match", None, 1),
  "seq2seq_reversal": ("seq2seq", "experiments/seq2seq.py:reversal", [], "exact_match", None, 1),
  "adding_T200": ("adding", "experiments/adding.py", [], "mse", None, 1),
  "adding_T400": ("adding", "experiments/adding.py", ["--config.data.seq_len=400", "--config.train.steps=2000"], "mse", None, 1),
  "copy_T100": ("copy", "experiments/copy.py", [], "ce_ratio", None, 1),
  "copy_T200": ("copy", "experiments/copy.py", ["--config.data.seq_len=200", "--config.train.steps=25000"], "ce_ratio", None, 1),
  # adding_T400 with the plain init (forget_bias 1, no chrono): the
  # vanishing-gradient comparison.
  "adding_T400_plain": ("adding", "experiments/adding.py:plain", ["--config.data.seq_len=400", "--config.train.steps=2000"], "mse", None, 1),
}  # fmt: skip


def _test_record(workdir: Path) -> dict | None:
  path = workdir / "metrics.jsonl"
  if not path.is_file():
    return None
  tests = [json.loads(x) for x in path.read_text().splitlines() if '"test"' in x]
  tests = [r for r in tests if r.get("split") == "test"]
  return tests[-1] if tests else None


def _minutes(workdir: Path) -> float:
  start = (workdir / "config.json").stat().st_mtime
  return ((workdir / "metrics.jsonl").stat().st_mtime - start) / 60


def run_entry(
  name: str, runs_dir: Path, seeds: int, train: bool
) -> list[tuple[dict, float]]:
  """(test record, minutes) of each finished seed of `name`."""
  _, config, flags, *_, n_seeds = ENTRIES[name]
  out = []
  for seed in range(min(seeds, n_seeds)):
    workdir = runs_dir / f"{name}_s{seed}"
    if _test_record(workdir) is None and train:
      cmd = [sys.executable, "-m", "lstm_jax.main", f"--config={config}", *flags,
             f"--config.seed={seed}", f"--workdir={workdir}"]  # fmt: skip
      print("+", " ".join(cmd), flush=True)
      subprocess.run(cmd, cwd=REPO, check=False)
    record = _test_record(workdir)
    if record is not None:
      out.append((record, _minutes(workdir)))
  return out


def _stat(values: list[float]) -> str:
  if not values:
    return "not run"
  if len(values) == 1:
    return f"{values[0]:.4g} (1 seed)"
  return f"{statistics.mean(values):.4g} +- {statistics.stdev(values):.2g} ({len(values)} seeds)"


def baseline(name: str, records: list[dict]) -> str:
  group = ENTRIES[name][0]
  if group == "forecast" and records:
    r = records[0]
    return (
      f"seasonal naive {r['seasonal_naive/mae']:.4g}, naive {r['naive/mae']:.4g}, "
      f"ARIMA {r['arima/mae']:.4g} (same split, same run)"
    )
  if group == "adding":
    return "always 1: 0.167; target < 0.01"
  if group == "copy":
    return "memoryless: 1.0 by definition; target < 0.1"
  if group == "seq2seq" and records:
    longer = [r.get("exact_match/longer") for r in records]
    return f"longer than training: {_stat([x for x in longer if x is not None])}"
  return ""


def _previous(path: Path) -> tuple[dict[str, str], list[str]]:
  """The table rows by entry, and the hand-written text after the table, of `path`."""
  if not path.is_file():
    return {}, []
  rows, tail, in_table, after = {}, [], False, False
  for line in path.read_text().splitlines():
    if line.startswith("| ") and not after:
      in_table = True
      rows[line.split("|")[1].strip()] = line
    elif in_table and not line.startswith("|"):
      after = True
    if after:
      tail.append(line)
  return rows, tail


def write_results(results: dict[str, list[tuple[dict, float]]], path: Path) -> None:
  """The table of `results`; entries with no run keep their row of `path`.

  So a partial rerun (`--only`, or a runs_dir holding some entries) updates
  its rows in place, and the hand-written notes after the table survive.
  """
  previous, tail = _previous(path)
  lines = [
    "# Task benchmarks (CPU)",
    "",
    "Written by `python benchmarks/tasks.py`; the commands are in its `ENTRIES`.",
    "Figures are test-split values of each run's `metrics.jsonl` (the best",
    "checkpoint by validation). Forecast MAE is multi-step over the whole",
    "holdout (last 20%), original units. Minutes are wall time on the shared",
    "2-core machine (often under heavy load from other jobs).",
    "",
    "| entry | metric | ours | baseline / reference | minutes per run |",
    "|---|---|---|---|---|",
  ]
  for name, got in results.items():
    metric = ENTRIES[name][3]
    if not got and name in previous:
      lines.append(previous[name])
      continue
    records = [r for r, _ in got]
    ours = _stat([r[metric] for r in records if metric in r])
    mins = _stat([m for _, m in got]).replace(" seeds)", ")").replace(" (1 seed)", "")
    lines.append(f"| {name} | {metric} | {ours} | {baseline(name, records)} | {mins} |")
  path.write_text("\n".join(lines + tail) + "\n")
  print(f"wrote {path}")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--runs_dir", default=str(REPO / "benchmarks" / "runs"))
  parser.add_argument("--only", default="", help="comma-separated groups or entries")
  parser.add_argument("--seeds", type=int, default=3)
  parser.add_argument("--report_only", action="store_true")
  parser.add_argument("--out", default=str(REPO / "benchmarks" / "RESULTS.md"))
  args = parser.parse_args()
  only = {x for x in args.only.split(",") if x}
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  results = {}
  for name, entry in ENTRIES.items():
    selected = not only or name in only or entry[0] in only
    results[name] = (
      run_entry(name, Path(args.runs_dir), args.seeds, not args.report_only)
      if selected
      else []
    )
  write_results(results, Path(args.out))


if __name__ == "__main__":
  main()
