"""The UCR/UEA task's config checks and the grammar of `model.candidates`.

`validate` runs before anything is read, so a bad key fails in seconds and
names the key, what it got and what it takes; `parse_candidate` reads one
`model.candidates` entry for `validate` and for `tasks.ucr.make_model`.
"""

from __future__ import annotations

import ml_collections

from lstm_jax.baselines import classify, minirocket
from lstm_jax.data import ts_normalize, ucr
from lstm_jax.errors import ConfigError
from lstm_jax.models.fcn import NORMS
from lstm_jax.models.pooling import POOLINGS

LSTM_READS = ("shuffle", *POOLINGS)
CANDIDATE_HELP = (
  "how the LSTM reads the series ('shuffle': dimension-shuffled, LSTM-FCN's; "
  "'mean', 'max' or 'last': time-major with that readout), '+fcn' to add the "
  "FCN branch, or 'fcn' alone (an ablation): e.g. ('shuffle+fcn', 'mean')"
)


def parse_candidate(spec: str) -> tuple[str | None, bool]:
  """(LSTM reading or None, with_fcn) of a `model.candidates` entry."""
  if spec == "fcn":
    return None, True
  read, _, extra = spec.partition("+")
  if read not in LSTM_READS or extra not in ("", "fcn"):
    raise ConfigError(f"model.candidates: {spec!r} is not {CANDIDATE_HELP}")
  return read, extra == "fcn"


def validate(config: ml_collections.ConfigDict) -> None:
  """Source and sizes, checked before anything is read."""
  d = config.data
  paths = (d.train_path, d.test_path)
  if any(paths) and not all(paths):
    raise ConfigError(
      "data.train_path and data.test_path go together; got "
      f"train_path={d.train_path!r}, test_path={d.test_path!r}"
    )
  if not any(paths) and not d.name:
    raise ConfigError(
      "set data.name (a shipped UCR/UEA set, e.g. experiments/ucr.py:GunPoint) "
      "or data.train_path and data.test_path"
    )
  if not 0.0 <= d.valid_fraction < 1.0:
    raise ConfigError(f"data.valid_fraction must be in [0, 1), got {d.valid_fraction}")
  if d.normalization not in ts_normalize.NORMALIZATIONS:
    raise ConfigError(
      f"data.normalization must be one of {ts_normalize.NORMALIZATIONS}, got {d.normalization!r}"
    )
  if d.fill_missing not in ucr.FILL_MISSING:
    raise ConfigError(
      f"data.fill_missing must be one of {ucr.FILL_MISSING}, got {d.fill_missing!r}"
    )
  for key in ("jitter_std", "scale_std"):
    if d[key] < 0:
      raise ConfigError(f"data.{key} must be >= 0, got {d[key]}")
  for key in ("batch_size", "eval_batch_size"):
    if d[key] < 1:
      raise ConfigError(f"data.{key} must be >= 1, got {d[key]}")
  if config.model.patch < 0:
    raise ConfigError(
      f"model.patch must be >= 0 (1 = no patches, 0 = automatic), got "
      f"{config.model.patch}"
    )
  unknown = sorted(set(d.baselines) - set(classify.NAMES))
  if unknown:
    raise ConfigError(
      f"data.baselines must be some of {classify.NAMES}, got {tuple(d.baselines)}"
    )
  m = config.model
  for key in ("fcn_width", "se_reduction", "fcn_max_steps"):
    if m[key] < 0:
      raise ConfigError(f"model.{key} must be >= 0, got {m[key]}")
  for key in ("dropout", "lstm_dropout"):
    if not 0.0 <= m[key] < 1.0:
      raise ConfigError(f"model.{key} must be in [0, 1), got {m[key]}")
  if m.fcn_norm not in NORMS:
    raise ConfigError(f"model.fcn_norm must be one of {NORMS}, got {m.fcn_norm!r}")
  if m.fcn_norm == "batch" and config.checkpoint.best_metric:
    raise ConfigError(
      "model.fcn_norm='batch' normalises the trainer's evaluations by each "
      "batch's own statistics (the training split's apply only at the final "
      "choice and test), so they cannot rank checkpoints: leave "
      f"checkpoint.best_metric unset (got {config.checkpoint.best_metric!r}) "
      "or use model.fcn_norm='layer'"
    )
  if m.pooling not in LSTM_READS:
    raise ConfigError(f"model.pooling must be one of {LSTM_READS}, got {m.pooling!r}")
  kernels = m.kernels
  if kernels != 0 and kernels < minirocket.MIN_KERNELS:
    raise ConfigError(
      f"model.kernels must be 0 (no kernel ensemble) or >= {minirocket.MIN_KERNELS} "
      f"(MiniRocket's kernels come in 84s), got {kernels}"
    )
  if kernels and not minirocket.available():
    raise ConfigError(
      f"model.kernels={kernels} needs aeon's MiniRocket: pip install "
      "'lstm_jax[ucr]', or set --config.model.kernels=0 (no kernel ensemble)"
    )
  if kernels and not d.valid_fraction:
    raise ConfigError(
      f"model.kernels={kernels} (the kernel ensemble) is chosen by validation: "
      "set data.valid_fraction > 0 (experiments/ucr.py:NAME,ensemble sets 0.2)"
    )
  for spec in m.candidates:
    if parse_candidate(spec)[1] and not m.fcn_width:
      raise ConfigError(f"model.candidates has {spec!r} but model.fcn_width is 0")
