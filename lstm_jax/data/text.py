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
import functools
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
    data: the whole corpus as UTF-8 bytes (no byte-order mark).
    doc_ids: <uint8|uint16|int32>[num_chars] 0-based document index of every
      character (a separator belongs to the document before it); the smallest
      dtype that holds them, and for one document a zero-byte broadcast view.
    info: JSON-able identity: source, sha256 (of the UTF-8 bytes), chars,
      bytes, documents, python_version.
    text: the corpus as a str (decoded on first use: an ASCII corpus is
      encoded from its bytes without it).
  """

  data: bytes
  doc_ids: np.ndarray
  info: dict[str, Any]

  @functools.cached_property
  def text(self) -> str:
    return self.data.decode("utf-8")


def _smallest_uint(n: int) -> type:
  """The narrowest dtype that holds 0..n-1 (uint8, uint16, else int32)."""
  return np.uint8 if n <= 1 << 8 else np.uint16 if n <= 1 << 16 else np.int32


def _doc_ids(lengths: list[int]) -> np.ndarray:
  dtype = _smallest_uint(len(lengths))
  if len(lengths) == 1:  # one document: all zeros, and no memory for them
    return np.broadcast_to(np.zeros(1, dtype), (lengths[0],))
  return np.repeat(np.arange(len(lengths), dtype=dtype), lengths)


def _corpus(data: bytes, num_chars: int, lengths: list[int], source: str) -> Corpus:
  info = {
    "source": source,
    "sha256": hashlib.sha256(data).hexdigest(),
    "num_chars": num_chars,
    "num_bytes": len(data),
    "num_documents": len(lengths),
    "python_version": platform.python_version(),
  }
  return Corpus(data, _doc_ids(lengths), info)


def _from_documents(docs: list[str], source: str) -> Corpus:
  text = DOC_SEPARATOR.join(docs)
  lengths = [len(d) + len(DOC_SEPARATOR) for d in docs]
  lengths[-1] -= len(DOC_SEPARATOR)
  corpus = _corpus(text.encode("utf-8"), len(text), lengths, source)
  corpus.__dict__["text"] = text  # already decoded (see Corpus.text)
  return corpus


def load_corpus(path: str | None) -> Corpus:
  """Loads a UTF-8 text file (one document), or the default corpus if None.

  Memory: the file's bytes are kept once; an ASCII file is never decoded to
  a str (see `encode_corpus`).

  Raises:
    DataError: the file is missing, a directory, empty or not UTF-8.
  """
  if path is None:
    from pydoc_data import topics  # stdlib, imported lazily

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
  if data.startswith(b"\xef\xbb\xbf"):  # a byte-order mark is not content
    data = data[3:]
  if data.isascii():
    return _corpus(data, len(data), [len(data)], os.path.abspath(path))
  try:
    text = data.decode("utf-8")
  except UnicodeDecodeError as e:
    raise DataError(
      f"data file {path!r} is not UTF-8 text (byte {e.start}: "
      f"{data[e.start : e.start + 1]!r} cannot be decoded). Convert it first, "
      f"e.g. `iconv -f latin1 -t utf-8 {path} > converted.txt` (use its real "
      "encoding for latin1), or pass a UTF-8 file."
    ) from None
  corpus = _corpus(data, len(text), [len(text)], os.path.abspath(path))
  corpus.__dict__["text"] = text
  return corpus


# Elements per chunk when encoding: numpy widens uint8 indices to intp (8
# bytes) in bincount and fancy indexing, so whole-corpus calls would cost 8x
# the corpus in temporaries; 4M-element chunks cost 32 MB.
_CHUNK = 1 << 22


def encode_corpus(corpus: Corpus) -> tuple[Vocab, np.ndarray]:
  """The corpus's vocabulary (its sorted distinct characters) and its ids.

  Returns:
    (vocab, ids): ids <uint8|uint16|int32>[num_chars], the smallest dtype
    that holds the vocabulary (one byte a character up to 256 distinct
    characters). Same ids as `Vocab.build(text).encode(text)`.
  """
  data = corpus.data
  if data.isascii():  # bytes are characters: count and map them in numpy
    codes = np.frombuffer(data, np.uint8)
    counts = np.zeros(128, np.int64)
    for i in range(0, len(codes), _CHUNK):
      counts += np.bincount(codes[i : i + _CHUNK], minlength=128)
    present = np.flatnonzero(counts)
    table = np.zeros(256, np.uint8)
    table[present] = np.arange(len(present))
    ids = np.empty(len(codes), np.uint8)
    for i in range(0, len(codes), _CHUNK):
      ids[i : i + _CHUNK] = table[codes[i : i + _CHUNK]]
    return Vocab([chr(c) for c in present]), ids
  text = corpus.text
  vocab = Vocab.build(text)
  points = np.array([ord(c) for c in vocab.chars])
  ids = np.empty(len(text), _smallest_uint(len(vocab)))
  step = _CHUNK // 4
  for i in range(0, len(text), step):
    chunk = np.frombuffer(text[i : i + step].encode("utf-32-le"), np.uint32)
    ids[i : i + step] = np.searchsorted(points, chunk)
  return vocab, ids


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
    ids: <int>[n] the encoded corpus (any integer dtype; batches are int32).
    doc_ids: <int>[n] document index per character (any integer dtype).
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
    return self.ids[idx].astype(np.int32), self.doc_ids[idx].astype(np.int32)

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
        "inputs": self.ids[pos - 1].astype(np.int32),
        "targets": self.ids[pos].astype(np.int32),
        "mask": real,
        "segment_ids": np.where(
          real, self.doc_ids[pos - 1].astype(np.int32) + 1, 0
        ).astype(np.int32),
      }
