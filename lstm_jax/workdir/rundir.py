"""The workdir is the run's identity: refuse to mix two runs in one directory.

`prepare(workdir, config, data_info)` is called once before training (and
`check`, its read-only half, before the trainer takes the workdir lock). In a new
or empty directory it writes `config.json` (the resolved config) and
`data.json` (what identifies the training data, e.g. its sha256 and size). In a
directory that already holds a run it first checks that the new command
continues *that* run:

* every config key must equal the stored one, except the keys in
  `RESUMABLE_KEYS` (how long to train and how often to log, evaluate and
  save: changing them does not change what an already-taken step computed)
  and the task's own such keys (`Task.resumable_keys`, e.g. a data path);
* the data must be the same bytes (`data_info["sha256"]`), so a run whose
  `data.json` is gone is refused too (nothing left to compare against);
* a run with a metrics history but no `checkpoints/` directory (deleted
  mid-run) is refused rather than silently restarted at step 0.

Any difference raises `errors.IncompatibleRunError` listing each key with its
stored and new value, and nothing in the directory is written, moved or
deleted. Files are replaced atomically (write a temporary file, then
`os.replace`), so a crash leaves either the old or the new file, never half of
one.

Note on `train.steps`: a run can be extended (or shortened) by changing it.
When `optim.decay_steps` is unset the learning-rate schedule's length follows
`train.steps`, so the continued run follows the new schedule from the resume
step on: it is neither the old run nor a fresh run with the new value. A
warning says so.
"""

from __future__ import annotations

import fnmatch
import json
import os
import tempfile
from collections.abc import Sequence
from typing import Any

import jax
import ml_collections
from absl import logging

from lstm_jax import errors

CHECKPOINT_DIR = (
  "checkpoints"  # `lstm_jax.workdir.checkpoint` keeps its checkpoints here
)
CONFIG_FILE = "config.json"
DATA_FILE = "data.json"
METRICS_FILE = "metrics.jsonl"  # written by `lstm_jax.training.metrics`

# Keys that may differ between the stored run and a resuming command (fnmatch
# patterns on dotted key paths). They say how long to train, how to watch and
# save the run, or how (not what) to compute; none changes what an already
# taken step computed. Everything else defines the run.
RESUMABLE_KEYS = (
  # How long: extend or shorten a run (see the note on train.steps above).
  "train.steps",
  "train.early_stop_patience",
  "train.max_nonfinite_steps",
  # How to watch it: logging, evaluation, the end-of-run sample.
  "train.log_every",
  "train.eval_every",
  "train.eval_batches",
  "train.sample_*",
  "diagnostics.*",
  # How to save it.
  "checkpoint.every_steps",
  "checkpoint.keep",
  # How to compute it: same math, possibly different rounding (resuming on
  # other hardware, or with the fused kernel, is a supported move). Every
  # LSTM config section (`layers.lstm_config`) of any model matches these.
  "*lstm.impl",
  "*lstm.unroll",
  "*lstm.remat",
  "parallel.*",
)

_MISSING = "<absent>"


def config_to_dict(config: Any) -> dict[str, Any]:
  """The config as plain JSON types (tuples become lists)."""
  if isinstance(config, ml_collections.ConfigDict):
    config = config.to_dict()
  return json.loads(json.dumps(config, default=repr, allow_nan=True))


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
  """`{"a": {"b": 1}}` -> `{"a.b": 1}`; empty dicts are kept as leaves."""
  flat: dict[str, Any] = {}
  for key, value in tree.items():
    path = f"{prefix}{key}"
    if isinstance(value, dict) and value:
      flat.update(flatten(value, path + "."))
    else:
      flat[path] = value
  return flat


def is_resumable_key(key: str, extra: Sequence[str] = ()) -> bool:
  return any(fnmatch.fnmatchcase(key, pat) for pat in (*RESUMABLE_KEYS, *extra))


def config_differences(
  old: dict[str, Any], new: dict[str, Any], resumable: Sequence[str] = ()
) -> list[tuple[str, Any, Any]]:
  """`(key, old, new)` for each run-defining key that differs, sorted.

  Keys matching `RESUMABLE_KEYS` or a pattern of `resumable` are skipped.
  """
  old_flat, new_flat = flatten(old), flatten(new)
  diffs = []
  for key in sorted(set(old_flat) | set(new_flat)):
    if is_resumable_key(key, resumable):
      continue
    a, b = old_flat.get(key, _MISSING), new_flat.get(key, _MISSING)
    if a != b or (type(a) is not type(b) and not _same_number(a, b)):
      diffs.append((key, a, b))
  return diffs


def _same_number(a: Any, b: Any) -> bool:
  # JSON keeps 1 and 1.0 apart; a config field typed float may print either.
  numeric = (int, float)
  return (
    isinstance(a, numeric)
    and isinstance(b, numeric)
    and not isinstance(a, bool)
    and not isinstance(b, bool)
    and a == b
  )


def _write_json_atomic(path: str, obj: Any) -> None:
  directory = os.path.dirname(path)
  fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=directory)
  try:
    with os.fdopen(fd, "w", encoding="utf-8") as f:
      json.dump(obj, f, indent=2, sort_keys=True)
      f.write("\n")
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def read_json(path: str) -> dict[str, Any]:
  """The JSON object in a workdir file (config.json, data.json, an asset).

  Raises:
    errors.IncompatibleRunError: the file cannot be read, is not JSON, or is
      not a JSON object.
  """
  try:
    with open(path, encoding="utf-8") as f:
      obj = json.load(f)
  except (OSError, ValueError) as exc:
    raise errors.IncompatibleRunError(
      f"{path} exists but cannot be read ({exc}); refusing to guess what run "
      "this workdir holds. Use a new --workdir."
    ) from exc
  if not isinstance(obj, dict):
    raise errors.IncompatibleRunError(
      f"{path} holds a JSON {type(obj).__name__}, not an object; it is not a "
      "file this program wrote. Use a new --workdir."
    )
  return obj


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The resolved config a run stored in its workdir."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    raise errors.ConfigError(
      f"{workdir} holds no {CONFIG_FILE}; is it the workdir of a training run?"
    )
  return ml_collections.ConfigDict(read_json(path))


def _short(value: Any, limit: int = 80) -> str:
  text = json.dumps(value) if value is not _MISSING else _MISSING
  return text if len(text) <= limit else text[: limit - 3] + "..."


def _warn_schedule_change(old: dict[str, Any], new: dict[str, Any]) -> None:
  old_flat, new_flat = flatten(old), flatten(new)
  before, after = old_flat.get("train.steps"), new_flat.get("train.steps")
  if before != after and new_flat.get("optim.decay_steps", 0) is None:
    logging.warning(
      "train.steps changed from %s to %s on resume; optim.decay_steps is unset, "
      "so the learning-rate schedule now spans %s steps from the resume step on.",
      before,
      after,
      after,
    )


def _check_config(workdir: str, new: dict[str, Any], resumable: Sequence[str]) -> None:
  old = read_json(os.path.join(workdir, CONFIG_FILE))
  diffs = config_differences(old, new, resumable)
  if not diffs:
    _warn_schedule_change(old, new)
    return
  lines = "\n".join(
    f"  {key}: {_short(a)} (in workdir) vs {_short(b)} (now)" for key, a, b in diffs
  )
  raise errors.IncompatibleRunError(
    f"The workdir {workdir} holds a run with a different config; "
    f"{len(diffs)} key(s) differ:\n{lines}\n"
    "Resume with the stored values, or start a new run with another "
    "--workdir. Keys that may change on resume: "
    + ", ".join((*RESUMABLE_KEYS, *resumable))
  )


def _check_data(workdir: str, data_info: dict[str, Any]) -> None:
  path = os.path.join(workdir, DATA_FILE)
  if not os.path.exists(path):
    # `prepare` writes data.json before config.json, so a config.json alone
    # means data.json was removed: the data can no longer be checked.
    raise errors.IncompatibleRunError(
      f"{workdir} holds a run ({CONFIG_FILE}) but no {DATA_FILE}, so there is "
      "no way to check that these data are the ones it was trained on. Put "
      f"its {DATA_FILE} back, or use a new --workdir."
    )
  old = read_json(path)
  if "sha256" in old and "sha256" in data_info:
    same = old["sha256"] == data_info["sha256"]
  else:
    ignore = {"path"}
    same = {k: v for k, v in old.items() if k not in ignore} == {
      k: v for k, v in config_to_dict(data_info).items() if k not in ignore
    }
  if same:
    return
  raise errors.IncompatibleRunError(
    f"The training data differ from those of the run in {workdir}:\n"
    f"  in workdir: {json.dumps(old, sort_keys=True)}\n"
    f"  now:        {json.dumps(config_to_dict(data_info), sort_keys=True)}\n"
    "Resume with the original data, or start a new run with another --workdir."
  )


def _check_history(workdir: str) -> None:
  """A metrics history without `checkpoints/` means the checkpoints were
  deleted: starting again at step 0 would silently empty the history."""
  history = os.path.join(workdir, METRICS_FILE)
  if os.path.isdir(os.path.join(workdir, CHECKPOINT_DIR)):
    return  # the trainer creates it before it writes any metrics
  if not os.path.isfile(history) or os.path.getsize(history) == 0:
    return
  raise errors.IncompatibleRunError(
    f"{workdir} has a training history ({history}) but no {CHECKPOINT_DIR}/ "
    "directory: its checkpoints were deleted or moved, and a rerun would start "
    f"again at step 0 and discard that history. Put {CHECKPOINT_DIR}/ back to "
    f"resume; to start over on purpose, move {METRICS_FILE} and the "
    "events.out.tfevents.* files away (or use a new --workdir)."
  )


def check(
  workdir: str,
  config: Any,
  data_info: dict[str, Any],
  resumable: Sequence[str] = (),
) -> None:
  """Refuses a workdir that this command must not train in; writes nothing.

  Args:
    workdir: the run directory.
    config: the resolved config.
    data_info: what identifies the training data (`Datasets.info`).
    resumable: the task's own resumable key patterns (`Task.resumable_keys`).

  Raises:
    errors.ConfigError: `workdir` exists and is not a directory.
    errors.IncompatibleRunError: the workdir holds another run (different
      run-defining config keys or different data), checkpoints without a
      config.json, a config.json without a data.json, or a metrics history
      whose checkpoints directory is gone.
  """
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise errors.ConfigError(f"--workdir={workdir} exists and is not a directory")
  config_path = os.path.join(workdir, CONFIG_FILE)
  ckpt_dir = os.path.join(workdir, CHECKPOINT_DIR)
  if os.path.exists(config_path):
    _check_config(workdir, config_to_dict(config), resumable)
    _check_data(workdir, data_info)
    _check_history(workdir)
  elif os.path.isdir(ckpt_dir) and os.listdir(ckpt_dir):
    raise errors.IncompatibleRunError(
      f"{workdir} holds checkpoints but no {CONFIG_FILE}, so there is no way "
      "to check that they belong to this config. Use a new --workdir."
    )


def prepare(
  workdir: str,
  config: Any,
  data_info: dict[str, Any],
  resumable: Sequence[str] = (),
) -> None:
  """`check`s the workdir, then creates it and writes config.json and
  data.json (process 0); see the module docstring. Raises as `check`."""
  check(workdir, config, data_info, resumable)
  if jax.process_index() != 0:
    return
  os.makedirs(workdir, exist_ok=True)
  # data.json first: a config.json then always has its data.json beside it.
  _write_json_atomic(os.path.join(workdir, DATA_FILE), config_to_dict(data_info))
  _write_json_atomic(os.path.join(workdir, CONFIG_FILE), config_to_dict(config))
