"""data/text.py: corpus loading, errors, splits and (seed, step) batches."""

import hashlib
import platform

import numpy as np
import pytest

from lstm_jax.data import text
from lstm_jax.errors import DataError


def _data(corpus, **kw):
  vocab = text.Vocab.build(corpus.text)
  args = dict(valid_fraction=0.1, seq_len=16, batch_size=4, eval_batch_size=3, seed=0)
  args["source"] = corpus.info["source"]
  args.update(kw)
  return vocab, text.CharData(vocab.encode(corpus.text), corpus.doc_ids, **args)


@pytest.fixture(scope="module")
def default_corpus():
  return text.load_corpus(None)


def test_default_corpus_identity(default_corpus):
  c = default_corpus
  data = c.text.encode("utf-8")
  assert c.info["sha256"] == hashlib.sha256(data).hexdigest()
  assert c.info["num_chars"] == len(c.text) > 100_000
  assert c.info["num_bytes"] == len(data)
  assert c.info["python_version"] == platform.python_version()
  assert c.info["source"] == "pydoc_data.topics"
  assert len(c.doc_ids) == len(c.text)
  assert c.doc_ids[0] == 0 and c.doc_ids[-1] == c.info["num_documents"] - 1
  assert np.all(np.diff(c.doc_ids) >= 0)


def test_vocab_sorted_round_trip(tmp_path):
  vocab = text.Vocab.build("hello world")
  assert vocab.chars == sorted(set("hello world"))
  assert vocab.decode(vocab.encode("low")) == "low"
  assert vocab.missing("hex!") == ["!", "x"]
  path = tmp_path / "vocab.json"
  path.write_text(__import__("json").dumps(vocab.to_json()))
  assert text.Vocab.load(str(path)).chars == vocab.chars


def test_batches_are_a_function_of_seed_and_step(default_corpus):
  _, a = _data(default_corpus, seed=3)
  _, b = _data(default_corpus, seed=3)
  _, c = _data(default_corpus, seed=4)
  for step in (0, 7, 12345):
    for k, v in a.train_batch(step).items():
      np.testing.assert_array_equal(v, b.train_batch(step)[k])
  assert not np.array_equal(a.train_batch(0)["inputs"], a.train_batch(1)["inputs"])
  assert not np.array_equal(a.train_batch(0)["inputs"], c.train_batch(0)["inputs"])


@pytest.mark.parametrize("stateful", [False, True])
def test_targets_are_inputs_shifted_by_one(default_corpus, stateful):
  vocab, data = _data(default_corpus, stateful=stateful)
  batch = data.train_batch(5)
  assert batch["inputs"].dtype == np.int32 and batch["inputs"].shape == (4, 16)
  assert batch["mask"].dtype == bool and batch["mask"].all()
  np.testing.assert_array_equal(batch["targets"][:, :-1], batch["inputs"][:, 1:])
  for row_in, row_t in zip(batch["inputs"], batch["targets"]):
    window = vocab.decode(row_in) + vocab.decode(row_t[-1:])
    assert window in default_corpus.text[: data.split]


def test_stateful_rows_are_contiguous_streams(default_corpus):
  _, data = _data(default_corpus, stateful=True)
  k0, k1 = data.train_batch(10), data.train_batch(11)
  # Row b of step k + 1 continues exactly where row b of step k ended.
  np.testing.assert_array_equal(k1["inputs"][:, 0], k0["targets"][:, -1])
  starts = np.arange(4) * data.stream_len + 10 * 16
  np.testing.assert_array_equal(k0["inputs"][:, 0], data.ids[starts])
  # Wrapping around to the next epoch changes every segment id (carry reset).
  last = data.train_batch(data.windows_per_epoch - 1)
  first = data.train_batch(data.windows_per_epoch)
  np.testing.assert_array_equal(first["inputs"], data.train_batch(0)["inputs"])
  assert np.all(first["segment_ids"][:, 0] != last["segment_ids"][:, -1])


def test_segment_ids_follow_documents(default_corpus):
  _, data = _data(default_corpus, seq_len=64)
  batch = data.train_batch(0)
  rows = np.random.default_rng([0, 0]).integers(0, data.split - 64, size=4)
  expected = default_corpus.doc_ids[rows[:, None] + np.arange(64)] + 1
  np.testing.assert_array_equal(batch["segment_ids"], expected)


def test_validation_is_the_last_fraction_and_eval_covers_it_once(default_corpus):
  _, data = _data(default_corpus, eval_batch_size=7, seq_len=50)
  n = len(default_corpus.text)
  assert data.split == n - round(0.1 * n)
  batches = list(data.eval_batches())
  assert len(batches) == data.num_eval_batches()
  targets = np.concatenate([b["targets"] for b in batches], axis=1)  # [rows, time]
  inputs = np.concatenate([b["inputs"] for b in batches], axis=1)
  mask = np.concatenate([b["mask"] for b in batches], axis=1)
  seg = np.concatenate([b["segment_ids"] for b in batches], axis=1)
  # Row-major over streams, real positions only: every validation char once.
  np.testing.assert_array_equal(targets[mask], data.ids[data.split :])
  np.testing.assert_array_equal(inputs[mask], data.ids[data.split - 1 : -1])
  assert mask.sum() == data.valid_chars
  assert np.all(seg[~mask] == 0) and np.all(seg[mask] > 0)
  assert len(list(data.eval_batches(max_batches=2))) == 2


def test_missing_file(tmp_path):
  path = tmp_path / "nope.txt"
  with pytest.raises(DataError, match="nope.txt.*does not exist"):
    text.load_corpus(str(path))


def test_directory(tmp_path):
  with pytest.raises(DataError, match="directory"):
    text.load_corpus(str(tmp_path))


def test_empty_file(tmp_path):
  path = tmp_path / "empty.txt"
  path.write_bytes(b"")
  with pytest.raises(DataError, match="empty.txt.*is empty"):
    text.load_corpus(str(path))


def test_not_utf8_says_what_to_do(tmp_path):
  path = tmp_path / "latin.txt"
  path.write_bytes("caf\u00e9 cr\u00e8me".encode("latin-1"))
  with pytest.raises(DataError, match="latin.txt.*not UTF-8") as e:
    text.load_corpus(str(path))
  assert "iconv -f" in str(e.value) and "-t utf-8" in str(e.value)


def test_utf8_file_and_bom(tmp_path):
  path = tmp_path / "ok.txt"
  path.write_bytes("\ufeffh\u00e9llo".encode())
  corpus = text.load_corpus(str(path))
  assert corpus.text == "h\u00e9llo"
  assert corpus.info["num_documents"] == 1 and corpus.info["source"] == str(path)


@pytest.mark.parametrize(("length", "split"), [(100, "training"), (2000, "validation")])
def test_corpus_shorter_than_a_batch(tmp_path, length, split):
  path = tmp_path / "short.txt"
  path.write_text("ab" * (length // 2))
  corpus = text.load_corpus(str(path))
  with pytest.raises(DataError, match=f"{split} split of .*short.txt") as e:
    _data(corpus, batch_size=8, eval_batch_size=16, seq_len=16)
  need = 8 * 16 + 1 if split == "training" else 16 * 16
  assert f"= {need})" in str(e.value)
