r"""Hyperparameter sweeps: one command runs every trial of a sweep file.

  python -m lstm_jax.sweep --config=experiments/charlm.py:tiny \
      --sweep=experiments/sweeps/charlm_lr.py --workdir=runs/sweep

The sweep file declares the trials (`lstm_jax.sweep.spec`). Each trial is an
ordinary run (`train.train_and_evaluate`) in `<workdir>/<trial name>`, the
name derived from its overrides, so one trial can be inspected, sampled from
or resumed on its own. Trials run one after another. When a trial ends its
directory gets `trial.json`; at the end the ranked table (`results.csv`,
`results.md`, `results.png`, `lstm_jax.sweep.table`) is written.

Resuming: running the same command again skips every trial with a
`trial.json` and resumes a killed trial from its latest checkpoint (train.py's
exact resume), so the sweep's results are bit-identical to an uninterrupted
one. Overrides on the command line (`--config.train.steps=20`) apply to every
trial.

Early stopping of bad trials (`"early_stop"` in the sweep file), decided at
each eval after the trial's first `grace_evals` evals:
  * "median": stop a trial whose value is worse than the median of the
    ended trials' values at the same step (once `min_trials` have one).
  * "halving": successive halving, asynchronous: a trial continues past an
    eval only if it is in the best `1/eta` of all trials that reached that
    step (once `min_trials` have).
Both read only other trials' `metrics.jsonl`, so a sweep resumed after a kill
decides the same way. A stopped trial ends with status "pruned" and stays in
the table (its curve shows where it stopped).

Spreading trials over machines: `--shard=i/n` runs trials i, i+n, i+2n, ...
of a grid or random sweep; start one command per machine (i = 0..n-1) with a
shared `--workdir` (a network filesystem), then `--table_only` on any machine
writes the table of all of them. The "median" rule then sees the trials the
other shards have finished. An Optuna sweep spreads by pointing every machine
at one study: the study lives in `<workdir>/optuna.db` (SQLite, fine for a
few machines on a shared disk); each process asks it for the next trial.

"optuna" (`pip install optuna`): the trials are asked from an Optuna study
(TPE sampler seeded with the sweep's seed; the "median" rule becomes Optuna's
MedianPruner, which hears the eval metric at each eval). A killed trial is
asked again with the same parameters and resumes from its checkpoint.
"""

from __future__ import annotations

import os
from typing import Any

import ml_collections
import numpy as np

from lstm_jax import errors
from lstm_jax.sweep import spec as sweep_spec
from lstm_jax.sweep import table as sweep_table
from lstm_jax.sweep.spec import Trial
from lstm_jax.training import build, train


def metric_and_mode(
  config: ml_collections.ConfigDict, spec: dict[str, Any]
) -> tuple[str, str]:
  """The sweep's ranking metric ("eval/<name>") and "min"/"max"."""
  metric = spec.get("metric") or config.checkpoint.best_metric
  if not metric or not metric.startswith("eval/"):
    raise errors.ConfigError(
      f"the sweep ranks trials by an eval metric ('metric': 'eval/<name>' or "
      f"checkpoint.best_metric), got {metric!r}"
    )
  return metric, spec.get("mode") or config.checkpoint.best_mode


def should_prune(
  rule: dict[str, Any],
  workdir: str,
  name: str,
  step: int,
  value: float,
  metric: str,
  mode: str,
) -> bool:
  """The early-stopping decision for trial `name` at `step` (see module doc)."""
  if rule["rule"] == "none":
    return False
  history = sweep_table.eval_history(os.path.join(workdir, name), metric)
  if len([s for s, _ in history if s <= step]) <= rule["grace_evals"]:
    return False
  if not np.isfinite(value):
    return True
  others = []
  for other in sorted(os.listdir(workdir)):
    other_dir = os.path.join(workdir, other)
    if other == name or not os.path.isfile(os.path.join(other_dir, "config.json")):
      continue
    record = sweep_table.read_trial(other_dir)
    if rule["rule"] == "median" and (record is None or record["status"] == "diverged"):
      continue
    at_step = [v for s, v in sweep_table.eval_history(other_dir, metric) if s == step]
    others += [v for v in at_step[-1:] if np.isfinite(v)]
  if len(others) < rule["min_trials"]:
    return False
  sign = 1.0 if mode == "min" else -1.0
  if rule["rule"] == "median":
    return sign * value > sign * float(np.median(others))
  ranked = sorted([sign * v for v in others] + [sign * value])
  keep = max(1, int(np.ceil(len(ranked) / rule["eta"])))
  return sign * value > ranked[keep - 1]


def run_trial(
  trial: Trial, spec: dict[str, Any], workdir: str, metric: str, mode: str, report=None
) -> dict[str, Any] | None:
  """Runs (or resumes, or skips) one trial; returns its trial.json record,
  or None if it was preempted (SIGTERM: rerun the sweep to resume).

  `report(step, value) -> bool`, if given, replaces the early-stopping rule
  (Optuna's pruner).
  """
  trial_dir = os.path.join(workdir, trial.name)
  record = sweep_table.read_trial(trial_dir)
  if record is not None:
    print(f"[sweep] {trial.name}: already {record['status']}, skipped")
    return record
  name = metric.removeprefix("eval/")

  def on_eval(step: int, values: dict[str, float]) -> bool:
    if report is not None:
      return report(step, values[name])
    return should_prune(
      spec["early_stop"], workdir, trial.name, step, values[name], metric, mode
    )

  print(f"[sweep] {trial.name}: {trial.overrides}")
  status, results = None, {}
  # A trial killed after its last eval pruned it (before trial.json) would
  # otherwise train on: decide on its last recorded eval first.
  history = sweep_table.eval_history(trial_dir, metric)
  if history and report is None and on_eval(history[-1][0], {name: history[-1][1]}):
    status, results = "pruned", {"step": history[-1][0]}
  else:
    try:
      results = train.train_and_evaluate(trial.config, trial_dir, on_eval)
      status = results["stopped"]
    except errors.DivergenceError as e:
      status, results = "diverged", {"error": str(e)}
  if status == "preempted":
    return None
  best, best_step = sweep_table.best_of(
    sweep_table.eval_history(trial_dir, metric), mode
  )
  record = {
    "name": trial.name,
    "overrides": trial.overrides,
    "status": status,
    "best": best,
    "best_step": best_step,
    "results": {k: v for k, v in results.items() if isinstance(v, int | float | str)},
  }
  sweep_table.write_trial(trial_dir, record)
  return record


def check_trials(trials: list[Trial]) -> None:
  """Checks every trial's config (`build.validate`) before any trial runs."""
  for trial in trials:
    build.validate(trial.config)


def run(
  config: ml_collections.ConfigDict,
  spec: dict[str, Any],
  workdir: str,
  shard: tuple[int, int] = (0, 1),
) -> list[dict[str, Any]]:
  """Runs the sweep `spec` (checked, see `sweep_spec.check`) in `workdir`.

  Args:
    config: the base config every trial overrides.
    spec: the sweep (`sweep_spec.load_sweep`).
    workdir: the sweep directory, one subdirectory per trial.
    shard: (i, n): run trials i, i + n, ... of a grid or random sweep.

  Returns:
    The ranked rows of the results table (`sweep_table.collect`).
  """
  metric, mode = metric_and_mode(config, spec)
  if spec["method"] == "optuna":
    from lstm_jax.sweep import optuna_backend as sweep_optuna  # optional dependency

    sweep_optuna.run(config, spec, workdir, metric, mode, run_trial, check_trials)
    return sweep_table.write_table(workdir, metric, mode)
  trials = sweep_spec.plan(config, spec)
  check_trials(trials)
  index, count = shard
  mine = [t for i, t in enumerate(trials) if i % count == index]
  if spec["population"]:
    from lstm_jax.sweep import population

    groups = [
      mine[i : i + spec["population"]] for i in range(0, len(mine), spec["population"])
    ]
    for group in groups:
      population.check_members(group)  # every group before the first runs
  os.makedirs(workdir, exist_ok=True)
  if spec["population"]:
    for group in groups:
      population.run(group, workdir)
  else:
    for trial in mine:
      if run_trial(trial, spec, workdir, metric, mode) is None:
        print("[sweep] preempted; rerun the same command to resume.")
        break
  return sweep_table.write_table(workdir, metric, mode)
