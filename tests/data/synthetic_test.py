"""Generated tasks: their published baselines, determinism and shapes."""

import numpy as np
import pytest

from lstm_jax.data import synthetic


def test_adding_always_one_mse_is_one_sixth():
  # Le et al. (2015): predicting 1 gives MSE = Var(U1 + U2) = 1/6.
  errs = [
    np.mean((synthetic.adding_batch(0, k, 512, 50)["targets"] - 1.0) ** 2)
    for k in range(40)
  ]
  # a Monte Carlo mean of 40 x 512 samples: standard error ~0.001, abs 0.005 is 5 standard errors
  assert np.mean(errs) == pytest.approx(1 / 6, abs=0.005)


def test_adding_markers_one_per_half_and_target_is_their_sum():
  b = synthetic.adding_batch(3, 7, 64, 21)
  values, marker = b["inputs"][..., 0], b["inputs"][..., 1]
  assert b["inputs"].shape == (64, 21, 2) and b["mask"].all()
  assert (marker[:, :10].sum(1) == 1).all() and (marker[:, 10:].sum(1) == 1).all()
  # float32 targets vs a two-term float64 sum: one float32 rounding (< 1e-7 relative)
  np.testing.assert_allclose(b["targets"], (values * marker).sum(1), rtol=1e-6)


def test_copy_memoryless_baseline_matches_published_formula():
  delay = 100
  b = synthetic.copy_batch(1, 2, 256, delay)
  length = delay + 20
  assert b["inputs"].shape == b["targets"].shape == (256, length)
  # The memoryless strategy: blank with certainty for T + 10 steps, then
  # uniform over the 8 categories. Its CE, evaluated on the generated targets.
  probs = np.zeros((length, 10))
  probs[: delay + 10, synthetic.COPY_BLANK] = 1.0
  probs[delay + 10 :, 1:9] = 1 / 8
  p = probs[np.arange(length)[None, :], b["targets"]]
  ce = -np.mean(np.log(p))
  # float64 closed forms: rounding only
  assert ce == pytest.approx(10 * np.log(8) / (delay + 20), rel=1e-9)
  assert synthetic.copy_memoryless_ce(delay) == pytest.approx(ce, rel=1e-9)
  # The symbols to copy are the first 10 inputs; the delimiter sits 11 before the end.
  np.testing.assert_array_equal(b["targets"][:, -10:], b["inputs"][:, :10])
  assert (b["inputs"][:, length - 11] == synthetic.COPY_DELIMITER).all()


@pytest.mark.parametrize(
  "make",
  [
    lambda s, k: synthetic.adding_batch(s, k, 8, 30),
    lambda s, k: synthetic.copy_batch(s, k, 8, 12),
    lambda s, k: synthetic.seq2seq_batch(s, k, 8, "addition", 1, 4),
    lambda s, k: synthetic.seq2seq_batch(s, k, 8, "reversal", 2, 6),
  ],
)
def test_batches_are_pure_functions_of_seed_and_step(make):
  a, again, other = make(5, 11), make(5, 11), make(5, 12)
  for key in a:
    np.testing.assert_array_equal(a[key], again[key])
  assert any(not np.array_equal(a[k], other[k]) for k in a)


def test_seq2seq_addition_examples_are_correct_sums():
  b = synthetic.seq2seq_batch(0, 0, 200, "addition", 1, 5)
  assert b["inputs"].shape == (200, 11) and b["targets"].shape == (200, 7)
  for src, tgt, dec in zip(b["inputs"], b["targets"], b["decoder_inputs"]):
    left, right = synthetic.decode(src).split("+")
    assert int(synthetic.decode(tgt)) == int(left) + int(right)
    assert 1 <= max(len(left), len(right)) <= 5
    assert dec[0] == synthetic.BOS
    n = int((tgt != synthetic.PAD).sum())
    np.testing.assert_array_equal(dec[1:n], tgt[: n - 1])  # teacher forcing shift
  assert (b["mask"] == (b["targets"] != synthetic.PAD)).all()


def test_seq2seq_addition_lsb_is_addition_with_digits_reversed():
  b = synthetic.seq2seq_batch(0, 0, 200, "addition_lsb", 1, 5)
  assert b["inputs"].shape == (200, 11) and b["targets"].shape == (200, 7)
  for src, tgt in zip(b["inputs"], b["targets"]):
    left, right = synthetic.decode(src).split("+")
    assert int(synthetic.decode(tgt)[::-1]) == int(left[::-1]) + int(right[::-1])
    # No leading zero in the usual order = no trailing zero unless the number is 0.
    assert all(n == "0" or n[-1] != "0" for n in (left, right))
  # Same draws as "addition": the same numbers, written the other way round.
  plain = synthetic.seq2seq_batch(0, 0, 200, "addition", 1, 5)
  for s1, s2 in zip(b["inputs"], plain["inputs"]):
    pairs = zip(synthetic.decode(s1).split("+"), synthetic.decode(s2).split("+"))
    assert all(x[::-1] == y for x, y in pairs)


def test_seq2seq_reversal_and_heldout_longer_lengths():
  b = synthetic.seq2seq_batch(0, 0, 50, "reversal", 2, 6)
  for src, tgt in zip(b["inputs"], b["targets"]):
    assert synthetic.decode(tgt) == synthetic.decode(src)[::-1]
  h = synthetic.seq2seq_heldout(0, 5, "reversal", 2, 6, extra=2)
  assert sorted(set(h["length"].tolist())) == list(range(2, 9))
  assert h["inputs"].shape == (35, 8)
  lens = h["inputs_mask"].sum(1)
  np.testing.assert_array_equal(lens, h["length"])


def test_bad_arguments_raise():
  with pytest.raises(ValueError, match="task"):
    synthetic.seq2seq_batch(0, 0, 2, "sorting", 1, 3)
  with pytest.raises(ValueError, match="seq_len"):
    synthetic.adding_batch(0, 0, 2, 1)
