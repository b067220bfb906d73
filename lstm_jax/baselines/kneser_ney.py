"""Interpolated modified Kneser-Ney n-gram model over word ids (the word LM's
baseline; Chen & Goodman 1998, section 3, eq. 17-19).

  P_k(w | h) = max(c_k(hw) - D_k(c_k(hw)), 0) / c_k(h)
               + gamma_k(h) P_{k-1}(w | h'),
  gamma_k(h) = (D_k1 N1(h .) + D_k2 N2(h .) + D_k3+ N3+(h .)) / c_k(h),

down to P_0 = 1 / V (uniform over the vocabulary). c_k is the raw count at
the highest order and the continuation count N1+(. hw) (distinct left
neighbours) below it; c_k(h) = sum_w c_k(hw); N_j(h .) counts the words w with
c_k(hw) = j (N3+: >= 3); h' is h without its first word. A context never seen
(c_k(h) = 0) falls through to P_{k-1}. Discounts per order from the
counts-of-counts n_j of c_k: Y = n1 / (n1 + 2 n2), D_kj = j - (j + 1) Y
n_{j+1} / n_j (D_k3+ uses j = 3), each clipped to [0, j]; where n_j = 0 (tiny corpora)
D_kj = j Y instead.

The text is one stream, as the LSTM reads it: a history crosses `<eos>`
(which is a word like any other), with no sentence-start padding.

Counting is vectorised: the k-gram ending at position i is keyed by
(rank of the (k-1)-gram ending at i - 1) * V + w, where a rank is an index
into the sorted distinct grams of that order, so keys stay below
num_grams * V for any order (no V^k overflow).
"""

from __future__ import annotations

import numpy as np


def _discounts(counts: np.ndarray) -> np.ndarray:
  """<float64>[4] (0, D1, D2, D3+) of one order's counts (zeros ignored)."""
  n = [int(np.sum(counts == j)) for j in range(1, 5)]
  y = n[0] / (n[0] + 2 * n[1]) if n[0] + n[1] else 0.5
  d = [0.0]
  for j in (1, 2, 3):
    value = j - (j + 1) * y * n[j] / n[j - 1] if n[j - 1] else y * j
    d.append(min(max(value, 0.0), float(j)))
  return np.asarray(d)


def _ranks(grams: np.ndarray, keys: np.ndarray) -> np.ndarray:
  """Index of each key in the sorted `grams`, -1 where absent."""
  if len(grams) == 0:
    return np.full(len(keys), -1, np.int64)
  i = np.minimum(np.searchsorted(grams, keys), len(grams) - 1)
  return np.where(grams[i] == keys, i, -1)


class KneserNey:
  """Interpolated modified Kneser-Ney model of `train`.

  Args:
    train: <int>[n] training ids in [0, vocab_size).
    order: n of the n-gram (>= 1).
    vocab_size: V; P_0 = 1 / V.
  """

  def __init__(self, train: np.ndarray, order: int, vocab_size: int):
    if order < 1:
      raise ValueError(f"order must be >= 1, got {order}")
    ids = np.asarray(train, np.int64)
    if len(ids) < order:
      raise ValueError(f"{len(ids)} training ids are fewer than order {order}")
    self.order, self.v = order, vocab_size
    # Per order k (1-based): sorted distinct gram keys, raw counts, the rank
    # of each gram's context ((k-1)-gram; 0 = the empty context of k = 1)
    # and, per training position, the rank of the gram ending there.
    self.grams, raw, self.context = {}, {}, {}
    position_rank, first_seen = {}, {}
    prev = None
    for k in range(1, order + 1):
      # The k-gram ending at i: the (k-1)-gram ending at i - 1, then w.
      keys = ids if k == 1 else prev[:-1] * self.v + ids[k - 1 :]
      grams, first, inverse, counts = np.unique(
        keys, return_index=True, return_inverse=True, return_counts=True
      )
      self.grams[k], raw[k] = grams, counts
      self.context[k] = grams // self.v if k > 1 else np.zeros(len(grams), np.int64)
      position_rank[k], first_seen[k] = inverse, first
      prev = inverse
    # Counts: raw at the top order, continuation counts below it (distinct
    # (k+1)-grams whose last k words are this k-gram; the (k+1)-gram first
    # seen ending at i has the k-gram ending at i as its suffix).
    self.counts, self.discounts = {}, {}
    self.totals, self.n_j = {}, {}
    for k in range(order, 0, -1):
      if k == order:
        counts = raw[k]
      else:
        ends = first_seen[k + 1] + k  # absolute end positions of the (k+1)-grams
        suffix = position_rank[k][ends - (k - 1)]
        counts = np.bincount(suffix, minlength=len(self.grams[k]))
      self.counts[k] = counts
      self.discounts[k] = _discounts(counts)
      n_ctx = len(self.grams[k - 1]) if k > 1 else 1
      ctx = self.context[k]
      self.totals[k] = np.bincount(ctx, weights=counts, minlength=n_ctx)
      self.n_j[k] = np.stack(
        [
          np.bincount(ctx, weights=counts == 1, minlength=n_ctx),
          np.bincount(ctx, weights=counts == 2, minlength=n_ctx),
          np.bincount(ctx, weights=counts >= 3, minlength=n_ctx),
        ]
      )

  def prob(self, ids: np.ndarray, start: int, stop: int) -> np.ndarray:
    """<float64>[stop - start] P(ids[i] | ids[i - order + 1 : i]) for i in
    [start, stop) (the history is cut at index 0)."""
    ids = np.asarray(ids, np.int64)
    lo = max(start - self.order + 1, 0)
    window = ids[lo:stop]
    # ranks[k][j]: rank of the k-gram ending at lo + j, -1 if never seen.
    ranks = {1: _ranks(self.grams[1], window)}
    for k in range(2, self.order + 1):
      prev = ranks[k - 1]
      keys = np.where(prev[:-1] >= 0, prev[:-1] * self.v + window[1:], -1)
      ranks[k] = np.concatenate([[-1], _ranks(self.grams[k], keys)])
    sl = slice(start - lo, stop - lo)
    p = np.full(stop - start, 1.0 / self.v)
    for k in range(1, self.order + 1):
      if k == 1:
        h = np.zeros(stop - start, np.int64)
      elif start > lo:  # the context: the (k-1)-gram ending one word earlier
        h = ranks[k - 1][start - lo - 1 : stop - lo - 1]
      else:  # start = 0: the first word has no history
        h = np.concatenate([[-1], ranks[k - 1][: stop - lo - 1]])
      seen = h >= 0
      hh = np.where(seen, h, 0)
      c_h = np.where(seen, self.totals[k][hh], 0.0)
      g = ranks[k][sl]
      c_hw = np.where(g >= 0, self.counts[k][np.maximum(g, 0)], 0)
      d = self.discounts[k]
      gamma = (d[1:, None] * self.n_j[k][:, hh]).sum(0)
      safe = np.maximum(c_h, 1.0)
      mixed = (np.maximum(c_hw - d[np.minimum(c_hw, 3)], 0) + gamma * p) / safe
      p = np.where(c_h > 0, mixed, p)
    return p

  def perplexity(self, ids: np.ndarray, start: int, stop: int) -> float:
    """exp of the mean NLL of ids[start:stop] (each from its history in ids)."""
    return float(np.exp(-np.mean(np.log(self.prob(ids, start, stop)))))
