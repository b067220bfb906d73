r"""Baseline: an interpolated character n-gram model's validation bpc.

  python benchmarks/ngram.py                        # built-in corpus, 5-gram, both
  python benchmarks/ngram.py --path=my_corpus.txt --order=5 --method=witten_bell

Same corpus, vocabulary and split as the char-LM (`lstm_jax.data.text`):
trained on the first `1 - valid_fraction` of the characters, scored on every
character of the last `valid_fraction`, each predicted from the `order - 1`
characters before it in the corpus.

Two smoothings (Chen & Goodman 1998), both interpolated down to P_0, uniform
over the vocabulary. Witten-Bell (section 2.4; docs/tasks.md's 1.905 on the
built-in corpus), with raw counts c at every order:

  P_k(w | h) = (c(hw) + N1+(h .) * P_{k-1}(w | h')) / (c(h) + N1+(h .)).

Interpolated Kneser-Ney (eq. 9-10, one discount per order; the stronger of
the two, 1.786 on the built-in corpus):

  P_k(w | h) = max(c_k(hw) - D_k, 0) / c_k(h)
               + D_k * N1+(h .) / c_k(h) * P_{k-1}(w | h'),

where c_k is the raw count at the highest order and the continuation count
N1+(. hw) (distinct left neighbours) below it, h' is h without its first
character, N1+(h .) is the number of distinct characters seen after h,
D_k = n1 / (n1 + 2 n2) from the counts-of-counts of order k, an unseen context
(in either model: c(h) = 0) falls through to P_{k-1}.
Counting is vectorised: an n-gram is the integer sum of id * V^position.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def _keys(ids: np.ndarray, start: int, stop: int, k: int, v: int) -> np.ndarray:
  """<int64>[stop - start] key of the k-gram ending at each position in
  [start, stop) (its last character at that position); needs start >= k - 1."""
  key = np.zeros(stop - start, np.int64)
  for j in range(k):
    key = key * v + ids[start - k + 1 + j : stop - k + 1 + j]
  return key


def _lookup(sorted_keys: np.ndarray, values: np.ndarray, query: np.ndarray):
  """values[i] where sorted_keys[i] == query, else 0."""
  if len(sorted_keys) == 0:
    return np.zeros(len(query), values.dtype)
  i = np.minimum(np.searchsorted(sorted_keys, query), len(sorted_keys) - 1)
  return np.where(sorted_keys[i] == query, values[i], 0)


METHODS = ("witten_bell", "kneser_ney")


class NGram:
  """Interpolated n-gram model over integer ids in [0, vocab_size).

  Args:
    train: <int>[n] the training ids.
    order: n of the n-gram (1 = unigram with the uniform floor).
    vocab_size: V; P_0 = 1 / V.
    method: "witten_bell" or "kneser_ney" (module docstring).
  """

  def __init__(
    self, train: np.ndarray, order: int, vocab_size: int, method: str = "kneser_ney"
  ):
    if method not in METHODS:
      raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    self.method = method
    if order < 1:
      raise ValueError(f"order must be >= 1, got {order}")
    if vocab_size**order >= 2**62:
      raise ValueError(f"vocab_size**order = {vocab_size}**{order} overflows int64")
    self.order, self.v = order, vocab_size
    ids = np.asarray(train, np.int64)
    # tables[k]: the order-k counts (raw at the top order, continuation below):
    # (gram keys, counts, context keys, context totals, context N1+ followers).
    self.tables, self.discounts = {}, {}
    for k in range(order, 0, -1):
      if k == order or method == "witten_bell":
        grams, counts = np.unique(
          _keys(ids, k - 1, len(ids), k, self.v), return_counts=True
        )
      else:
        # Continuation count: distinct (k+1)-grams that end in this k-gram.
        upper = self.tables[k + 1][0]
        grams, counts = np.unique(upper % self.v**k, return_counts=True)
      n1, n2 = np.sum(counts == 1), np.sum(counts == 2)
      self.discounts[k] = n1 / (n1 + 2 * n2) if n1 + n2 else 0.5
      ctx, inverse = np.unique(grams // self.v, return_inverse=True)
      totals = np.bincount(inverse, weights=counts).astype(np.int64)
      followers = np.bincount(inverse).astype(np.int64)
      self.tables[k] = (grams, counts, ctx, totals, followers)

  def prob(self, ids: np.ndarray, start: int, stop: int) -> np.ndarray:
    """<float64>[stop - start] P(ids[i] | the order - 1 ids before i) for i in
    [start, stop); needs start >= order - 1."""
    p = np.full(stop - start, 1.0 / self.v)
    ids = np.asarray(ids, np.int64)
    for k in range(1, self.order + 1):
      grams, counts, ctx, totals, followers = self.tables[k]
      gram = _keys(ids, start, stop, k, self.v)
      c_hw = _lookup(grams, counts, gram)
      c_h = _lookup(ctx, totals, gram // self.v)
      n_h = _lookup(ctx, followers, gram // self.v)
      if self.method == "witten_bell":
        mixed = (c_hw + n_h * p) / np.maximum(c_h + n_h, 1)
      else:
        d = self.discounts[k]
        mixed = (np.maximum(c_hw - d, 0) + d * n_h * p) / np.maximum(c_h, 1)
      p = np.where(c_h > 0, mixed, p)
    return p


def validation_bpc(
  ids: np.ndarray, split: int, order: int, vocab_size: int, method: str
) -> float:
  """Bits per character of ids[split:] under a model of ids[:split]."""
  model = NGram(ids[:split], order, vocab_size, method)
  # Scored from the corpus's own context; the first `order - 1` characters of
  # the corpus (never validation for a sane split) have no full context.
  start = max(split, order - 1)
  return float(-np.mean(np.log2(model.prob(ids, start, len(ids)))))


def main() -> None:
  from lstm_jax.data import text  # repo root on sys.path

  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--path", default=None, help="UTF-8 text; default built-in")
  parser.add_argument("--order", type=int, default=5)
  parser.add_argument("--valid_fraction", type=float, default=0.1)
  parser.add_argument("--method", choices=METHODS, action="append")
  args = parser.parse_args()
  start = time.perf_counter()
  corpus = text.load_corpus(args.path)
  vocab = text.Vocab.build(corpus.text)
  ids = vocab.encode(corpus.text)
  # The char-LM's split (text.CharData): the last round(n * fraction) chars.
  split = len(ids) - int(round(len(ids) * args.valid_fraction))
  print(
    f"corpus {corpus.info['source']} sha256 {corpus.info['sha256']}: "
    f"{split} training, {len(ids) - split} validation characters, "
    f"vocabulary {len(vocab)}"
  )
  for method in args.method or METHODS:
    bpc = validation_bpc(ids, split, args.order, len(vocab), method)
    print(
      f"{args.order}-gram interpolated {method}: validation bpc {bpc:.4f} "
      f"({time.perf_counter() - start:.0f} s)"
    )


if __name__ == "__main__":
  main()
