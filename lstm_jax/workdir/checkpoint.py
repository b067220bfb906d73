"""Checkpoints: periodic, best-by-metric, resume-from-latest, SIGTERM-safe.

A thin layer over `orbax.checkpoint.CheckpointManager` rooted at
`<workdir>/checkpoints`. What it adds to Orbax:

* Retention is "the last `keep` steps plus the single best step by
  `best_metric`", built from Orbax's `LatestN` and `BestN` preservation
  policies. Checkpoints saved without that metric are kept only while they are
  among the last `keep`.
* `restore_latest` tries steps from newest to oldest. Orbax notices a
  truncated or otherwise damaged array file only when it reads it, so a step
  that fails to restore is logged (step and error), moved aside to
  `<workdir>/checkpoints_corrupt/`, and the previous step is tried. Moving it
  aside matters: the run will reach that step number again and must be able to
  save there. If checkpoints exist but none restores, it raises
  `CheckpointError` and leaves every file where it is, rather than silently
  training from scratch.
* Saves are atomic: Orbax writes `<step>.orbax-checkpoint-tmp-*` and renames it
  to `<step>` only after every file and `commit_success.txt` are written, so a
  process killed mid-save leaves a tmp directory that Orbax neither lists nor
  restores (it is removed when the next trainer's manager is created).
* Readers (`make_manager(..., read_only=True)`, used by `lstm_jax.runs.reader`)
  create, delete and move nothing: not `checkpoints/`, not the temporary
  directory of a save in progress, not an unreadable step (they only skip
  it). A step whose per-step metrics file is damaged counts as unreadable.
* Every save stores a checksum of each leaf (`lstm_jax.workdir.fingerprint`), verified
  on restore: Orbax itself would restore a flipped bit silently.

What works around Orbax itself (a private method, its error texts) is in
`lstm_jax.workdir.orbax_compat`, with the version it targets.

Preemption (SIGTERM) is `lstm_jax.workdir.preemption`.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging
from orbax.checkpoint import checkpoint_managers as ocp_policies

from lstm_jax import errors
from lstm_jax.workdir import fingerprint, orbax_compat
from lstm_jax.workdir.rundir import CHECKPOINT_DIR

CORRUPT_DIR = "checkpoints_corrupt"
STATE_ITEM = "state"
FINGERPRINT_ITEM = "fingerprint"


class CheckpointError(errors.LstmJaxError):
  """Checkpoints exist in the workdir but none of them can be restored."""


class Manager(orbax_compat.TolerantMetricsManager):
  """An Orbax manager that remembers which metric ranks its checkpoints.

  A step whose metrics file is damaged is listed, with the reason in
  `unreadable_metrics[step]`, and `restore_latest` falls back over it like
  over any damaged step (Orbax itself would fail to open the directory).
  """

  def __init__(self, directory: str, options, best_metric: str):
    super().__init__(
      directory, options=options, item_names=(STATE_ITEM, FINGERPRINT_ITEM)
    )
    self.best_metric = best_metric
    self.read_only = bool(options.read_only)


def _metric_fn(name: str, mode: str):
  """Ranking key for a step's saved metrics; missing or NaN ranks worst."""
  worst = math.inf if mode == "min" else -math.inf

  def fn(metrics: Any) -> float:
    value = metrics.get(name) if isinstance(metrics, dict) else None
    if value is None:
      return worst
    value = float(value)
    return worst if math.isnan(value) else value

  return fn


def check_config(ckpt) -> tuple[int, int, str, str]:
  """`(keep, every_steps, best_metric, best_mode)` of `config.checkpoint`.

  An absent `best_metric` means none; an absent `best_mode` means "min".

  Raises:
    errors.ConfigError: a value out of range; the message names the key.
  """
  keep = int(ckpt.keep)
  if keep < 1:
    raise errors.ConfigError(f"checkpoint.keep must be >= 1, got {keep}")
  every = int(ckpt.every_steps)
  if every < 1:
    raise errors.ConfigError(f"checkpoint.every_steps must be >= 1, got {every}")
  best_metric = ckpt.get("best_metric", "") or ""
  best_mode = ckpt.get("best_mode", "min")
  if best_mode not in ("min", "max"):
    raise errors.ConfigError(
      f"checkpoint.best_mode must be 'min' or 'max', got {best_mode!r}"
    )
  return keep, every, best_metric, best_mode


def make_manager(workdir: str, config, read_only: bool = False) -> Manager:
  """Creates the checkpoint manager for `workdir` from `config.checkpoint`.

  A `read_only` manager (for readers of a run: sampling, notebooks) creates,
  deletes and moves nothing: not the directory, not the temporary directory
  of a save in progress, not an unreadable step.

  Reads `checkpoint.every_steps` (a step is saved when `step % every_steps ==
  0`, or whenever `save(..., force=True)`), `checkpoint.keep` (the last N steps
  kept) and `checkpoint.best_metric` / `checkpoint.best_mode` ("min" or "max";
  the best step by that metric is kept too). An empty `best_metric` keeps only
  the last N.
  """
  keep, every, best_metric, best_mode = check_config(config.checkpoint)
  policies: list[Any] = [ocp_policies.LatestN(n=keep)]
  best_fn = None
  if best_metric:
    best_fn = _metric_fn(best_metric, best_mode)
    # BestN sorts ascending and keeps the tail, so "min" needs reverse=True.
    policies.append(
      ocp_policies.BestN(
        get_metric_fn=best_fn,
        reverse=best_mode == "min",
        n=1,
        keep_checkpoints_without_metrics=False,
      )
    )
  options = ocp.CheckpointManagerOptions(
    save_decision_policy=ocp_policies.FixedIntervalPolicy(every),
    preservation_policy=ocp_policies.AnyPreservationPolicy(policies),
    best_fn=best_fn,
    best_mode=best_mode,
    cleanup_tmp_directories=not read_only,
    save_interval_steps=0 if read_only else 1,  # (Orbax warns otherwise)
    create=not read_only,
    read_only=read_only,
  )
  directory = os.path.join(os.path.abspath(workdir), CHECKPOINT_DIR)
  if not read_only:
    return Manager(directory, options, best_metric)
  # Orbax warns that the directory is read only: what a reader asks for.
  with orbax_compat.read_only_notices_dropped():
    return Manager(directory, options, best_metric)


def save(
  manager: ocp.CheckpointManager,
  step: int,
  state: Any,
  metrics: dict[str, float] | None = None,
  force: bool = False,
) -> None:
  """Saves `state` at `step` if the interval says so, or always if `force`.

  Saving a step that already exists on disk is a no-op (a resumed run reaches
  its restore step again; the final step may coincide with a periodic one).
  The write is asynchronous; call `manager.wait_until_finished()` before the
  process exits. A checksum of every leaf is computed now (synchronously, so
  the caller may donate `state` afterwards) and stored beside it.
  """
  step = int(step)
  if step in manager.all_steps():
    return
  if not manager.should_save(step) and not force:
    return
  # Orbax warns on every save without metrics when it tracks a best metric;
  # an empty dict ranks worst (see `_metric_fn`) and says the same quietly.
  metrics = {k: float(v) for k, v in (metrics or {}).items()}
  args = ocp.args.Composite(
    **{
      STATE_ITEM: ocp.args.StandardSave(state),
      FINGERPRINT_ITEM: ocp.args.JsonSave(fingerprint.fingerprint(state) or {}),
    }
  )
  manager.save(step, args=args, metrics=metrics, force=force)


def best_step(manager: Manager) -> int | None:
  """Step of the best checkpoint by `checkpoint.best_metric`.

  None when no best metric is configured (Orbax would answer the latest step)
  or no saved step carries that metric.
  """
  if not getattr(manager, "best_metric", ""):
    return None
  if not any(
    manager.best_metric in (manager.metrics(s) or {}) for s in manager.all_steps()
  ):
    return None
  return manager.best_step()


def _abstract(tree: Any) -> Any:
  """Concrete arrays become ShapeDtypeStructs (keeping their sharding)."""
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


def _quarantine(manager: ocp.CheckpointManager, steps: list[int]) -> None:
  """Moves unrestorable step directories out of Orbax's sight, keeping them."""
  if not steps or jax.process_index() != 0 or getattr(manager, "read_only", False):
    return
  root = os.fspath(manager.directory)
  corrupt = os.path.join(os.path.dirname(root), CORRUPT_DIR)
  os.makedirs(corrupt, exist_ok=True)
  stamp = time.strftime("%Y%m%d-%H%M%S")
  for step in steps:
    src = os.path.join(root, str(step))
    if os.path.isdir(src):
      dst = os.path.join(corrupt, f"{step}-{stamp}")
      shutil.move(src, dst)
      logging.warning("Moved unrestorable checkpoint %s to %s", src, dst)
  manager.reload()


def _restore_verified(manager: ocp.CheckpointManager, step: int, target: Any) -> Any:
  """The state saved at `step`, checked against its stored fingerprint."""
  restored = manager.restore(
    step,
    args=ocp.args.Composite(
      **{
        STATE_ITEM: ocp.args.StandardRestore(target),
        FINGERPRINT_ITEM: ocp.args.JsonRestore(),
      }
    ),
  )
  state = restored[STATE_ITEM]
  fingerprint.verify(state, restored[FINGERPRINT_ITEM])
  return state


def restore_step(manager: ocp.CheckpointManager, step: int, abstract_state: Any) -> Any:
  """Restores the checkpoint at `step` (e.g. the best one), checksums verified.

  Args:
    manager: from `make_manager`.
    step: a saved step.
    abstract_state: as for `restore_latest`; None restores the saved structure.

  Returns:
    The saved state.

  Raises:
    CheckpointError: the step is missing or cannot be read intact.
  """
  manager.wait_until_finished()
  manager.reload()
  if step not in manager.all_steps():
    raise CheckpointError(f"{manager.directory} holds no checkpoint at step {step}.")
  try:
    return _restore_verified(manager, step, _abstract(abstract_state))
  except Exception as exc:  # any failure is reported the same way
    raise CheckpointError(
      f"The checkpoint at step {step} in {manager.directory} could not be "
      f"restored ({orbax_compat.describe(exc)})."
    ) from exc


def restore_latest(
  manager: ocp.CheckpointManager, abstract_state: Any
) -> tuple[Any, int] | None:
  """Restores the newest checkpoint that can be read.

  Args:
    manager: from `make_manager`.
    abstract_state: a pytree of `jax.ShapeDtypeStruct` (with shardings) or of
      concrete arrays with the structure of the saved state.

  Returns:
    `(state, step)` for the newest restorable step, or None when the directory
    holds no checkpoint at all.

  Raises:
    CheckpointError: checkpoints exist but none of them can be restored.
  """
  # A reader (read-only manager) races the trainer: the step it picked may be
  # deleted by retention while it reads. If every step failed but the
  # directory changed meanwhile, it lists the steps again.
  attempts = 3 if getattr(manager, "read_only", False) else 1
  target = _abstract(abstract_state)
  failures: list[tuple[int, str]] = []
  for _ in range(attempts):
    manager.wait_until_finished()
    manager.reload()
    steps = sorted(manager.all_steps(), reverse=True)
    if not steps:
      return None
    if failures and steps == [s for s, _ in failures]:
      break  # nothing changed: the same steps would fail again
    failures = []
    for step in steps:
      bad_metrics = getattr(manager, "unreadable_metrics", {}).get(step)
      try:
        if bad_metrics:
          raise CheckpointError(bad_metrics)
        state = _restore_verified(manager, step, target)
      except Exception as exc:  # noqa: BLE001 - any failure means "not usable"
        reason = orbax_compat.describe(exc)
        failures.append((step, reason))
        logging.warning(
          "Checkpoint at step %d could not be restored (%s); trying the previous one.",
          step,
          reason,
        )
        continue
      if failures:
        logging.warning(
          "Resuming from step %d instead of the newer, unreadable step(s) %s.",
          step,
          ", ".join(str(s) for s, _ in failures),
        )
        _quarantine(manager, [s for s, _ in failures])
      return state, step
  detail = "\n".join(f"  step {s}: {r}" for s, r in failures)
  raise CheckpointError(
    f"None of the checkpoints in {manager.directory} could be restored:\n"
    f"{detail}\nNothing was deleted. If the model or optimizer config changed, "
    "use a new --workdir; otherwise move the damaged step directories away."
  )
