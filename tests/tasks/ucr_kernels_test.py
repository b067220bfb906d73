"""MiniRocket + ridge (baselines.minirocket) and the validation choice around it.

References: aeon's own `MiniRocketClassifier` (MiniRocket, scaling without
centring, `RidgeClassifierCV` over the same penalties) on the same arrays;
leave-one-out decision values from a loop of sklearn `RidgeClassifier` fits
that each leave one series out; labels read from the shipped .ts files.
"""

import jax
import numpy as np
import pytest

from lstm_jax.data import ucr

pytest.importorskip("aeon")
from lstm_jax.baselines import minirocket
from lstm_jax.models.classifier import CandidateClassifier, SequenceClassifier
from lstm_jax.nn.layers import LSTM
from lstm_jax.tasks.ucr import choice


def _splits(name: str, seed: int = 0):
  shipped = ucr.shipped_datasets()
  if name not in shipped:
    pytest.skip(f"{name} not shipped in an installed aeon/sktime")
  train, test = (ucr.load_ts(p) for p in shipped[name])
  splits, _ = ucr.prepare(train, test, 0.2, seed)
  return splits, test


def _aeon_predict(fit_arrays, arrays, seed, kernels):
  from aeon.classification.convolution_based import MiniRocketClassifier

  clf = MiniRocketClassifier(n_kernels=kernels, random_state=seed, n_jobs=1)
  clf.fit(minirocket.aeon_input(fit_arrays), fit_arrays["labels"])
  return clf.predict(minirocket.aeon_input(arrays))


# Running MiniRocket at all compiles aeon's numba kernels, ~17 s (univariate)
# and ~10 s more (multivariate) of first compile in a fresh environment, so
# every test that runs it is `-m slow`. The default suite checks the rest of
# the pipeline in-process: the scaling, ridge and calibration on given
# features against sklearn (test_temperature_..., test_a_class_absent_...),
# and `aeon_input`'s layout and padding against numpy.
# UnitTest: 2 classes, univariate; BasicMotions: 4 classes x 6 channels.
@pytest.mark.slow
@pytest.mark.parametrize("name", ["UnitTest", "BasicMotions"])
def test_predictions_equal_aeons_minirocket_classifier(name):
  splits, _ = _splits(name)
  num_classes = int(splits["train"]["labels"].max()) + 1
  fitted = minirocket.fit(splits["train"], 3, 840, num_classes)
  got = minirocket.log_probs(fitted, splits["test"]).argmax(-1)
  want = _aeon_predict(splits["train"], splits["test"], 3, 840)
  np.testing.assert_array_equal(got, want)


def _features(n: int = 24, f: int = 40, classes: int = 2, seed: int = 0):
  """Seeded stand-ins for MiniRocket's features: [n, f] PPVs in [0, 1] whose
  first columns carry the class, and the labels."""
  rng = np.random.default_rng(seed)
  y = np.arange(n) % classes
  feats = rng.uniform(size=(n, f))
  feats[:, :classes] += 0.3 * np.eye(classes)[y]
  feats[:, -1] = 0.5  # a constant feature: scaled by 1, not divided by 0
  return feats, y


def test_temperature_is_fit_on_leave_one_out_decisions():
  from sklearn.linear_model import RidgeClassifier

  feats, y = _features()
  fitted = minirocket.fit_features(feats, y, 2)
  scale = np.where(feats.std(0) > 0, feats.std(0), 1.0)
  z = feats / scale
  loo = []
  for i in range(len(y)):
    keep = np.arange(len(y)) != i
    clf = RidgeClassifier(alpha=fitted.ridge.alpha_).fit(z[keep], y[keep])
    loo.append(clf.decision_function(z[i : i + 1])[0])
  loo = np.asarray(loo)
  logits = np.stack([-loo, loo], -1)  # binary: class 1 where d > 0

  def nll(t):
    s = t * logits
    s = s - s.max(-1, keepdims=True)
    logp = s - np.log(np.exp(s).sum(-1, keepdims=True))
    return -logp[np.arange(len(y)), y].mean()

  # float64 selection of the same temperature: approx's rel 1e-6 is rounding slack
  best = min(minirocket.TEMPERATURES, key=nll)
  assert fitted.temperature == pytest.approx(best)
  # Calibrated probabilities: softmax of the temperature times the decisions.
  probs = np.exp(minirocket.feature_log_probs(fitted, feats))
  np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-12)
  d = RidgeClassifier(alpha=fitted.ridge.alpha_).fit(z, y).decision_function(z)
  want = 1 / (1 + np.exp(-2 * fitted.temperature * d))  # softmax of (-td, td)
  np.testing.assert_allclose(probs[:, 1], want, rtol=1e-9)


def test_a_class_absent_from_the_fit_gets_no_probability():
  feats, y = _features(classes=2)
  fitted = minirocket.fit_features(feats, y, 3)  # a third class never seen
  probs = np.exp(minirocket.feature_log_probs(fitted, feats))
  assert probs.shape == (len(y), 3)
  np.testing.assert_array_equal(probs[:, 2], 0.0)


def test_aeon_input_zeroes_padding_and_pads_to_the_kernel_length():
  x = np.arange(2 * 5 * 3, dtype=np.float32).reshape(2, 5, 3)  # [N, T, C]
  mask = np.array([[True] * 5, [True, True, False, False, False]])
  got = minirocket.aeon_input({"inputs": x, "mask": mask})
  want = np.zeros((2, 3, minirocket.MIN_STEPS))  # [N, C, max(T, 9)]
  want[0, :, :5] = x[0].T
  want[1, :, :2] = x[1, :2].T
  np.testing.assert_array_equal(got, want)
  assert got.dtype == np.float64 and got.flags.c_contiguous


@pytest.mark.slow
def test_choice_refits_kernels_on_all_training_series_and_keeps_the_lstm_figure():
  splits, test_ts = _splits("UnitTest")
  members = tuple(
    SequenceClassifier(lstm=LSTM(4), num_classes=2, pooling=p) for p in ("mean", "max")
  )
  model = CandidateClassifier(members=members)
  params = model.init(jax.random.key(0), {k: v[:2] for k, v in splits["train"].items()})
  # All-zero parameters: every LSTM choice says 1/2, 1/2 (argmax: class 0),
  # so a kernel choice (alone, or mixed with that flat vote) must win.
  params = jax.tree.map(np.zeros_like, params["params"])
  out, probs = choice.choose_and_test(
    model, params, splits, seed=0, kernels=168, batch_size=7
  )
  assert out["ensemble/choice"] in (3, 4)  # 2 members + their ensemble, kernels, mix
  labels = ucr.encode_labels(test_ts.labels, ["1", "2"])
  whole = {
    k: np.concatenate([splits["train"][k], splits["valid"][k]]) for k in splits["train"]
  }
  want = _aeon_predict(whole, splits["test"], 0, 168)
  # accuracies as count ratios: float rounding of one division
  assert out["ensemble/accuracy"] == pytest.approx(np.mean(want == labels))
  # Ours is the LSTM's choice whatever the kernels do: the flat vote, class 0.
  assert out["accuracy"] == pytest.approx(np.mean(labels == 0))
  np.testing.assert_array_equal(probs, 0.5)


def test_one_standard_error_rule_by_hand():
  # 10 validation series; choices: 2 LSTM members, their ensemble, kernels, mix.
  acc = np.array([0.9, 0.6, 0.8, 0.7, 0.6])
  order = choice.preference(3, kernels=True)
  assert order == [3, 4, 0, 2, 1]
  # Best 0.9: p = 10/12, se = sqrt(p (1 - p) / 10) = 0.1179; the kernels'
  # 0.7 is outside, the first member's 0.9 inside.
  assert choice.one_se_choice(acc, acc, 10, order) == 0
  acc[3] = 0.8  # now inside: the kernels, first in preference
  assert choice.one_se_choice(acc, acc, 10, order) == 3
  # All right on 8 series: p = 9/10, se = 0.106, so 7 of 8 (0.875) is
  # outside (0.875 < 0.894): the ensemble, second of the LSTM choices.
  acc = np.array([0.875, 1.0, 1.0, 0.875, 0.75])
  assert choice.one_se_choice(acc, acc, 8, order) == 2
  acc[3] = 1.0
  assert choice.one_se_choice(acc, acc, 8, order) == 3
  assert choice.preference(3, False) == [0, 2, 1]
  assert choice.one_se_choice(acc, acc, 8, choice.preference(3, False)) == 2
