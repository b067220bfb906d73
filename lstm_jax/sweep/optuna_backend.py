"""Optuna as a backend of the sweep runner (`"method": "optuna"`).

The study (`<workdir>/optuna.db`, SQLite) asks for each trial's parameters
(TPE, seeded with the sweep's seed); the trial runs through
`sweep.run_trial` like any other, in the directory named by its parameters;
at each eval the trial reports the sweep's metric to the study and stops when
the pruner says so (MedianPruner for the "median" rule, SuccessiveHalving for
"halving", none for "none"). A trial still RUNNING in the study when the
sweep starts was killed: it is marked FAIL and its parameters are enqueued,
so the next ask runs it again in the same directory, resuming its checkpoint.
A trial whose parameters repeat an ended one's reuses its result.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import ml_collections

from lstm_jax import errors
from lstm_jax.sweep import spec as sweep_spec


def _distributions(optuna, params: dict[str, Any]) -> dict[str, Any]:
  dists = {}
  for key, d in params.items():
    if isinstance(d, list):
      dists[key] = optuna.distributions.CategoricalDistribution(d)
    elif isinstance(d, sweep_spec.IntUniform):
      dists[key] = optuna.distributions.IntDistribution(d.low, d.high)
    else:
      log = isinstance(d, sweep_spec.LogUniform)
      dists[key] = optuna.distributions.FloatDistribution(d.low, d.high, log=log)
  return dists


def _pruner(optuna, rule: dict[str, Any], config: ml_collections.ConfigDict):
  if rule["rule"] == "median":
    return optuna.pruners.MedianPruner(
      n_startup_trials=rule["min_trials"],
      n_warmup_steps=rule["grace_evals"] * config.train.eval_every,
    )
  if rule["rule"] == "halving":
    return optuna.pruners.SuccessiveHalvingPruner(reduction_factor=rule["eta"])
  return optuna.pruners.NopPruner()


def run(
  config: ml_collections.ConfigDict,
  spec: dict[str, Any],
  workdir: str,
  metric: str,
  mode: str,
  run_trial: Callable[..., dict[str, Any]],
  check_trials: Callable[[list[Any]], None],
) -> None:
  """Runs `spec["num_trials"]` ended (complete or pruned) trials of a study.

  `run_trial` and `check_trials` are `sweep.run_trial` / `sweep._check_trials`,
  passed in so that this optional backend does not import the runner that
  imports it.
  """
  try:
    import optuna  # optional dependency
  except ImportError as e:
    raise errors.ConfigError(
      "a sweep with method 'optuna' needs `pip install optuna`"
    ) from e
  dists = _distributions(optuna, spec["parameters"])
  # Check every key (and a value's type) before anything is written.
  check_trials(sweep_spec.plan(config, {**spec, "method": "random", "num_trials": 1}))
  os.makedirs(workdir, exist_ok=True)
  optuna.logging.set_verbosity(optuna.logging.WARNING)
  study = optuna.create_study(
    study_name="sweep",
    storage=f"sqlite:///{os.path.abspath(workdir)}/optuna.db",
    load_if_exists=True,
    direction="minimize" if mode == "min" else "maximize",
    sampler=optuna.samplers.TPESampler(seed=spec["seed"]),
    pruner=_pruner(optuna, spec["early_stop"], config),
  )
  state = optuna.trial.TrialState
  for killed in study.get_trials(deepcopy=False, states=(state.RUNNING,)):
    study.tell(killed.number, state=state.FAIL)
    study.enqueue_trial(killed.params)

  def ended() -> int:
    trials = study.get_trials(deepcopy=False)
    done = (state.COMPLETE, state.PRUNED)
    return sum(t.state in done or "diverged" in t.user_attrs for t in trials)

  while ended() < spec["num_trials"]:
    trial = study.ask(dists)
    overrides = {k: trial.params[k] for k in spec["parameters"]}
    t = sweep_spec.make_trial(config, overrides, set())

    def report(step: int, value: float, trial=trial) -> bool:
      trial.report(value, step)
      return trial.should_prune()

    record = run_trial(t, spec, workdir, metric, mode, report=report)
    if record is None:
      print("[sweep] preempted; rerun the same command to resume.")
      return
    if record["status"] == "pruned":
      study.tell(trial, state=state.PRUNED)
    elif record["status"] == "diverged" or record["best"] != record["best"]:
      trial.set_user_attr("diverged", True)
      study.tell(trial, state=state.FAIL)
    else:
      study.tell(trial, record["best"])
