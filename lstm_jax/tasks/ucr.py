"""UCR/UEA time-series classification from any pair of `.ts` files.

Config (declared in `experiments/ucr.py`): `data.name` (a set shipped inside
an installed aeon/sktime wheel) or `data.train_path` + `data.test_path`;
`data.valid_fraction` (stratified validation carved from the official train
file), `data.fill_missing`, `data.batch_size`, `data.jitter_std` and
`data.scale_std` (training-batch augmentation, `data.ts_augment`);
`model.lstm`, `model.pooling`, `model.dropout`, `model.fcn_width` (0: LSTM
only; > 0: LSTM-FCN, `models.fcn`), `model.patch` (steps per LSTM input).

Variable-length series are padded on the right with a mask; the LSTM and
every readout skip padding, so nothing is truncated or resampled. Per-channel
normalisation is fit on the training part only (`data.ucr.prepare`). The
official test file is scored once, at the end, on the best checkpoint by
`checkpoint.best_metric` (validation accuracy unless set otherwise; the
trainer's `test_batches` evaluation; split "test"). Never selected on test.

Metrics (per series): `accuracy` (top-1) and `loss` (cross-entropy, nats).
"""

from __future__ import annotations

import hashlib
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from lstm_jax.data import ts_augment, ucr
from lstm_jax.errors import ConfigError
from lstm_jax.models.classifier import SequenceClassifier
from lstm_jax.models.fcn import FCN
from lstm_jax.models.pooling import POOLINGS
from lstm_jax.nn.layers import lstm_from_config
from lstm_jax.tasks.base import Batch, Datasets, Metrics

TOKEN_METRIC = "accuracy"  # a "token" is one classified series
# The files' identity is their sha256 (data.json), not their path.
RESUMABLE_KEYS = ("data.train_path", "data.test_path", "data.eval_batch_size")


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
  if not 0.0 < d.valid_fraction < 1.0:
    raise ConfigError(f"data.valid_fraction must be in (0, 1), got {d.valid_fraction}")
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
  if config.model.patch < 1:
    raise ConfigError(
      f"model.patch must be >= 1 (1 = no patches), got {config.model.patch}"
    )
  if config.model.fcn_width < 0:
    raise ConfigError(
      f"model.fcn_width must be >= 0 (0 = no FCN branch), got {config.model.fcn_width}"
    )
  if config.model.pooling not in POOLINGS:
    raise ConfigError(
      f"model.pooling must be one of {POOLINGS}, got {config.model.pooling!r}"
    )


def _sha256(path: str) -> str:
  with open(path, "rb") as f:
    return hashlib.sha256(f.read()).hexdigest()


def load_splits(config: ml_collections.ConfigDict) -> tuple[dict[str, Batch], dict]:
  """The train/valid/test arrays of `data.ucr.prepare` and the run's data info."""
  d = config.data
  if d.train_path or d.test_path:
    if not (d.train_path and d.test_path):
      raise ConfigError(
        "data.train_path and data.test_path go together; got "
        f"train_path={d.train_path!r}, test_path={d.test_path!r}"
      )
    train_path, test_path = d.train_path, d.test_path
  elif not d.name:
    shipped = ", ".join(ucr.shipped_datasets()) or "none (pip install 'lstm_jax[ucr]')"
    raise ConfigError(
      "no UCR/UEA data: name a shipped set (experiments/ucr.py:GunPoint or "
      "GunPoint,tiny) or pass --config.data.train_path=... "
      f"--config.data.test_path=...; shipped: {shipped}"
    )
  else:
    train_path, test_path = ucr.resolve(d.name)
  train = ucr.load_ts(train_path, d.fill_missing)
  test = ucr.load_ts(test_path, d.fill_missing)
  splits, prep = ucr.prepare(train, test, d.valid_fraction, config.seed)
  info = {
    "source": d.name or train_path,
    "train_sha256": _sha256(train_path),
    "test_sha256": _sha256(test_path),
    "classes": prep["classes"],
    "num_channels": train.num_channels,
    "max_len": int(prep["max_len"]),
    "sizes": {k: len(v["labels"]) for k, v in splits.items()},
    "mean": [float(x) for x in prep["mean"]],
    "std": [float(x) for x in prep["std"]],
  }
  return splits, info


def _batches(arrays: Batch, size: int):
  n = len(arrays["labels"])
  return lambda: (
    {k: v[i : i + size] for k, v in arrays.items()} for i in range(0, n, size)
  )


def make_datasets(config: ml_collections.ConfigDict) -> Datasets:
  """Reads the two files; raises `DataError` naming the file (and line)."""
  splits, info = load_splits(config)
  if "valid" not in splits:
    raise ConfigError(
      f"data.valid_fraction={config.data.valid_fraction} leaves no validation "
      f"series out of {info['sizes']['train']}"
    )
  train, size, d = splits["train"], config.data.batch_size, config.data

  def train_batch(step: int) -> Batch:
    batch = ucr.epoch_batch(train, config.seed, step, size)
    return ts_augment.jitter_scale(batch, config.seed, step, d.jitter_std, d.scale_std)

  return Datasets(
    train_batch=train_batch,
    eval_batches=_batches(splits["valid"], config.data.eval_batch_size),
    test_batches=_batches(splits["test"], config.data.eval_batch_size),
    info=info,
  )


def make_model(
  config: ml_collections.ConfigDict, info: dict[str, Any]
) -> SequenceClassifier:
  """(bi)LSTM [+ FCN] -> masked `model.pooling` readout -> class logits."""
  width = config.model.fcn_width
  return SequenceClassifier(
    lstm=lstm_from_config(config.model.lstm),
    num_classes=len(info["classes"]),
    pooling=config.model.pooling,
    dropout=config.model.dropout,
    fcn=FCN(width) if width else None,
    patch=config.model.patch,
  )


def loss_and_metrics(logits: jax.Array, batch: Batch) -> tuple[jax.Array, Metrics]:
  """Mean cross-entropy per series; accuracy first."""
  labels = batch["labels"]
  nll = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  n = jnp.asarray(nll.shape[0], jnp.float32)
  correct = jnp.sum(jnp.argmax(logits, -1) == labels).astype(jnp.float32)
  return jnp.mean(nll), {"accuracy": (correct, n), "loss": (jnp.sum(nll), n)}


def predict(model: SequenceClassifier, params: Any, arrays: Batch) -> np.ndarray:
  """<int32>[N] predicted class indices of a split (for analysis)."""
  logits, _ = jax.jit(model.apply)({"params": params}, arrays)
  return np.asarray(jnp.argmax(logits, -1), np.int32)


def report(config, model, params, datasets, results) -> dict[str, Any]:
  del config, model, params
  if "test/accuracy" in results:
    print(
      f"{datasets.info['source']}: test accuracy {results['test/accuracy']:.4f} "
      f"({datasets.info['sizes']['test']} series, checkpoint of step "
      f"{int(results['test/checkpoint_step'])})"
    )
  return {}
