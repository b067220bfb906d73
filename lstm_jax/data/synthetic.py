"""Generated long-range and seq2seq tasks: every batch is a pure f(seed, step).

Each generator draws from `np.random.default_rng([seed, step])` (a separate
stream per task via a tag), so a resumed run reads exactly the batches of an
uninterrupted one. The held-out seq2seq set comes from its own stream (a
different tag); short examples can still coincide with training ones by chance
(there are only 100 one-digit sums), the longer lengths cannot have been seen.
Batches are numpy dicts, batch-major.

* Adding problem (Hochreiter & Schmidhuber 1997, in the form of Le et al. 2015):
  two channels, values ~ U(0, 1) and a marker that is 1 at exactly two steps
  (one in each half); the target is the sum of the two marked values. Always
  predicting 1 has MSE = Var(U1 + U2) = 1/6 ~ 0.167.
* Copy memory (Arjovsky et al. 2016): 10 symbols from categories 1..8, then
  T - 1 blanks (0), a delimiter (9) and 10 more blanks; the output is blank
  for T + 10 steps and then the 10 symbols. Total length T + 20. The
  memoryless baseline (blank for T + 10 steps, then uniform over the 8
  categories) has cross-entropy 10 log 8 / (T + 20).
* Seq2seq: multi-digit addition ("123+45" -> "168"), the same with every
  number written least-significant digit first ("addition_lsb": "321+54" ->
  "861", as in Zaremba & Sutskever 2014: the carry then flows in the order the
  answer is emitted) or string reversal, with variable lengths; `seq2seq_heldout` draws lengths up to `max_len + extra`.
"""

from __future__ import annotations

import numpy as np

Batch = dict[str, np.ndarray]

# Distinct stream tags, so that (seed, step) of one task never replays another's.
_ADDING, _COPY, _SEQ2SEQ, _HELDOUT = 1, 2, 3, 4

COPY_LENGTH = 10
COPY_CATEGORIES = 8
COPY_BLANK = 0
COPY_DELIMITER = 9  # symbols are 1..8, so the vocabulary is 10

# Seq2seq vocabulary: PAD 0, BOS 1, EOS 2, then digits, '+', letters.
PAD, BOS, EOS = 0, 1, 2
SEQ2SEQ_CHARS = "0123456789+abcdefghijklmnopqrstuvwxyz"
SEQ2SEQ_VOCAB = 3 + len(SEQ2SEQ_CHARS)
SEQ2SEQ_TASKS = ("addition", "addition_lsb", "reversal")


def _rng(tag: int, seed: int, step: int) -> np.random.Generator:
  return np.random.default_rng([tag, seed, step])


def adding_batch(seed: int, step: int, batch_size: int, seq_len: int) -> Batch:
  """One batch of the adding problem.

  Returns:
    "inputs" <float32>[batch, seq_len, 2] (value, marker), "targets"
    <float32>[batch] (sum of the two marked values), "mask" <bool>[batch,
    seq_len] (all true).
  """
  if seq_len < 2:
    raise ValueError(f"seq_len must be >= 2 (one marker per half), got {seq_len}")
  rng = _rng(_ADDING, seed, step)
  values = rng.uniform(0.0, 1.0, (batch_size, seq_len)).astype(np.float32)
  half = seq_len // 2
  first = rng.integers(0, half, batch_size)
  second = rng.integers(half, seq_len, batch_size)
  marker = np.zeros((batch_size, seq_len), np.float32)
  rows = np.arange(batch_size)
  marker[rows, first] = 1.0
  marker[rows, second] = 1.0
  return {
    "inputs": np.stack([values, marker], axis=-1),
    "targets": values[rows, first] + values[rows, second],
    "mask": np.ones((batch_size, seq_len), bool),
  }


def copy_batch(seed: int, step: int, batch_size: int, delay: int) -> Batch:
  """One batch of the copy-memory task with `delay` = T blanks.

  Returns:
    "inputs" <int32>[batch, T + 20] symbols, "targets" <int32>[batch, T + 20],
    "mask" <bool>[batch, T + 20] (all true: every step is scored).
  """
  if delay < 1:
    raise ValueError(f"delay (T) must be >= 1, got {delay}")
  rng = _rng(_COPY, seed, step)
  n = COPY_LENGTH
  length = delay + 2 * n
  symbols = rng.integers(1, COPY_CATEGORIES + 1, (batch_size, n)).astype(np.int32)
  inputs = np.full((batch_size, length), COPY_BLANK, np.int32)
  inputs[:, :n] = symbols
  inputs[:, n + delay - 1] = COPY_DELIMITER
  targets = np.full((batch_size, length), COPY_BLANK, np.int32)
  targets[:, -n:] = symbols
  return {"inputs": inputs, "targets": targets, "mask": np.ones_like(inputs, bool)}


def copy_memoryless_ce(delay: int) -> float:
  """Cross-entropy per step of the memoryless baseline: 10 log 8 / (T + 20)."""
  return COPY_LENGTH * np.log(COPY_CATEGORIES) / (delay + 2 * COPY_LENGTH)


def encode(text: str) -> list[int]:
  """Characters of `SEQ2SEQ_CHARS` -> token ids (3 onwards)."""
  return [3 + SEQ2SEQ_CHARS.index(ch) for ch in text]


def decode(ids) -> str:
  """Token ids -> text, stopping at EOS and skipping PAD/BOS."""
  out = []
  for i in np.asarray(ids).tolist():
    if i == EOS:
      break
    if i >= 3:
      out.append(SEQ2SEQ_CHARS[i - 3])
  return "".join(out)


def _example(rng: np.random.Generator, task: str, length: int) -> tuple[str, str]:
  """A (source, target) pair whose size parameter is `length`.

  addition: two numbers of 1..length digits each (at least one has `length`),
  no leading zeros (addition_lsb: each number's digits reversed); reversal: a lowercase string of exactly `length` letters.
  """
  if task.startswith("addition"):
    digits = [length, int(rng.integers(1, length + 1))]
    rng.shuffle(digits)
    a, b = (int(rng.integers(10 ** (d - 1) if d > 1 else 0, 10**d)) for d in digits)
    if task == "addition_lsb":
      return f"{str(a)[::-1]}+{str(b)[::-1]}", str(a + b)[::-1]
    return f"{a}+{b}", str(a + b)
  letters = rng.integers(0, 26, length)
  src = "".join(chr(ord("a") + int(c)) for c in letters)
  return src, src[::-1]


def max_lengths(task: str, max_len: int) -> tuple[int, int]:
  """Padded (source, target-with-EOS) lengths for size parameter `max_len`."""
  if task.startswith("addition"):
    return 2 * max_len + 1, max_len + 2
  return max_len, max_len + 1


def _pack(task: str, pairs: list[tuple[str, str]], max_len: int) -> Batch:
  src_len, tgt_len = max_lengths(task, max_len)
  n = len(pairs)
  src = np.full((n, src_len), PAD, np.int32)
  dec_in = np.full((n, tgt_len), PAD, np.int32)
  tgt = np.full((n, tgt_len), PAD, np.int32)
  for i, (s, t) in enumerate(pairs):
    s_ids, t_ids = encode(s), encode(t) + [EOS]
    src[i, : len(s_ids)] = s_ids
    tgt[i, : len(t_ids)] = t_ids
    dec_in[i, : len(t_ids)] = [BOS] + t_ids[:-1]
  return {
    "inputs": src,
    "inputs_mask": src != PAD,
    "decoder_inputs": dec_in,
    "targets": tgt,
    "mask": tgt != PAD,
  }


def seq2seq_batch(
  seed: int, step: int, batch_size: int, task: str, min_len: int, max_len: int
) -> Batch:
  """A training batch: size parameters uniform in [min_len, max_len].

  Returns:
    "inputs" <int32>[batch, S] source ids (PAD right), "inputs_mask"
    <bool>[batch, S], "decoder_inputs" <int32>[batch, U] (BOS + target
    shifted right, for teacher forcing), "targets" <int32>[batch, U] (target
    + EOS), "mask" <bool>[batch, U]. S, U from `max_lengths(task, max_len)`.
  """
  if task not in SEQ2SEQ_TASKS:
    raise ValueError(f"task must be one of {SEQ2SEQ_TASKS}, got {task!r}")
  if not 1 <= min_len <= max_len:
    raise ValueError(f"need 1 <= min_len <= max_len, got {min_len}, {max_len}")
  rng = _rng(_SEQ2SEQ, seed, step)
  lengths = rng.integers(min_len, max_len + 1, batch_size)
  pairs = [_example(rng, task, int(n)) for n in lengths]
  return _pack(task, pairs, max_len)


def seq2seq_heldout(
  seed: int, size: int, task: str, min_len: int, max_len: int, extra: int = 2
) -> Batch:
  """Held-out examples, `size` per length in [min_len, max_len + extra].

  Drawn from a stream no training step uses; lengths above `max_len` were never
  seen in training (the generalisation test). Adds "length" <int32>[N].
  Padded to `max_len + extra`.
  """
  rng = _rng(_HELDOUT, seed, 0)
  lengths = np.repeat(np.arange(min_len, max_len + extra + 1), size)
  pairs = [_example(rng, task, int(n)) for n in lengths]
  batch = _pack(task, pairs, max_len + extra)
  batch["length"] = lengths.astype(np.int32)
  return batch
