"""The word-LM task: its data against plain Python, its loss against numpy,
the carry across windows against one long window, and the tiny CLI run's
test record recomputed independently (its SIGKILL/resume check is
tasks_test.py's, which runs every task of task_runs.TASKS)."""

from __future__ import annotations

import collections
import math
import re

import jax
import numpy as np
import pytest

from experiments import wordlm as experiment
from lstm_jax.baselines.kneser_ney import KneserNey
from lstm_jax.data import text, words
from lstm_jax.errors import ConfigError, DataError
from lstm_jax.models.wordlm import full_loss
from lstm_jax.runs import reader
from lstm_jax.tasks import wordlm as task
from tests.support import task_runs

TEXT = (
  "The cat sat on the mat.\n\nThe dog sat on the log!\nA cat, a dog.\n"
  "the end of the Cat story\nnew words appear here only\n"
)


def _corpus(tmp_path, body=TEXT, **kw):
  path = tmp_path / "corpus.txt"
  path.write_text(body)
  return words.build(text.load_corpus(str(path)), **kw)


def test_vocabulary_and_ids_match_plain_python(tmp_path):
  c = _corpus(tmp_path, valid_fraction=0.2, test_fraction=0.2, min_count=2)
  # The same, written directly: tokens per non-empty line, then <eos>.
  tokens = []
  for line in TEXT.lower().split("\n"):
    found = re.findall(r"\w+|[^\w\s]+", line)
    if found:
      tokens += found + ["<eos>"]
  n = len(tokens)
  n_test, n_valid = round(n * 0.2), round(n * 0.2)
  train = tokens[: n - n_valid - n_test]
  counts = collections.Counter(train)
  kept = {w for w, k in counts.items() if k >= 2} | {"<unk>", "<eos>"}
  want = [w if w in kept else "<unk>" for w in tokens]
  # Ids by descending count after the mapping (<unk> counts the dropped words).
  final = collections.Counter(want[: len(train)])
  kept = sorted(kept, key=lambda w: (-final[w], w))
  assert c.words == kept
  assert [c.words[i] for i in c.ids] == want
  assert c.bounds == (n - n_valid - n_test, n - n_test)
  assert c.counts.tolist() == [
    collections.Counter(want[: c.bounds[0]])[w] for w in kept
  ]
  assert c.ids.dtype == np.uint16


def test_whitespace_tokenizer_keeps_empty_lines_and_case(tmp_path):
  c = _corpus(tmp_path, "a B\n\nb a\n", tokenizer="whitespace", lowercase=False)
  assert [c.words[i] for i in c.ids] == ["a", "B", "<eos>", "<eos>", "b", "a", "<eos>"]


def test_max_vocab_keeps_the_most_frequent(tmp_path):
  c = _corpus(tmp_path, max_vocab=5, valid_fraction=0.1, test_fraction=0.1)
  tokens = [w for i in c.ids[: c.bounds[0]] for w in [c.words[i]]]
  raw = collections.Counter(
    w for line in TEXT.lower().split("\n") for w in re.findall(r"\w+|[^\w\s]+", line)
  )
  top3 = sorted((w for w in raw if w in tokens), key=lambda w: (-raw[w], w))[:3]
  assert set(c.words) == {"<unk>", "<eos>", *top3}
  # Ids in descending training count, <unk> counting every dropped word.
  assert c.counts.tolist() == sorted(c.counts.tolist(), reverse=True)
  assert c.counts.tolist() == [tokens.count(w) for w in c.words]


def test_batches_cover_each_eval_token_once_and_stream_in_training(tmp_path):
  c = words.build(text.load_corpus(None), min_count=2)
  data = words.WordData(c, seq_len=7, batch_size=3, eval_batch_size=5, seed=0)
  for split in ("valid", "test"):
    start, stop = data.split_range(split)
    streams = [[] for _ in range(5)]
    for b in data.eval_batches(split):
      for row in range(5):
        real = b["mask"][row]
        assert np.array_equal(b["inputs"][row][real][1:], b["targets"][row][real][:-1])
        streams[row].append(b["targets"][row][real])
    # Row-major, the streams' targets are the split's tokens, each once.
    got = np.concatenate([np.concatenate(s) for s in streams])
    assert np.array_equal(got, c.ids[start:stop])
  # Stateful: row b of step k + 1 continues row b of step k.
  b0, b1 = data.train_batch(0), data.train_batch(1)
  assert np.array_equal(b0["targets"][:, -1], b1["inputs"][:, 0])
  assert np.array_equal(b0["inputs"][:, 1:], b0["targets"][:, :-1])


def test_full_loss_matches_numpy():
  rng = np.random.default_rng(0)
  h = rng.normal(size=(2, 5, 4)).astype(np.float32)
  w = rng.normal(size=(11, 4)).astype(np.float32)
  bias = rng.normal(size=11).astype(np.float32)
  targets = rng.integers(0, 11, size=(2, 5)).astype(np.int32)
  mask = rng.random((2, 5)) < 0.7
  nll = np.asarray(full_loss(h, targets, mask, weights=w, bias=bias))
  logits = h.astype(np.float64) @ w.T + bias
  logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  want = -np.take_along_axis(logp, targets[..., None], -1)[..., 0]
  # float32 loss vs float64 numpy log-softmax: float32 rounding of an 11-term log-sum-exp
  np.testing.assert_allclose(nll, np.where(mask, want, 0.0), rtol=1e-5, atol=1e-6)


def test_carry_across_windows_equals_one_long_window():
  config = experiment.get_config("tiny")
  model = task.make_model(config, {"vocab_size": 50})
  ids = np.random.default_rng(1).integers(0, 50, size=(3, 25)).astype(np.int32)
  ones = np.ones((3, 24), np.int32)
  whole = {"inputs": ids[:, :-1], "targets": ids[:, 1:], "segment_ids": ones}
  params = model.init(jax.random.key(0), whole)["params"]
  apply = jax.jit(model.apply, static_argnames="method")
  want, _ = apply({"params": params}, whole, method=model.log_probs)
  carry, parts = None, []
  for lo in (0, 8, 16):  # three windows of 8 steps (one compilation)
    window = {k: v[:, lo : lo + 8] for k, v in whole.items()}
    if carry is None:
      carry = model.initialize_carry(3)
    out, carry = apply({"params": params}, window, carry, method=model.log_probs)
    parts.append(out)
  # carried windows vs one long window: the same float32 recurrence in other compiled programs, summation order only
  np.testing.assert_allclose(np.concatenate(parts, 1), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
  ("key", "value", "match"),
  [
    ("data.tokenizer", "spaces", "data.tokenizer must be one of"),
    ("data.reset", "sometimes", "data.reset must be one of"),
    ("model.softmax", "hierarchical", "model.softmax must be one of"),
    ("data.test_fraction", 0.95, "data.valid_fraction \\+ data.test_fraction"),
    ("data.min_count", 0, "data.min_count must be >= 1"),
    ("baseline.order", -1, "baseline.order must be >= 0"),
  ],
)
def test_bad_keys_are_named(key, value, match):
  config = experiment.get_config("tiny")
  section, name = key.split(".")
  config[section][name] = value
  with pytest.raises(ConfigError, match=match):
    task.validate(config)


def test_corpus_too_short_names_the_split(tmp_path):
  config = experiment.get_config("tiny")
  path = tmp_path / "short.txt"
  path.write_text("only a few words here\n" * 20)
  config.data.path = str(path)
  with pytest.raises(DataError, match="training split .* fewer than one batch"):
    task.make_datasets(config)


# Plain AdamW, and schedule-free AdamW, whose test record and reader both
# use the averaged parameters (optim.eval_params).
SCHEDULE_FREE = (
  "--config.optim.schedule_free=True",
  "--config.optim.schedule=constant",
)


@pytest.fixture(scope="module", params=[(), SCHEDULE_FREE], ids=["adamw", "sf"])
def tiny_run(request, tmp_path_factory, env):
  workdir = tmp_path_factory.mktemp("wordlm") / "run"
  proc = task_runs.run("wordlm", workdir, env, *request.param)
  return workdir, proc


@pytest.mark.slow
def test_tiny_run_test_record_recomputed(tiny_run):
  """The test record's perplexity from numpy log-softmax over each test
  stream run in one piece, and its Kneser-Ney figure from a fresh model."""
  workdir, proc = tiny_run
  run = reader.open_run(str(workdir), which="best")
  test = task_runs.test_record(workdir)
  assert test["checkpoint_step"] == run.step
  config = run.config
  corpus = task.load(config)
  start, stop = corpus.bounds[1], len(corpus.ids)
  rows = config.data.eval_batch_size
  per_row = -(-(stop - start) // rows)
  nll = []
  apply = jax.jit(run.model.apply, static_argnames="method")
  for r in range(rows):
    lo, hi = start + r * per_row, min(start + (r + 1) * per_row, stop)
    batch = {"inputs": corpus.ids[None, lo - 1 : hi - 1].astype(np.int32)}
    batch["targets"] = corpus.ids[None, lo:hi].astype(np.int32)
    logp, _ = apply({"params": run.params}, batch, method=run.model.log_probs)
    logp = np.asarray(logp[0], np.float64)
    nll.append(-logp[np.arange(hi - lo), batch["targets"][0]])
  nll = np.concatenate(nll)
  assert len(nll) == stop - start == test["tokens"]
  # float32 log-probabilities summed over the test tokens vs float64: sum_tol of the test length (~1e-4 at these sizes)
  np.testing.assert_allclose(test["perplexity"], math.exp(nll.mean()), rtol=1e-4)
  np.testing.assert_allclose(test["bits_per_word"], nll.mean() / math.log(2), rtol=1e-4)
  kn = KneserNey(corpus.ids[: corpus.bounds[0]], 3, len(corpus.words))
  # float64 Kneser-Ney both sides, the same model: rounding only
  np.testing.assert_allclose(
    test["kn_perplexity"], kn.perplexity(corpus.ids, start, stop), rtol=1e-9
  )
  assert "test perplexity" in proc.stdout and "Kneser-Ney 3-gram" in proc.stdout
