"""Word-level text: tokens, a vocabulary from the training split, and batches.

The corpus is `text.load_corpus(path)` (the default is Python's
`pydoc_data.topics`, every topic a document; any UTF-8 file otherwise). Each
line becomes its tokens followed by `<eos>`, as in the Penn Treebank files:

* "regex" (default, for raw text): lowercased (`lowercase`), a token is a run
  of word characters (`\\w+`) or a run of other non-space characters
  (`"--"`, `"()"`); empty lines are skipped.
* "whitespace" (for pre-tokenised files such as PTB or WikiText): the line's
  whitespace-separated tokens, case kept unless `lowercase`; every line,
  empty ones included, ends in `<eos>` (the AWD-LSTM code's convention, so
  token counts match its published perplexities).

Splits are contiguous, in token order: training, then validation (the next
`valid_fraction` of the tokens), then test (the last `test_fraction`). The
vocabulary is built from the training tokens only: words seen at least
`min_count` times, at most `max_vocab` of them (0 = no cap; `<unk>` and
`<eos>` count towards it), every other word maps to `<unk>`. Ids are in
descending training frequency (ties: alphabetical), which the adaptive
softmax's frequency clusters rely on; ids are stored in the smallest unsigned
dtype that holds the vocabulary.

Batches are pure functions of (seed, step), as in `text.CharData`: stateful
training reads `batch_size` contiguous streams window by window (the carry
passes from step to step and resets when the streams wrap around), random
windows otherwise; validation and test are read as contiguous streams with
the carry passed along, so every token is predicted from its full left
context. `segment_ids` decide where the carry resets: never (by default:
the text is one stream, sentence and document boundaries included), at each
document or at each line (`reset`).
"""

from __future__ import annotations

import collections
import dataclasses
import re
from collections.abc import Iterator
from typing import Any

import numpy as np

from lstm_jax.data import text
from lstm_jax.errors import DataError

Batch = dict[str, np.ndarray]
UNK, EOS = "<unk>", "<eos>"
TOKENIZERS = ("regex", "whitespace")
RESETS = ("never", "document", "line")
_TOKEN = re.compile(r"\w+|[^\w\s]+")


def tokenize_line(line: str, tokenizer: str, lowercase: bool) -> list[str]:
  """The tokens of one line (without `<eos>`)."""
  if lowercase:
    line = line.lower()
  if tokenizer == "whitespace":
    return line.split()
  return _TOKEN.findall(line)


@dataclasses.dataclass(frozen=True)
class WordCorpus:
  """A tokenised corpus.

  Attributes:
    ids: <uint16|int32>[num_tokens] word ids (see module docstring).
    words: the vocabulary, id -> word.
    counts: <int64>[vocab] training-split count of every id.
    doc_ids, line_ids: <int32>[num_tokens] document / line index of every
      token (an `<eos>` belongs to its line).
    bounds: (train_end, valid_end): tokens [0, train_end) train, then
      validation up to valid_end, then test.
    info: JSON-able identity (the corpus's `text` info plus token counts,
      vocabulary size and the tokenisation settings).
  """

  ids: np.ndarray
  words: list[str]
  counts: np.ndarray
  doc_ids: np.ndarray
  line_ids: np.ndarray
  bounds: tuple[int, int]
  info: dict[str, Any]

  def unk_rate(self, start: int, stop: int) -> float:
    """Fraction of tokens [start, stop) that are `<unk>`."""
    return float(np.mean(self.ids[start:stop] == self.words.index(UNK)))


def _smallest_uint(n: int) -> type:
  return np.uint16 if n <= 1 << 16 else np.int32


def build(
  corpus: text.Corpus,
  *,
  tokenizer: str = "regex",
  lowercase: bool = True,
  valid_fraction: float = 0.1,
  test_fraction: float = 0.1,
  min_count: int = 1,
  max_vocab: int = 0,
) -> WordCorpus:
  """Tokenises `corpus`, splits it and builds the training vocabulary.

  Memory: one pass over the lines interns every distinct word once and keeps
  an int32 id per token; the final ids are a remapping of those.

  Raises:
    DataError: a split gets no tokens.
  """
  interned: dict[str, int] = {EOS: 0, UNK: 1}
  raw, docs, lines = [], [], []
  doc_starts = np.cumsum([0] + _doc_lengths(corpus))
  offset, line_no = 0, 0
  lines_of_text = corpus.text.split("\n")
  if lines_of_text[-1] == "":  # a final newline ends the last line
    lines_of_text.pop()
  for line in lines_of_text:
    doc = int(np.searchsorted(doc_starts, offset, side="right")) - 1
    offset += len(line) + 1
    tokens = tokenize_line(line, tokenizer, lowercase)
    if not tokens and tokenizer == "regex":
      continue
    row = [interned.setdefault(w, len(interned)) for w in tokens] + [0]
    raw.append(np.asarray(row, np.int32))
    docs.append(np.full(len(row), doc, np.int32))
    lines.append(np.full(len(row), line_no, np.int32))
    line_no += 1
  if not raw:
    raise DataError(f"{corpus.info['source']} has no tokens.")
  raw_ids = np.concatenate(raw)
  n = len(raw_ids)
  n_test = int(round(n * test_fraction))
  n_valid = int(round(n * valid_fraction))
  train_end, valid_end = n - n_valid - n_test, n - n_test
  for name, size in (
    ("training", train_end),
    ("validation", n_valid),
    ("test", n_test),
  ):
    if size < 1:
      raise DataError(
        f"the {name} split of {corpus.info['source']} is empty: {n} tokens, "
        f"data.valid_fraction={valid_fraction}, data.test_fraction={test_fraction}"
      )
  names = sorted(interned, key=interned.get)
  train_counts = np.bincount(raw_ids[:train_end], minlength=len(names))
  specials = {interned[EOS], interned[UNK]}
  keep = [
    i
    for i in np.argsort(-train_counts, kind="stable").tolist()
    if i not in specials and train_counts[i] >= min_count
  ]
  if max_vocab:
    keep = keep[: max_vocab - 2]
  # <unk> counts its own occurrences plus those of every dropped word, and
  # ids follow these final counts (ties: alphabetical).
  final = np.zeros(len(names), np.int64)
  final[keep] = train_counts[keep]
  final[interned[EOS]] = train_counts[interned[EOS]]
  final[interned[UNK]] = train_counts[interned[UNK]] + (
    train_end - final.sum() - train_counts[interned[UNK]]
  )
  keep = sorted(keep + sorted(specials), key=lambda i: (-final[i], names[i]))
  table = np.full(len(names), -1, np.int64)
  table[keep] = np.arange(len(keep))
  table[table < 0] = table[interned[UNK]]
  ids = table[raw_ids].astype(_smallest_uint(len(keep)))
  counts = final[keep]
  words = [names[i] for i in keep]
  info = {
    **corpus.info,
    "tokenizer": tokenizer,
    "lowercase": lowercase,
    "min_count": min_count,
    "max_vocab": max_vocab,
    "vocab_size": len(words),
    "train_tokens": train_end,
    "valid_tokens": valid_end - train_end,
    "test_tokens": n - valid_end,
  }
  return WordCorpus(
    ids,
    words,
    counts,
    np.concatenate(docs),
    np.concatenate(lines),
    (train_end, valid_end),
    info,
  )


def _doc_lengths(corpus: text.Corpus) -> list[int]:
  """Characters per document (from the corpus's per-character doc ids)."""
  return np.bincount(np.asarray(corpus.doc_ids, np.int64)).tolist()


def word_counts(corpus: WordCorpus) -> collections.Counter:
  """{word: training count} (for reports and tests)."""
  return collections.Counter(dict(zip(corpus.words, corpus.counts.tolist())))


class WordData:
  """Training, validation and test batches of a `WordCorpus`.

  Args:
    corpus: the tokenised corpus.
    seq_len, batch_size, eval_batch_size: window and batch sizes.
    seed: batch order seed (random windows).
    stateful: consecutive windows per row (module docstring).
    reset: "never", "document" or "line": where the carry resets.

  Raises:
    DataError: a split is shorter than one batch needs.
  """

  def __init__(
    self,
    corpus: WordCorpus,
    *,
    seq_len: int,
    batch_size: int,
    eval_batch_size: int,
    seed: int,
    stateful: bool = True,
    reset: str = "never",
  ):
    self.ids = corpus.ids
    self.train_end, self.valid_end = corpus.bounds
    if reset == "document":
      self.segments = corpus.doc_ids
    elif reset == "line":
      self.segments = corpus.line_ids
    else:
      self.segments = np.broadcast_to(np.zeros(1, np.int32), self.ids.shape)
    self.num_segments = int(self.segments[-1]) + 1
    self.seq_len, self.batch_size = seq_len, batch_size
    self.eval_batch_size, self.seed, self.stateful = eval_batch_size, seed, stateful
    source = corpus.info["source"]
    need = batch_size * seq_len + 1
    if self.train_end < need:
      raise DataError(
        f"the training split of {source} has {self.train_end} tokens, fewer "
        f"than one batch needs (data.batch_size * data.seq_len + 1 = {need}). "
        "Use a longer text or lower data.seq_len / data.batch_size."
      )
    for name, got in (
      ("validation", self.valid_end - self.train_end),
      ("test", len(self.ids) - self.valid_end),
    ):
      if got < eval_batch_size:
        raise DataError(
          f"the {name} split of {source} has {got} tokens, fewer than "
          f"data.eval_batch_size = {eval_batch_size} streams."
        )
    self.stream_len = (self.train_end - 1) // batch_size
    self.windows_per_epoch = self.stream_len // seq_len

  def train_batch(self, step: int) -> Batch:
    """The training batch of `step`, a pure function of (seed, step).

    Returns:
      inputs, targets: <int32>[batch, seq_len], targets = inputs shifted by one.
      mask: <bool>[batch, seq_len], all true.
      segment_ids: <int32>[batch, seq_len], segment + 1 of each input (+ epoch
        * segments in stateful mode, so the carry resets when streams wrap).
    """
    b, t = self.batch_size, self.seq_len
    if self.stateful:
      epoch, window = divmod(step, self.windows_per_epoch)
      starts = np.arange(b) * self.stream_len + window * t
      offset = 1 + epoch * self.num_segments
    else:
      rng = np.random.default_rng([self.seed, step])
      starts = rng.integers(0, self.train_end - t, size=b)
      offset = 1
    idx = starts[:, None] + np.arange(t + 1)[None, :]
    tokens = self.ids[idx].astype(np.int32)
    return {
      "inputs": tokens[:, :-1],
      "targets": tokens[:, 1:],
      "mask": np.ones((b, t), bool),
      "segment_ids": (self.segments[idx[:, :-1]] + offset).astype(np.int32),
    }

  def split_range(self, split: str) -> tuple[int, int]:
    """[start, stop) token positions of "valid" or "test" targets."""
    if split == "valid":
      return self.train_end, self.valid_end
    if split == "test":
      return self.valid_end, len(self.ids)
    raise ValueError(f"split must be 'valid' or 'test', got {split!r}")

  def num_eval_batches(self, split: str = "valid") -> int:
    start, stop = self.split_range(split)
    per_row = -(-(stop - start) // self.eval_batch_size)
    return -(-per_row // self.seq_len)

  def eval_batches(self, split: str = "valid") -> Iterator[Batch]:
    """The split as `eval_batch_size` contiguous streams, window by window.

    Every target of [start, stop) is predicted exactly once; the first from
    the token before the split. Stream b holds targets `[start + b * L,
    start + (b + 1) * L)`, L = ceil(tokens / rows); the tail is padding (mask
    false, segment 0). Passing the carry from one batch to the next gives
    every token its full left context within its stream.
    """
    start, stop = self.split_range(split)
    rows, t = self.eval_batch_size, self.seq_len
    per_row = -(-(stop - start) // rows)
    row = np.arange(rows)[:, None]
    for w in range(self.num_eval_batches(split)):
      pos = start + row * per_row + w * t + np.arange(t)
      real = (pos < stop) & (pos < start + (row + 1) * per_row)
      pos = np.where(real, pos, start)
      yield {
        "inputs": self.ids[pos - 1].astype(np.int32),
        "targets": self.ids[pos].astype(np.int32),
        "mask": real,
        "segment_ids": np.where(real, self.segments[pos - 1] + 1, 0).astype(np.int32),
      }
