"""lstm_jax.baselines.kneser_ney against a plain-Python model written from
Chen & Goodman's (1998) definitions of interpolated modified Kneser-Ney, a
hand-computed bigram, and normalisation."""

from collections import Counter, defaultdict

import numpy as np
import pytest

from lstm_jax.baselines.kneser_ney import KneserNey


def _reference(train: list[int], order: int, v: int):
  """P(w | h) with dicts: continuation counts as sets of left neighbours."""
  raw = {
    k: Counter(tuple(train[i - k + 1 : i + 1]) for i in range(k - 1, len(train)))
    for k in range(1, order + 1)
  }
  counts = {order: raw[order]}
  for k in range(1, order):
    left = defaultdict(set)
    for g in raw[k + 1]:
      left[g[1:]].add(g[0])
    counts[k] = Counter({g: len(s) for g, s in left.items()})
  discount = {}
  for k, c in counts.items():
    n = [sum(1 for x in c.values() if x == j) for j in (1, 2, 3, 4)]
    y = n[0] / (n[0] + 2 * n[1]) if n[0] + n[1] else 0.5
    d = [0.0]
    for j in (1, 2, 3):
      value = j - (j + 1) * y * n[j] / n[j - 1] if n[j - 1] else y * j
      d.append(min(max(value, 0.0), j))
    discount[k] = d
  ctx = {k: defaultdict(list) for k in counts}
  for k, c in counts.items():
    for g, x in c.items():
      ctx[k][g[:-1]].append(x)

  def prob(history: tuple[int, ...], w: int) -> float:
    p = 1.0 / v
    for k in range(1, order + 1):
      if len(history) < k - 1:
        break
      h = tuple(history[len(history) - k + 1 :]) if k > 1 else ()
      xs = ctx[k].get(h)
      if not xs:
        continue
      d = discount[k]
      c_h = sum(xs)
      gamma = sum(d[min(x, 3)] for x in xs) / c_h
      c_hw = counts[k].get(h + (w,), 0)
      p = max(c_hw - d[min(c_hw, 3)], 0) / c_h + gamma * p
    return p

  return prob


def _markov(v: int, n: int, seed: int) -> np.ndarray:
  rng = np.random.default_rng(seed)
  trans = rng.dirichlet(np.full(v, 0.2), size=(v, v))
  ids = [0, 1]
  for _ in range(n - 2):
    ids.append(int(rng.choice(v, p=trans[ids[-2], ids[-1]])))
  return np.array(ids)


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_matches_plain_python(order):
  v = 12
  ids = _markov(v, 4000, seed=order)
  split = 3500
  model = KneserNey(ids[:split], order, v)
  reference = _reference(list(ids[:split]), order, v)
  got = model.prob(ids, split, len(ids))
  want = [
    reference(tuple(ids[max(i - order + 1, 0) : i]), int(ids[i]))
    for i in range(split, len(ids))
  ]
  # both float64 (plain Python vs the numpy model), the same formulas: rounding of a few dozen operations << 1e-12
  np.testing.assert_allclose(got, want, rtol=1e-12)
  # From the start of the text: short histories at positions < order - 1.
  got = model.prob(ids, 0, 10)
  want = [
    reference(tuple(ids[max(i - order + 1, 0) : i]), int(ids[i])) for i in range(10)
  ]
  # as above: float64, the same formulas
  np.testing.assert_allclose(got, want, rtol=1e-12)


@pytest.mark.parametrize("order", [2, 3, 5])
def test_every_context_sums_to_one(order):
  v = 9
  ids = _markov(v, 1500, seed=7)
  model = KneserNey(ids[:1200], order, v)
  for pos in (1250, 1301, 1499):
    total = 0.0
    for w in range(v):
      arr = ids.copy()
      arr[pos] = w
      total += model.prob(arr, pos, pos + 1)[0]
    # a float64 sum over the vocabulary of probabilities: rounding << 1e-12
    assert total == pytest.approx(1.0, abs=1e-12)


def test_hand_computed_bigram():
  """Train "a b a b a c" (a=0, b=1, c=2, V=3), bigram.

  Bigram counts: ab 2, ba 2, ac 1 -> n1 = 1, n2 = 2, n3 = n4 = 0, so
  Y = 1/5, D1 = 1 - 2 Y 2/1 = 0.2, D2 = 2 - 3 Y 0 = 2 (clipped to 2),
  D3+ = 3 Y = 0.6 (n3 = 0). Unigram continuation counts: a 1 (after b),
  b 1 (after a), c 1 (after a): n1 = 3, n2 = 0: Y = 1, D1 = 1 - 0 = 1.
  P_1(w) = (1 - 1) / 3 + (1 * 3 / 3) * 1/3 = 1/3 for every w.
  P(b | a): c(a.) = 3, c(ab) = 2 -> (2 - 2) / 3 + (D2 * 1 + D1 * 1) / 3 * 1/3
          = 2.2 / 9.
  """
  model = KneserNey(np.array([0, 1, 0, 1, 0, 2]), 2, 3)
  got = model.prob(np.array([0, 1]), 1, 2)[0]
  # float64 of a hand-computed fraction: rounding << 1e-12
  assert got == pytest.approx(2.2 / 9, rel=1e-12)
  got_c = model.prob(np.array([0, 2]), 1, 2)[0]  # P(c | a) = (1 - 0.2)/3 + 2.2/9
  assert got_c == pytest.approx(0.8 / 3 + 2.2 / 9, rel=1e-12)


def test_rejects_bad_order():
  with pytest.raises(ValueError, match="order must be >= 1"):
    KneserNey(np.arange(5), 0, 5)
