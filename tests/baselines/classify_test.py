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


# Running MiniRocket compiles aeon's numba kernels (~17 s univariate, ~10 s
# more multivariate, in a fresh environment): `-m slow`, as in
# tests/tasks/ucr_kernels_test.py. One channel of JapaneseVowels (variable
# length) and all 12.
@pytest.mark.slow
@pytest.mark.parametrize("channels", [1, 12], ids=["one", "all"])
def test_minirocket_pads_variable_length_with_zeros(channels):
  from aeon.classification.convolution_based import MiniRocketClassifier

  train, test = _shipped("JapaneseVowels")
  tr = [s[:, :channels] for s in train.series[:40]]
  te = [s[:, :channels] for s in test.series[:20]]
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


def test_report_means_differences_and_acceptance_from_the_records(tmp_path):
  """The table and the acceptance lines from records written here (three
  archive sets of two seeds), against means and differences by hand."""
  given = {  # set: (ours per seed, MiniRocket per seed, 1-NN DTW)
    "GunPoint": ([0.9, 1.0], [1.0, 1.0], 0.9),
    "ArrowHead": ([0.8, 0.7], [0.9, 0.8], 0.7),
    "ItalyPowerDemand": ([0.95, 0.95], [0.96, 0.96], 0.95),
  }
  rows = []
  for name, (ours, mr, dtw) in given.items():
    runs = [
      (seed, {"accuracy": a, "minirocket/accuracy": m, "dtw/accuracy": dtw,
              "m0/accuracy": a, "m1/accuracy": a - 0.1, "choice": 0},
       2.0 + seed, tmp_path / f"{name}_s{seed}")
      for seed, (a, m) in enumerate(zip(ours, mr))
    ]  # fmt: skip
    rows.append(ucr_all.summarize(name, runs))
  lines = ucr_all.table(rows, seeds=2, tiny=False)
  text = "\n".join(lines)
  # GunPoint: ours 0.95 +- 0.0707, ours - MR = -0.05, ours - DTW = +0.05,
  # ours - published (1.000) = -0.05, so not within 0.03.
  assert (
    "| GunPoint | 2 | 0.950 +- 0.071 | - | 0.950 +- 0.071 | 0.850 +- 0.071 |" in text
  )
  assert "| -0.050 | +0.050 | -0.050 | 0,0 | 2.500 +- 0.707 |" in text
  # Means over the three sets: ours (0.95 + 0.75 + 0.95) / 3 = 0.883, MiniRocket
  # (1.0 + 0.85 + 0.96) / 3 = 0.937, DTW (0.9 + 0.7 + 0.95) / 3 = 0.850.
  assert "mean accuracy ours 0.883, MiniRocket 0.937, 1-NN DTW 0.850" in text
  # 0.883 < 0.850 + 0.05 and 0.883 < 0.937 - 0.03: both missed.
  assert "(ours >= 1-NN DTW + 0.05: missed; ours >= MiniRocket - 0.03: missed)" in text
  assert "GunPoint missed; ArrowHead missed; ItalyPowerDemand met" in text
  out = tmp_path / "RESULTS.md"
  out.write_text("# kept\n")
  ucr_all.write(out, lines)
  ucr_all.write(out, lines)  # replaces the section instead of appending
  assert out.read_text().startswith("# kept\n")
  assert out.read_text().count(ucr_all.BEGIN) == 1


# The whole benchmark path (a subprocess UCR run per set, both baselines,
# the records read back): `-m slow`, its numba compile and CLI run are ~12 s;
# the report it writes is checked in-process above.
@pytest.mark.slow
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
