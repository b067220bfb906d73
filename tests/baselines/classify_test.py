"""The same-run UCR/UEA baselines and benchmarks/ucr_all.py's tiny variant.

1-NN DTW is checked against a numpy dynamic program (full window, dependent
DTW: squared Euclidean cost over channels per cell) on variable-length
multichannel series; MiniRocket's padding against numpy-padded arrays given
to aeon directly; the benchmark's table against its runs' test records and
a numpy 1-NN DTW of the whole UnitTest set.
"""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from lstm_jax.data import ucr

pytest.importorskip("aeon")
classify = pytest.importorskip("lstm_jax.baselines.classify")
REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))
import ucr_all  # noqa: E402


def _shipped(name):
  shipped = ucr.shipped_datasets()
  if name not in shipped:
    pytest.skip(f"{name} not shipped in an installed aeon/sktime")
  return [ucr.load_ts(p) for p in shipped[name]]


def _dtw(a: np.ndarray, b: np.ndarray) -> float:
  """Full-window dependent DTW of [T_a, C] and [T_b, C]: sum of squared costs."""
  cost = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1).astype(np.float64)
  d = np.full((len(a) + 1, len(b) + 1), np.inf)
  d[0, 0] = 0.0
  for i in range(1, len(a) + 1):
    for j in range(1, len(b) + 1):
      d[i, j] = cost[i - 1, j - 1] + min(d[i - 1, j], d[i, j - 1], d[i - 1, j - 1])
  return d[-1, -1]


def _nn_dtw(train, labels, test) -> list[str]:
  return [labels[int(np.argmin([_dtw(t, s) for s in train]))] for t in test]


def test_dtw_matches_numpy_on_variable_length_multichannel():
  train, test = _shipped("JapaneseVowels")  # 12 channels, 7 to 29 frames
  rows = np.random.default_rng(0).permutation(len(train.series))[:30]
  tr = [train.series[i] for i in rows]
  labels = [train.labels[i] for i in rows]
  te = test.series[:12]
  assert len({len(s) for s in tr + te}) > 1
  got = classify.dtw_predict(tr, np.asarray(labels), te)
  assert list(got) == _nn_dtw(tr, labels, te)


def test_minirocket_pads_variable_length_with_zeros():
  from aeon.classification.convolution_based import MiniRocketClassifier

  train, test = _shipped("JapaneseVowels")
  tr, te = train.series[:40], test.series[:20]
  longest = max(len(s) for s in tr + te)

  def padded(series):  # [N, C, longest], zeros after each series' end
    x = np.zeros((len(series), series[0].shape[1], longest))
    for i, s in enumerate(series):
      x[i, :, : len(s)] = s.T
    return x

  want = MiniRocketClassifier(random_state=3, n_jobs=1)
  want = want.fit(padded(tr), np.asarray(train.labels[:40])).predict(padded(te))
  got = classify.minirocket_predict(tr, np.asarray(train.labels[:40]), te, seed=3)
  np.testing.assert_array_equal(got, want)


def test_unknown_baseline_is_an_error():
  with pytest.raises(ValueError, match="rocket"):
    classify.accuracies(
      [np.zeros((9, 1))], ["a"], [np.zeros((9, 1))], ["a"], 0, ("rocket",)
    )


def test_seed_ensemble_is_the_mean_probability(tmp_path):
  _, test = _shipped("UnitTest")
  classes = ["1", "2"]
  y = ucr.encode_labels(test.labels, classes)
  rng = np.random.default_rng(0)
  runs = []
  for seed in range(3):
    w = tmp_path / f"s{seed}"
    w.mkdir()
    (w / "data.json").write_text(json.dumps({"classes": classes}))
    np.save(w / "test_probs.npy", rng.dirichlet([1, 1], len(y)).astype(np.float32))
    runs.append((seed, {}, 0.0, w))
  mean = np.mean([np.load(r[3] / "test_probs.npy") for r in runs], 0)
  assert ucr_all.seed_ensemble("UnitTest", runs) == np.mean(mean.argmax(1) == y)
  assert ucr_all.seed_ensemble("UnitTest", runs[:1]) is None


def test_tiny_benchmark_writes_the_runs_figures(tmp_path, env, monkeypatch):
  train, test = _shipped("UnitTest")  # 20 train, 22 test series of 24 steps
  for key in [k for k in env if k.startswith("JAX_")]:
    monkeypatch.setenv(key, env[key])
  out = tmp_path / "RESULTS.md"
  out.write_text("# kept\n")
  argv = ["--tiny", "--only=UnitTest", "--seeds=1", f"--runs_dir={tmp_path / 'r'}"]
  (row,) = ucr_all.main([*argv, f"--out={out}"])
  record = ucr_all.test_record(tmp_path / "r" / "UnitTest_s0")
  assert row["ours"] == [record["accuracy"]]
  assert row["minirocket"] == [record["minirocket/accuracy"]]
  want = np.mean(
    np.asarray(_nn_dtw(train.series, train.labels, test.series)) == test.labels
  )
  # float64 accuracy of the same predictions: approx's rel 1e-6 is rounding slack only
  assert record["dtw/accuracy"] == pytest.approx(want)
  text = out.read_text()
  assert text.startswith("# kept\n") and ucr_all.BEGIN in text and ucr_all.END in text
  assert f"| UnitTest | 1 | {record['accuracy']:.3f} |" in text
  # Rewriting replaces the section instead of appending a second one.
  ucr_all.main([*argv, "--report_only", f"--out={out}"])
  assert out.read_text().count(ucr_all.BEGIN) == 1
