"""UCR/UEA time-series classification from any pair of `.ts` files.

Config (declared in `experiments/ucr.py`): `data.name` (a set shipped inside
an installed aeon/sktime wheel) or `data.train_path` + `data.test_path`;
`data.valid_fraction` (stratified validation carved from the official train
file; 0: none, the model trains on the whole file and the choice reads the
training file, as the LSTM-FCN authors select on the training loss),
`data.fill_missing`, `data.batch_size`, `data.class_weights`
(inverse-frequency weights of the training part in the training loss),
`data.jitter_std` and `data.scale_std` (training-batch augmentation,
`data.ts_augment`); `data.baselines` (same-run baselines in the test
record); `model.lstm`, `model.lstm_dropout`, `model.dropout`,
`model.fcn_width` and `model.se_reduction` (the FCN branch, `models.fcn`;
squeeze-excite on multivariate sets: MLSTM-FCN), `model.fcn_max_steps` and
`model.patch` (steps per FCN / time-major LSTM input; 0: automatic),
`model.candidates` (classifiers trained side by side, one chosen on
validation or the training file: `checks.CANDIDATE_HELP`), `model.kernels`
(MiniRocket kernels of the opt-in ensemble, `baselines.minirocket`; 0:
none). The config checks (`validate`) are in `tasks.ucr.checks`.

Variable-length series are padded on the right with a mask; the time-major
LSTM, the FCN and every readout skip padding, so nothing is truncated or
resampled (the dimension-shuffled LSTM reads the padding as zeros, as in the
authors' code). Normalisation (`data.normalization`, `data.ucr.prepare`):
per channel, fit on the training part only, or each series on its own. The
official test file is scored once, at the end, with the LSTM model chosen
on validation or the training file (`tasks.ucr.choice`: a candidate at the
best checkpoint by `checkpoint.best_metric`, or at the last one when it is
unset, or their ensemble; `final_evaluation`, split "test"), with the
baselines of `data.baselines` (`baselines.classify`: MiniRocket + ridge,
1-NN DTW) fit on the whole training file and scored on the same test file
in the same record (`minirocket/accuracy`, `dtw/accuracy`), and, with
`model.kernels`, the opt-in kernel ensemble (`ensemble/accuracy`). Never
selected on test.

Metrics (per series): `accuracy` (top-1), `loss` (cross-entropy, nats) and
`score` = accuracy - 0.01 loss (the checkpoint-selection metric: accuracy
first, the loss breaking ties of small validation splits).
"""

from __future__ import annotations

import functools
import hashlib
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from lstm_jax.baselines import classify
from lstm_jax.data import ts_augment, ucr
from lstm_jax.errors import ConfigError
from lstm_jax.models.classifier import CandidateClassifier, SequenceClassifier
from lstm_jax.models.fcn import FCN
from lstm_jax.nn.layers import lstm_from_config
from lstm_jax.tasks.base import Batch, Datasets, Metrics
from lstm_jax.tasks.ucr import choice
from lstm_jax.tasks.ucr.checks import parse_candidate, validate
from lstm_jax.tasks.ucr.choice import SCORE_LOSS_WEIGHT, predict

# The task's interface (`validate`, from tasks.ucr.checks) and its analysis
# helper (`predict`, from tasks.ucr.choice).
__all__ = ["predict", "validate"]

TOKEN_METRIC = "accuracy"  # a "token" is one classified series
# The files' identity is their sha256 (data.json), not their path.
RESUMABLE_KEYS = ("data.train_path", "data.test_path", "data.eval_batch_size")
# model.patch = 0: the LSTM reads at most about this many patches.
AUTO_LSTM_STEPS = 50
# The chosen classifier's test probabilities, for seed ensembles.
PROBS_FILE = "test_probs.npy"


def auto_patch(max_len: int, max_steps: int = AUTO_LSTM_STEPS) -> int:
  """Steps per input so at most `max_steps` are read: ceil(max_len / max_steps)."""
  return max(1, -(-max_len // max_steps))


def class_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
  """<float32>[num_classes] inverse-frequency weights n / (classes x n_c) of
  `labels` (sklearn's "balanced"; the LSTM-FCN authors' class weights); a
  class absent from `labels` gets 0."""
  counts = np.bincount(np.asarray(labels), minlength=num_classes).astype(np.float64)
  present = counts > 0
  w = np.zeros(num_classes)
  w[present] = len(labels) / (present.sum() * counts[present])
  return w.astype(np.float32)


def _sha256(path: str) -> str:
  with open(path, "rb") as f:
    return hashlib.sha256(f.read()).hexdigest()


def _label(config: ml_collections.ConfigDict, path: str | None) -> str:
  """How a run names one of its files: the given `path` where the config
  gives paths (they win over `data.name`, as in `_paths`), else the shipped
  set's name."""
  return path if config.data.train_path else config.data.name


def _paths(config: ml_collections.ConfigDict) -> tuple[str, str]:
  """(train_path, test_path) of the config: given, or the shipped data.name."""
  d = config.data
  if d.train_path or d.test_path:
    if not (d.train_path and d.test_path):
      raise ConfigError(
        "data.train_path and data.test_path go together; got "
        f"train_path={d.train_path!r}, test_path={d.test_path!r}"
      )
    return d.train_path, d.test_path
  if not d.name:
    shipped = ", ".join(ucr.shipped_datasets()) or "none (pip install 'lstm_jax[ucr]')"
    raise ConfigError(
      "no UCR/UEA data: name a shipped set (experiments/ucr.py:GunPoint or "
      "GunPoint,tiny) or pass --config.data.train_path=... "
      f"--config.data.test_path=...; shipped: {shipped}"
    )
  return ucr.resolve(d.name)


def _read(
  config: ml_collections.ConfigDict,
) -> tuple[tuple[str, str], ucr.TsData, ucr.TsData]:
  """((train path, test path), the parsed train file, the parsed test file)."""
  paths = _paths(config)
  fill = config.data.fill_missing
  return paths, ucr.load_ts(paths[0], fill), ucr.load_ts(paths[1], fill)


def load_splits(config: ml_collections.ConfigDict) -> tuple[dict[str, Batch], dict]:
  """The train/valid/test arrays of `data.ucr.prepare` and the run's data info."""
  d = config.data
  (train_path, test_path), train, test = _read(config)
  splits, prep = ucr.prepare(
    train, test, d.valid_fraction, config.seed, d.normalization
  )
  info = {
    "source": _label(config, train_path),
    "train_sha256": _sha256(train_path),
    "test_sha256": _sha256(test_path),
    "classes": prep["classes"],
    "num_channels": train.num_channels,
    "max_len": int(prep["max_len"]),
    "sizes": {k: len(v["labels"]) for k, v in splits.items()},
    # Where the choice among candidates is made (`choice.choose_and_test`).
    "chosen_on": "valid" if "valid" in splits else "train",
    "mean": [float(x) for x in prep["mean"]],
    "std": [float(x) for x in prep["std"]],
  }
  return splits, info


def make_datasets(config: ml_collections.ConfigDict) -> Datasets:
  """Reads the two files; raises `DataError` naming the file (and line)."""
  splits, info = load_splits(config)
  if config.data.class_weights:
    labels = splits["train"]["labels"]
    weights = class_weights(labels, len(info["classes"]))
    splits["train"] = {**splits["train"], "weights": weights[labels]}
  if "valid" not in splits and config.data.valid_fraction:
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
    eval_batches=functools.partial(
      choice.batches, choice.chosen_on(splits), config.data.eval_batch_size
    ),
    test_batches=functools.partial(
      choice.batches, splits["test"], config.data.eval_batch_size
    ),
    info=info,
  )


def _classifier(
  config: ml_collections.ConfigDict, info: dict[str, Any], read: str | None, fcn: bool
) -> SequenceClassifier:
  """One classifier: the LSTM reading `read` (None: no LSTM) [+ the FCN]."""
  m = config.model
  se = m.se_reduction if info["num_channels"] > 1 else 0  # MLSTM-FCN's rule
  fcn_patch = auto_patch(info["max_len"], m.fcn_max_steps) if m.fcn_max_steps else 1
  return SequenceClassifier(
    lstm=None if read is None else lstm_from_config(m.lstm),
    num_classes=len(info["classes"]),
    pooling="last" if read in (None, "shuffle") else read,
    dropout=m.dropout,
    fcn=FCN(m.fcn_width, se, m.fcn_norm) if fcn else None,
    patch=m.patch or auto_patch(info["max_len"]),
    fcn_patch=fcn_patch,
    shuffle=read == "shuffle",
    lstm_dropout=m.lstm_dropout,
  )


def make_model(
  config: ml_collections.ConfigDict, info: dict[str, Any]
) -> SequenceClassifier | CandidateClassifier:
  """One classifier per `model.candidates` entry (LSTM-FCN: "shuffle+fcn"),
  or the one of `model.pooling` [+ FCN when `model.fcn_width` > 0]."""
  if config.model.candidates:
    members = [
      _classifier(config, info, *parse_candidate(spec))
      for spec in config.model.candidates
    ]
    return CandidateClassifier(members=tuple(members))
  return _classifier(config, info, config.model.pooling, config.model.fcn_width > 0)


def loss_and_metrics(logits: jax.Array, batch: Batch) -> tuple[jax.Array, Metrics]:
  """Mean (class-weighted) cross-entropy per series; accuracy first.

  Candidates' logits <float>[batch, members, classes]: the loss is the sum of
  the members' mean cross-entropies (each trains as if alone), the metrics
  their means over members (per series), plus `m<i>/accuracy`. A training
  batch's "weights" <float>[batch] (the class weights) multiply each series'
  cross-entropy in the loss, as Keras' `class_weight` does; the metrics are
  unweighted.
  """
  if logits.ndim == 3:
    logits = jnp.swapaxes(logits, 0, 1)  # [members, batch, classes] below
  labels = batch["labels"]
  nll = optax.softmax_cross_entropy_with_integer_labels(
    logits, jnp.broadcast_to(labels, logits.shape[:-1])
  )
  n = jnp.asarray(labels.shape[0], jnp.float32)
  hits = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
  k = 1 if logits.ndim == 2 else logits.shape[0]
  correct, total_nll = jnp.sum(hits) / k, jnp.sum(nll) / k
  metrics = {
    "accuracy": (correct, n),
    "loss": (total_nll, n),
    "score": (correct - SCORE_LOSS_WEIGHT * total_nll, n),
  }
  if logits.ndim == 3:
    for i in range(k):
      metrics[f"m{i}/accuracy"] = (jnp.sum(hits[i]), n)
  weights = batch.get("weights")
  weighted = nll if weights is None else nll * weights
  return jnp.sum(jnp.mean(weighted, -1)), metrics


def final_evaluation(
  config: ml_collections.ConfigDict,
  model: SequenceClassifier | CandidateClassifier,
  params: Any,
  datasets: Datasets,
  workdir: str | None = None,
) -> dict[str, float]:
  """Chooses the LSTM model, scores the test file once, then the baselines.

  The choice reads validation, or with `data.valid_fraction` 0 the training
  file (`choice.chosen_on`), whose figures are then `valid_score` and
  `valid_accuracy`.

  The choice (`tasks.ucr.choice`): an LSTM candidate at the selected
  checkpoint or their ensemble, by validation score (the one-standard-error
  rule); only it is scored on test as ours (`choice`: its index,
  `valid_score`/`valid_accuracy`: its validation figures; `m<i>/accuracy`:
  each candidate's test accuracy, the ablation). Ours: `accuracy`, `loss`,
  `score` over the whole test file; its test probabilities go to
  `<workdir>/test_probs.npy` <float32>[N, classes] (seed ensembles). With
  `model.kernels`: the opt-in kernel ensemble's `ensemble/accuracy`.
  Baselines (`data.baselines`): `<name>/accuracy`, fit on the whole official
  training file (raw values) and scored on the same test file.
  """
  del datasets  # the splits again, with the training part for the kernels
  _, train, test_ts = _read(config)  # parsed once, for ours and the baselines
  d = config.data
  splits, _ = ucr.prepare(
    train, test_ts, d.valid_fraction, config.seed, d.normalization
  )
  out, probs = choice.choose_and_test(
    model,
    params,
    splits,
    seed=config.seed,
    kernels=config.model.kernels,
    batch_size=config.data.eval_batch_size,
    batch_norm=config.model.fcn_norm == "batch",
  )
  if workdir and jax.process_index() == 0:
    np.save(os.path.join(workdir, PROBS_FILE), probs)
  if d.baselines:
    out.update(
      classify.accuracies(
        train.series,
        np.asarray(train.labels),
        test_ts.series,
        np.asarray(test_ts.labels),
        config.seed,
        tuple(d.baselines),
      )
    )
  return out


def report(config, model, params, datasets, results) -> dict[str, Any]:
  del model, params
  if "test/accuracy" in results:
    scored = _label(config, config.data.test_path)
    print(
      f"{scored}: test accuracy {results['test/accuracy']:.4f} "
      f"({datasets.info['sizes']['test']} series, checkpoint of step "
      f"{int(results['test/checkpoint_step'])})"
      + "".join(
        f"; {k.split('/')[1]} {v:.4f}"
        for k, v in results.items()
        if k.startswith("test/") and k.count("/") == 2 and k.endswith("/accuracy")
      )
    )
  return {}
