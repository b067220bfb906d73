"""Same-run UCR/UEA classification baselines from aeon (the `ucr` extra).

The figures users compare a time-series classifier with, computed on the same
files in the same run:

* MiniRocket (Dempster et al. 2021, arXiv:2012.08791) features, scaled, and a
  ridge classifier with its penalty chosen by leave-one-out CV on TRAIN
  (`baselines.minirocket`, the pipeline of aeon's `MiniRocketClassifier`:
  10,000 kernels, `RidgeClassifierCV` over `logspace(-3, 3, 10)`). Its
  kernels are seeded.
* 1-NN with full-window DTW (aeon's `KNeighborsTimeSeriesClassifier(distance=
  "dtw")`; multichannel series use dependent DTW, DTW_D, as in the UEA
  archive paper). Deterministic.

Both are fit on the whole official TRAIN file, raw values (no validation
split is needed: neither selects anything on test), and predict TEST once.

Variable length: DTW takes unequal-length series as they are (aeon supports
it). MiniRocket needs one length, so series are padded on the right with
zeros to the longest series of TRAIN and TEST (aeon's documented approach for
unequal-length sets with Rocket-type transforms); MiniRocket also needs at
least 9 steps, so shorter sets are padded to 9.

Series come as lstm_jax/data/ucr.py gives them: per example <float>[time_i,
channels]; aeon wants [channels, time].
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lstm_jax.baselines import minirocket

NAMES = ("minirocket", "dtw")
KERNELS = 10_000  # MiniRocket's published default


def _aeon_collection(series: Sequence[np.ndarray]):
  """<float64>[N, C, T] if all lengths are equal, else a list of [C, T_i]."""
  out = [np.ascontiguousarray(np.asarray(s, np.float64).T) for s in series]
  if len({x.shape[1] for x in out}) == 1:
    return np.stack(out)
  return out


def minirocket_predict(
  train: Sequence[np.ndarray],
  train_labels: np.ndarray,
  test: Sequence[np.ndarray],
  seed: int,
) -> np.ndarray:
  """MiniRocket + RidgeClassifierCV fit on `train`; predicted labels of `test`."""
  length = max(minirocket.MIN_STEPS, *(len(s) for s in train), *(len(s) for s in test))
  classes, y = np.unique(np.asarray(train_labels), return_inverse=True)
  fitting = {**minirocket.padded(train, length), "labels": y}
  fitted = minirocket.fit(fitting, seed, KERNELS, len(classes))
  return classes[minirocket.predict(fitted, minirocket.padded(test, length))]


def dtw_predict(
  train: Sequence[np.ndarray], train_labels: np.ndarray, test: Sequence[np.ndarray]
) -> np.ndarray:
  """1-NN, full-window (dependent) DTW, fit on `train`; labels of `test`."""
  from aeon.classification.distance_based import KNeighborsTimeSeriesClassifier

  clf = KNeighborsTimeSeriesClassifier(distance="dtw", n_neighbors=1, n_jobs=1)
  clf.fit(_aeon_collection(train), np.asarray(train_labels))
  return clf.predict(_aeon_collection(test))


def accuracies(
  train: Sequence[np.ndarray],
  train_labels: np.ndarray,
  test: Sequence[np.ndarray],
  test_labels: np.ndarray,
  seed: int,
  names: Sequence[str] = NAMES,
) -> dict[str, float]:
  """{"<name>/accuracy": test accuracy} of each baseline in `names`."""
  unknown = sorted(set(names) - set(NAMES))
  if unknown:
    raise ValueError(f"unknown baselines {unknown}; expected some of {NAMES}")
  test_labels = np.asarray(test_labels)
  out = {}
  for name in names:
    if name == "minirocket":
      pred = minirocket_predict(train, train_labels, test, seed)
    else:
      pred = dtw_predict(train, train_labels, test)
    out[f"{name}/accuracy"] = float(np.mean(np.asarray(pred) == test_labels))
  return out
