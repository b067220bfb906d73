"""Character text: the corpus, its vocabulary, and batches as f(seed, step).

The default corpus is Python's `pydoc_data.topics` (the help texts of the
language reference): real English and code on every Python install. It changes
between Python versions, so `Corpus.info` records its sha256, its size and the
Python version; the trainer writes that to `<workdir>/data.json`.

Splits: validation is the LAST `valid_fraction` of the characters (no shuffle),
training is everything before it.

Batches are pure functions of (seed, step), so a run resumed at step k reads
exactly the batches an uninterrupted run reads:

* random windows (default): row b of step k is a window at an offset drawn
  from `np.random.default_rng([seed, k])`.
* stateful (`train.stateful`): the training text is cut into `batch_size`
  contiguous streams; step k reads window `k mod windows_per_epoch` of every
  stream, so the carry of row b at the end of step k is the right context for
  step k + 1.

`segment_ids` are document ids + 1 (0 = padding); the LSTM resets its carry
where they change. In stateful mode they also count the epoch, so the carry
resets when the streams wrap around.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
from collections.abc import Iterator
from typing import Any

import numpy as np

from lstm_jax.errors import DataError

Batch = dict[str, np.ndarray]
# Joins the pydoc topics; every topic is one document.
DOC_SEPARATOR = "\n\n"
DEFAULT_SOURCE = "pydoc_data.topics"


@dataclasses.dataclass(frozen=True)
class Corpus:
  """A text and the document each character belongs to.

  Attributes:
    text: the whole corpus.
    doc_ids: <int32>[len(text)] 0-based document index of every character (a
      separator belongs to the document before it).
    info: JSON-able identity: source, sha256 (of the UTF-8 bytes), chars,
      bytes, documents, python_version.
  """

  text: str
  doc_ids: np.ndarray
  info: dict[str, Any]


def _from_documents(docs: list[str], source: str) -> Corpus:
  text = DOC_SEPARATOR.join(docs)
  lengths = [len(d) + len(DOC_SEPARATOR) for d in docs]
  lengths[-1] -= len(DOC_SEPARATOR)
  doc_ids = np.repeat(np.arange(len(docs), dtype=np.int32), lengths)
  data = text.encode("utf-8")
  info = {
    "source": source,
    "sha256": hashlib.sha256(data).hexdigest(),
    "num_chars": len(text),
    "num_bytes": len(data),
    "num_documents": len(docs),
    "python_version": platform.python_version(),
  }
  return Corpus(text, doc_ids, info)


def load_corpus(path: str | None) -> Corpus:
  """Loads a UTF-8 text file (one document), or the default corpus if None.

  Raises:
    DataError: the file is missing, a directory, empty or not UTF-8.
  """
  if path is None:
    from pydoc_data import topics  # noqa: PLC0415  (stdlib, imported lazily)

    return _from_documents(
      [topics.topics[k] for k in sorted(topics.topics)], DEFAULT_SOURCE
    )
  if not os.path.exists(path):
    raise DataError(f"data file {path!r} does not exist (config data.path).")
  if os.path.isdir(path):
    raise DataError(f"data.path {path!r} is a directory; pass a text file.")
  with open(path, "rb") as f:
    data = f.read()
  if not data:
    raise DataError(f"data file {path!r} is empty; pass a file with text in it.")
  try:
    text = data.decode("utf-8")
  except UnicodeDecodeError as e:
    raise DataError(
      f"data file {path!r} is not UTF-8 text (byte {e.start}: "
      f"{data[e.start : e.start + 1]!r} cannot be decoded). Convert it first, "
      f"e.g. `iconv -f latin1 -t utf-8 {path} > converted.txt` (use its real "
      "encoding for latin1), or pass a UTF-8 file."
    ) from None
  text = text.removeprefix("\ufeff")  # a byte-order mark is not content
  corpus = _from_documents([text], os.path.abspath(path))
  return corpus


class Vocab:
  """Characters <-> ids; ids are the sorted order of the distinct characters."""

  def __init__(self, chars: list[str]):
    self.chars = list(chars)
    self._index = {c: i for i, c in enumerate(self.chars)}

  @classmethod
  def build(cls, text: str) -> Vocab:
    return cls(sorted(set(text)))

  def __len__(self) -> int:
    return len(self.chars)

  def missing(self, text: str) -> list[str]:
    """Characters of `text` that are not in the vocabulary, in order."""
    return sorted({c for c in text if c not in self._index})

  def encode(self, text: str) -> np.ndarray:
    """<int32>[len(text)]; raises KeyError on an unknown character."""
    return np.fromiter((self._index[c] for c in text), np.int32, len(text))

  def decode(self, ids) -> str:
    return "".join(self.chars[int(i)] for i in ids)

  def to_json(self) -> dict[str, Any]:
    return {"chars": self.chars}

  @classmethod
  def load(cls, path: str) -> Vocab:
    with open(path, encoding="utf-8") as f:
      return cls(json.load(f)["chars"])


class CharData:
  """Train and validation batches of a character corpus.

  Args:
    ids: <int32>[n] the encoded corpus.
    doc_ids: <int32>[n] document index per character.
    valid_fraction: the last this-fraction of characters is validation.
    seq_len, batch_size, eval_batch_size: window and batch sizes.
    seed: batch order seed.
    stateful: consecutive windows per row (see module docstring).
    source: named in errors.

  Raises:
    DataError: a split is shorter than one batch.
  """

  def __init__(
    self,
    ids: np.ndarray,
    doc_ids: np.ndarray,
    *,
    valid_fraction: float,
    seq_len: int,
    batch_size: int,
    eval_batch_size: int,
    seed: int,
    stateful: bool = False,
    source: str = "corpus",
  ):
    n = len(ids)
    n_valid = int(round(n * valid_fraction))
    self.split = n - n_valid
    self.ids, self.doc_ids = ids, doc_ids
    self.seq_len, self.batch_size, self.eval_batch_size = (
      seq_len,
      batch_size,
      eval_batch_size,
    )
    self.seed, self.stateful = seed, stateful
    need_train = batch_size * seq_len + 1
    need_valid = eval_batch_size * seq_len
    for name, got, need, sizes in (
      ("training", self.split, need_train, "data.batch_size * data.seq_len + 1"),
      ("validation", n_valid, need_valid, "data.eval_batch_size * data.seq_len"),
    ):
      if got < need:
        raise DataError(
          f"the {name} split of {source} has {got} characters, fewer than one "
          f"batch needs ({sizes} = {need}); the corpus has {n} characters and "
          f"data.valid_fraction = {valid_fraction}. Use a longer text or lower "
          "data.seq_len / data.batch_size / data.eval_batch_size."
        )
    # Stateful streams: row b reads ids[b * stream_len : (b + 1) * stream_len + 1].
    self.stream_len = (self.split - 1) // batch_size
    self.windows_per_epoch = self.stream_len // seq_len
    self.num_docs = int(doc_ids[-1]) + 1 if n else 0

  @property
  def valid_chars(self) -> int:
    """Number of validation characters (= predicted targets in one eval)."""
    return len(self.ids) - self.split

  def _rows(self, starts: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    idx = starts[:, None] + np.arange(length + 1)[None, :]
    return self.ids[idx], self.doc_ids[idx]

  def train_batch(self, step: int) -> Batch:
    """The training batch of `step`: a pure function of (seed, step).

    Returns:
      inputs, targets: <int32>[batch, seq_len], targets = inputs shifted by one.
      mask: <bool>[batch, seq_len], all true.
      segment_ids: <int32>[batch, seq_len], document id + 1 of each input
        (+ epoch * num_docs in stateful mode).
    """
    b, t = self.batch_size, self.seq_len
    if self.stateful:
      epoch, window = divmod(step, self.windows_per_epoch)
      starts = np.arange(b) * self.stream_len + window * t
      seg_offset = 1 + epoch * self.num_docs
    else:
      rng = np.random.default_rng([self.seed, step])
      starts = rng.integers(0, self.split - t, size=b)
      seg_offset = 1
    tokens, docs = self._rows(starts, t)
    return {
      "inputs": tokens[:, :-1],
      "targets": tokens[:, 1:],
      "mask": np.ones((b, t), bool),
      "segment_ids": (docs[:, :-1] + seg_offset).astype(np.int32),
    }

  def num_eval_batches(self) -> int:
    per_row = -(-self.valid_chars // self.eval_batch_size)
    return -(-per_row // self.seq_len)

  def eval_batches(self, max_batches: int | None = None) -> Iterator[Batch]:
    """Validation as `eval_batch_size` contiguous streams, window by window.

    Every validation character is a target exactly once (the first one is
    predicted from the last training character). Stream b holds targets
    `[b * L, (b + 1) * L)` of the split, L = ceil(valid / rows); the tail is
    padding (mask false, segment id 0). Batches come in stream order, so a
    carry passed from one batch to the next gives every character its full
    left context within the stream.
    """
    rows, t = self.eval_batch_size, self.seq_len
    per_row = -(-self.valid_chars // rows)
    windows = self.num_eval_batches()
    if max_batches is not None:
      windows = min(windows, max_batches)
    for w in range(windows):
      # Target positions (absolute) of this window, per row.
      pos = self.split + np.arange(rows)[:, None] * per_row + w * t + np.arange(t)
      real = (pos < len(self.ids)) & (
        pos < self.split + (np.arange(rows)[:, None] + 1) * per_row
      )
      pos = np.where(real, pos, self.split)
      yield {
        "inputs": self.ids[pos - 1],
        "targets": self.ids[pos],
        "mask": real,
        "segment_ids": np.where(real, self.doc_ids[pos - 1] + 1, 0).astype(np.int32),
      }
