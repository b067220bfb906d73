"""MiniRocket + ridge: the one pipeline of the same-run baseline and of the UCR
task's opt-in kernel ensemble (`experiments/ucr.py:NAME,ensemble`).

The classifier (Dempster et al. 2021, arXiv:2012.08791, as aeon implements
it; the same pipeline as aeon's `MiniRocketClassifier`):

  f = MiniRocket(x)                      # <float64>[N, ~10k] PPV features
  z = f / std_fit(f)                     # scaling fit on the fitting series
  d = z W + b                            # RidgeClassifierCV, penalty by LOO

on right-zero-padded series <float>[N, T, C] with a <bool>[N, T] mask
(aeon's [N, C, T]; at least 9 steps, MiniRocket's kernel length). The
baseline (`baselines.classify`) fits it on the raw official TRAIN file; the
task's ensemble fits it on the normalised training part, for validation.

Probabilities: a ridge classifier gives decision values, not probabilities,
and the ensemble's validation score (accuracy - 0.01 cross-entropy) and its
mix with the LSTM need probabilities. RidgeClassifierCV's leave-one-out
decision values at the chosen penalty (`store_cv_results` with a scorer) are
out-of-sample for every fitting series, so a temperature `t` fit on them
(cross-entropy over `TEMPERATURES`) calibrates `softmax(t d)` without
touching validation or test. Binary sets have one decision column `d`; their
logits are `(-d, d)`, the class of `d > 0` being the second, as sklearn
predicts.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

Batch = dict[str, np.ndarray]  # inputs [N, T, C], mask [N, T], labels [N]

# RidgeClassifierCV's penalties (aeon's MiniRocketClassifier uses the same).
ALPHAS = np.logspace(-3, 3, 10)
# Calibration temperatures tried on the leave-one-out decision values.
TEMPERATURES = np.logspace(-1, 2, 61)
MIN_STEPS = 9  # MiniRocket's kernels have length 9
MIN_KERNELS = 84  # MiniRocket's kernel count comes in multiples of 84


def available() -> bool:
  """True when aeon (the `ucr` extra) is importable."""
  try:
    import aeon  # noqa: F401
  except ImportError:
    return False
  return True


@dataclasses.dataclass
class KernelRidge:
  """A fitted MiniRocket -> scaling -> ridge pipeline and its temperature."""

  transform: Any
  scale: np.ndarray  # <float64>[features]
  ridge: Any
  temperature: float
  num_classes: int


def aeon_input(arrays: Batch) -> np.ndarray:
  """<float64>[N, C, max(T, 9)] of zero-padded `inputs` [N, T, C]."""
  x = np.where(arrays["mask"][..., None], arrays["inputs"], 0.0)
  x = np.ascontiguousarray(np.swapaxes(x, 1, 2), np.float64)
  if x.shape[-1] < MIN_STEPS:
    x = np.pad(x, ((0, 0), (0, 0), (0, MIN_STEPS - x.shape[-1])))
  return x


def _logits(decision: np.ndarray) -> np.ndarray:
  """<float64>[N, classes] of sklearn's decision values, [N] or [N, 1] when binary."""
  d = np.asarray(decision, np.float64)
  if d.ndim == 2 and d.shape[1] == 1:
    d = d[:, 0]
  return np.stack([-d, d], -1) if d.ndim == 1 else d


def _log_softmax(logits: np.ndarray) -> np.ndarray:
  z = logits - logits.max(-1, keepdims=True)
  return z - np.log(np.exp(z).sum(-1, keepdims=True))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
  """The `TEMPERATURES` entry of least mean cross-entropy of softmax(t logits)."""
  nll = [
    -np.take_along_axis(_log_softmax(t * logits), labels[:, None], -1).mean()
    for t in TEMPERATURES
  ]
  return float(TEMPERATURES[int(np.argmin(nll))])


def fit(arrays: Batch, seed: int, num_kernels: int, num_classes: int) -> KernelRidge:
  """Fits the pipeline on `arrays` ({"inputs", "mask", "labels"}).

  Args:
    arrays: the fitting series, <float>[N, T, C] inputs, <bool>[N, T] mask and
      <int>[N] labels in [0, num_classes).
    seed: MiniRocket's kernels (dilations, biases' quantiles) are seeded.
    num_kernels: MiniRocket's `n_kernels` (rounded down to a multiple of 84).
    num_classes: the classes (a class absent from `arrays` keeps a
      column of zero probability mass after calibration's softmax, never an
      index shift).
  """
  from aeon.transformations.collection.convolution_based import MiniRocket

  transform = MiniRocket(n_kernels=num_kernels, random_state=seed, n_jobs=1)
  feats = transform.fit_transform(aeon_input(arrays))
  return fit_features(feats, np.asarray(arrays["labels"]), num_classes, transform)


def fit_features(
  feats: np.ndarray, labels: np.ndarray, num_classes: int, transform: Any = None
) -> KernelRidge:
  """The scaling, ridge and temperature of `fit` on features already computed.

  Args:
    feats: <float64>[N, features] of the fitting series (MiniRocket's).
    labels: <int>[N] in [0, num_classes).
    num_classes: as in `fit`.
    transform: the fitted transform that made `feats`, kept for `log_probs`.
  """
  from sklearn.linear_model import RidgeClassifierCV

  scale = feats.std(0)
  scale = np.where(scale > 0, scale, 1.0)
  feats = feats / scale
  # The penalty as aeon chooses it (leave-one-out squared error), then a refit
  # at that penalty with a scorer, which makes sklearn keep the leave-one-out
  # decision values themselves ([N, targets, 1]) rather than squared errors.
  alpha = RidgeClassifierCV(alphas=ALPHAS).fit(feats, labels).alpha_
  ridge = RidgeClassifierCV(alphas=[alpha], scoring="accuracy", store_cv_results=True)
  ridge.fit(feats, labels)
  loo_logits = _full(_logits(ridge.cv_results_[..., 0]), ridge.classes_, num_classes)
  temperature = fit_temperature(loo_logits, labels)
  return KernelRidge(transform, scale, ridge, temperature, num_classes)


def _full(logits: np.ndarray, present: np.ndarray, num_classes: int) -> np.ndarray:
  """[N, num_classes] logits; classes absent from the fit get -inf."""
  out = np.full((len(logits), num_classes), -np.inf)
  out[:, np.asarray(present, np.int64)] = logits
  return out


def log_probs(model: KernelRidge, arrays: Batch) -> np.ndarray:
  """<float64>[N, classes] calibrated log-probabilities of `arrays`' series."""
  return feature_log_probs(model, model.transform.transform(aeon_input(arrays)))


def feature_log_probs(model: KernelRidge, feats: np.ndarray) -> np.ndarray:
  """<float64>[N, classes] calibrated log-probabilities of <float64>[N,
  features] unscaled features."""
  logits = _full(
    _logits(model.ridge.decision_function(feats / model.scale)),
    model.ridge.classes_,
    model.num_classes,
  )
  return _log_softmax(model.temperature * logits)


def predict(model: KernelRidge, arrays: Batch) -> np.ndarray:
  """<int64>[N] predicted class indices (sklearn's argmax of the decisions)."""
  return log_probs(model, arrays).argmax(-1)


def padded(series, length: int) -> Batch:
  """{"inputs" <float64>[N, length, C], "mask"} of [time_i, C] series, zeros
  after each one's end."""
  x = np.zeros((len(series), length, series[0].shape[1]))
  mask = np.zeros((len(series), length), bool)
  for i, s in enumerate(series):
    x[i, : len(s)] = np.asarray(s)
    mask[i, : len(s)] = True
  return {"inputs": x, "mask": mask}
