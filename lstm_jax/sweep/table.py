"""The results of a sweep: every trial directory read back, ranked, written.

A trial directory is an ordinary run's workdir plus `trial.json` (written by
`lstm_jax.sweep.runner` when the trial ends: its overrides, status and results).
`collect` reads every trial under a sweep's workdir (also those of other
shards, or still running), `write_table` ranks them by the best value of the
sweep's metric in their `metrics.jsonl` eval records and writes
`results.csv`, `results.md` and `results.png` (the metric against the step,
one line per trial, best first).
"""

from __future__ import annotations

import csv
import json
import math
import os
from typing import Any

from lstm_jax.training import metrics
from lstm_jax.util import plotting

TRIAL_FILE = "trial.json"


def read_trial(trial_dir: str) -> dict[str, Any] | None:
  """The trial.json of `trial_dir`, or None if the trial has not ended."""
  path = os.path.join(trial_dir, TRIAL_FILE)
  if not os.path.exists(path):
    return None
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def write_trial(trial_dir: str, record: dict[str, Any]) -> None:
  """Writes trial.json atomically (the marker that the trial has ended)."""
  path = os.path.join(trial_dir, TRIAL_FILE)
  with open(f"{path}.tmp", "w", encoding="utf-8") as f:
    json.dump(record, f, indent=2, sort_keys=True, default=float)
  os.replace(f"{path}.tmp", path)


def eval_history(trial_dir: str, metric: str) -> list[tuple[int, float]]:
  """(step, value) of `metric` ("eval/<name>") at each eval of the trial."""
  name = metric.removeprefix("eval/")
  path = os.path.join(trial_dir, metrics.METRICS_FILE)
  return [
    # metrics.jsonl writes NaN and infinities as null.
    (int(r["step"]), math.nan if r[name] is None else float(r[name]))
    for r in metrics.read_jsonl(path)
    if r.get("split") == "eval" and name in r
  ]


def best_of(history: list[tuple[int, float]], mode: str) -> tuple[float, int | None]:
  """(best value, its step) of a history; NaN and None if it has none."""
  finite = [(v, s) for s, v in history if math.isfinite(v)]
  if not finite:
    return math.nan, None
  value, step = (min if mode == "min" else max)(finite)
  return value, step


def collect(workdir: str, metric: str, mode: str) -> list[dict[str, Any]]:
  """One row per trial directory under `workdir`, ranked (best first).

  Trials with no finite value (diverged, not started) come last.
  """
  rows = []
  for name in sorted(os.listdir(workdir)):
    trial_dir = os.path.join(workdir, name)
    if not os.path.isfile(os.path.join(trial_dir, "config.json")):
      continue
    record = read_trial(trial_dir) or {"status": "running", "overrides": {}}
    history = eval_history(trial_dir, metric)
    value, step = best_of(history, mode)
    rows.append(
      {
        "trial": name,
        "status": record["status"],
        metric: value,
        "best_step": step,
        "last_step": history[-1][0] if history else 0,
        "overrides": record.get("overrides", {}),
        "history": history,
      }
    )
  sign = 1.0 if mode == "min" else -1.0
  rows.sort(
    key=lambda r: (
      math.isnan(r[metric]),
      sign * r[metric] if not math.isnan(r[metric]) else 0.0,
      r["trial"],
    )
  )
  for rank, row in enumerate(rows, 1):
    row["rank"] = rank
  return rows


def write_table(workdir: str, metric: str, mode: str) -> list[dict[str, Any]]:
  """Writes results.csv / .md / .png under `workdir`; returns the rows."""
  rows = collect(workdir, metric, mode)
  keys = sorted({k for r in rows for k in r["overrides"]})
  header = ["rank", "trial", "status", metric, "best_step", "last_step", *keys]

  def cells(row):
    return [
      row["rank"],
      row["trial"],
      row["status"],
      row[metric],
      row["best_step"],
      row["last_step"],
      *(row["overrides"].get(k, "") for k in keys),
    ]

  with open(
    os.path.join(workdir, "results.csv"), "w", newline="", encoding="utf-8"
  ) as f:
    writer = csv.writer(f)
    writer.writerow(header)
    writer.writerows(cells(r) for r in rows)
  with open(os.path.join(workdir, "results.md"), "w", encoding="utf-8") as f:
    f.write(f"Trials ranked by the best {metric} ({mode}).\n\n")
    f.write("| " + " | ".join(header) + " |\n")
    f.write("|" + "---|" * len(header) + "\n")
    for row in rows:
      values = [f"{c:.4f}" if isinstance(c, float) else str(c) for c in cells(row)]
      f.write("| " + " | ".join(values) + " |\n")
  _plot(rows, metric, os.path.join(workdir, "results.png"))
  return rows


def _plot(rows: list[dict[str, Any]], metric: str, path: str) -> None:
  fig = plotting.figure(path, figsize=(7, 4.5))
  if fig is None:  # no matplotlib: the .csv/.md tables are the results
    return
  ax = fig.subplots()
  for row in rows:
    if row["history"]:
      steps, values = zip(*row["history"])
      ax.plot(
        steps,
        values,
        marker="o",
        label=f"#{row['rank']} {row['trial']} ({row['status']})",
      )
  ax.set_xlabel("step")
  ax.set_ylabel(metric)
  ax.set_title(f"sweep trials ranked by best {metric}")
  if rows:
    ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
