"""Open a training run from its workdir, read-only: for sampling, notebooks and
analysis, whatever the task.

`open_run(workdir)` reads `config.json` and `data.json`, rebuilds the task's
model from them and restores the parameters of the latest, the best, or the
tested readable checkpoint. It never writes, deletes or moves anything in the
workdir, so it is safe to call while the run is still training: Orbax's
read-only manager leaves a save in progress and any unreadable step alone.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import flax.linen as nn
import ml_collections

from lstm_jax import errors, tasks
from lstm_jax.training import build, metrics, optim
from lstm_jax.workdir import checkpoint, rundir


@dataclasses.dataclass(frozen=True)
class Run:
  """A trained run, as stored in its workdir.

  Attributes:
    workdir: the run's directory.
    config: the resolved config the run was trained with.
    task: its task (`lstm_jax.tasks.base.Task`).
    info: the data description (`data.json`).
    model: the task's model, built from `config` and `info`.
    params: the restored parameters.
    step: the checkpoint's step.
  """

  workdir: str
  config: ml_collections.ConfigDict
  task: tasks.Task
  info: dict[str, Any]
  model: nn.Module
  params: Any
  step: int

  def read_asset(self, name: str) -> Any:
    """A JSON asset the task wrote into the workdir (e.g. `vocab.json`)."""
    return rundir.read_json(os.path.join(self.workdir, name))


WHICH = ("latest", "best", "tested")


def tested_step(workdir: str) -> int:
  """The step of the checkpoint the run's (last) test record scored.

  Raises:
    errors.LstmJaxError: the run has no test record (unfinished, preempted,
      or a task without a test set).
  """
  path = os.path.join(workdir, rundir.METRICS_FILE)
  tests = [r for r in metrics.read_jsonl(path) if r.get("split") == "test"]
  if not tests or "checkpoint_step" not in tests[-1]:
    raise errors.LstmJaxError(
      f"{path} has no test record, so no checkpoint was tested yet (the run is "
      "unfinished, was preempted, or its task has no test set); open "
      "which='latest' or which='best' instead."
    )
  return int(tests[-1]["checkpoint_step"])


def open_run(workdir: str, which: str = "latest") -> Run:
  """The run in `workdir` with the parameters of its `which` checkpoint.

  Args:
    workdir: a training run's directory.
    which: "latest"; "best" (by the run's `checkpoint.best_metric`); or
      "tested", the checkpoint the run's test record scored (its best, or
      its last where the config names no best metric).

  Raises:
    errors.LstmJaxError: no run in `workdir`, no checkpoint, no best one, no
      test record, or none readable; the message says which.
  """
  if which not in WHICH:
    raise errors.ConfigError(f"which must be one of {WHICH}, got {which!r}")
  for name in (rundir.CONFIG_FILE, rundir.DATA_FILE):
    if not os.path.isfile(os.path.join(workdir, name)):
      raise errors.LstmJaxError(
        f"{workdir} does not hold a training run ({name} is missing); train one "
        f"with `python -m lstm_jax.main --config=... --workdir={workdir}`."
      )
  config = rundir.load_config(workdir)
  info = rundir.read_json(os.path.join(workdir, rundir.DATA_FILE))
  # A reader runs the model outside any mesh: the single-device path.
  built = build.build(config, info=info, model_axis=1)
  if not os.path.isdir(os.path.join(workdir, rundir.CHECKPOINT_DIR)):
    raise errors.LstmJaxError(f"{workdir} holds no checkpoint yet.")
  manager = checkpoint.make_manager(workdir, config, read_only=True)
  try:
    if which in ("best", "tested"):
      step = checkpoint.best_step(manager) if which == "best" else tested_step(workdir)
      if step is None:
        raise errors.LstmJaxError(f"{workdir} has no checkpoint with eval metrics yet.")
      state = checkpoint.restore_step(manager, step, None)
    else:
      found = checkpoint.restore_latest(manager, None)
      if found is None:
        raise errors.LstmJaxError(f"{workdir} holds no checkpoint yet.")
      state, step = found
  finally:
    manager.close()
  # A schedule-free run's evaluated parameters are its average (optim.py).
  params = optim.eval_params(state.get("opt_state"), state["params"])
  return Run(workdir, config, built.task, info, built.model, params, int(step))
