"""The choice and the test with the papers' BatchNorm in the FCN: every
series is normalised by the whole training split's statistics, so no
prediction depends on the batches it is scored in (with the batch's own
statistics, it would)."""

import jax
import jax.numpy as jnp
import numpy as np

from lstm_jax.models.classifier import CandidateClassifier, SequenceClassifier
from lstm_jax.models.fcn import FCN
from lstm_jax.tasks.ucr import choice


def _split(rng, n: int, t: int = 12, classes: int = 3):
  lengths = rng.integers(3, t + 1, size=n)
  mask = np.arange(t)[None] < lengths[:, None]
  x = rng.normal(size=(n, t, 1)).astype(np.float32) * 2 + 0.5
  x[~mask] = 0.0
  return {
    "inputs": x,
    "mask": mask,
    "labels": rng.integers(0, classes, size=n).astype(np.int32),
  }


def _model_and_params(train):
  # An FCN branch with BatchNorm and one without (the FCN branches alone:
  # an LSTM's scan adds compile time and nothing to what is checked here).
  members = (
    SequenceClassifier(lstm=None, num_classes=3, fcn=FCN(4, norm="batch")),
    SequenceClassifier(lstm=None, num_classes=3, fcn=FCN(4, norm="layer")),
  )
  model = CandidateClassifier(members=members)
  params = model.init(jax.random.key(0), jax.tree.map(jnp.asarray, train))["params"]
  return model, params


def test_batch_norm_choice_and_test_do_not_depend_on_the_batch_size():
  rng = np.random.default_rng(5)
  splits = {"train": _split(rng, 20), "test": _split(rng, 17)}
  splits["train"]["weights"] = np.ones(20, np.float32)  # dropped for statistics
  model, params = _model_and_params(splits["train"])

  stats = choice.train_statistics(model, params, splits["train"])
  # The batch-norm member's three norms; the LayerNorm member has none.
  assert sorted(stats["members_0"]["fcn"]) == ["norm_0", "norm_1", "norm_2"]
  assert "members_1" not in stats

  def run(batch_size, batch_norm):
    return choice.choose_and_test(
      model,
      params,
      splits,
      seed=0,
      kernels=0,
      batch_size=batch_size,
      batch_norm=batch_norm,
    )

  (out_small, probs_small), (out_big, probs_big) = run(3, True), run(256, True)
  # float32 forward passes over batches of different shapes, relative
  np.testing.assert_allclose(probs_small, probs_big, rtol=1e-5, atol=1e-6)
  assert out_small["m0/accuracy"] == out_big["m0/accuracy"]
  # The same scoring by each batch's own statistics depends on the batches.
  _, own_small = run(3, False)
  _, own_big = run(256, False)
  assert not np.allclose(own_small, own_big, atol=1e-3)


def test_predict_uses_the_training_statistics_and_the_given_choice():
  rng = np.random.default_rng(6)
  train, test = _split(rng, 20), _split(rng, 9)
  model, params = _model_and_params(train)
  stats = choice.train_statistics(model, params, train)
  want, _ = choice.log_probs(model, params, [test], stats)
  got = choice.predict(model, params, test, train)
  np.testing.assert_array_equal(got, want[-1].argmax(-1))
  one = {k: v[:1] for k, v in test.items()}  # a series alone: the same class
  assert choice.predict(model, params, one, train)[0] == got[0]
  for i in range(3):  # each member, then their ensemble (the record's choice)
    want_i = want[i].argmax(-1)
    np.testing.assert_array_equal(choice.predict(model, params, test, train, i), want_i)
