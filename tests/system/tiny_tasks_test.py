"""Every task's tiny variant through the CLI: metrics checked independently,
and a SIGKILLed run resumed to the same final state and history.

Independent checks (the tested checkpoint, restored with `reader.open_run`,
at the step expected from metrics.jsonl):
* adding: test MSE recomputed in numpy, against targets recomputed from the
  inputs (the sum of the marked values), not the generator's;
* copy: cross-entropy recomputed with a numpy log-softmax, and its ratio to
  10 log 8 / (T + 20);
* ucr (the default path on a user's own variable-length, multivariate .ts
  pair, tests/fixtures/toy_*.ts): accuracy from numpy argmax against labels
  read from the .ts file's last field here, not by the project's parser, and
  validation's choice recomputed;
* forecast: ARIMA refit with statsmodels' SARIMAX directly, seasonal naive by
  hand, and the model's multi-step forecast as a Python loop of single calls
  (not the `lax.scan` rollout) on a scaler recomputed in numpy;
* seq2seq: greedy decoding as a Python loop of teacher-forced calls on the
  growing prefix (not `generate`), scored against answers computed here.
"""

from __future__ import annotations

import math
import re
import signal
import subprocess
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from lstm_jax.data import synthetic
from lstm_jax.runs import reader
from lstm_jax.tasks import seq2seq
from tests.support import task_runs
from tests.support.runs import final_state, finalized_steps

_REFERENCES: dict[str, Path] = {}
# Float metrics: a float32 mean over a test set on the trainer's side against
# float64 here: n * eps relative for n values in the worst case, about
# log2(n) * eps for the blocked sums XLA emits; 1e-5 is 84 eps.
RTOL = 1e-5


@pytest.fixture(scope="module")
def reference(tmp_path_factory, env):
  """task -> the workdir of one uninterrupted tiny run (made on first use)."""

  def get(task: str) -> Path:
    if task not in _REFERENCES:
      workdir = tmp_path_factory.mktemp(task) / "run"
      proc = task_runs.run(task, workdir, env)
      (workdir.parent / "stdout.txt").write_text(proc.stdout)
      _REFERENCES[task] = workdir
    return _REFERENCES[task]

  return get


def _tested(workdir):
  """The run at the checkpoint its test record scored (`which="tested"`),
  checked against the step expected here: the eval with the best value of
  the config's best metric in metrics.jsonl, or the last step where the
  config names no best metric (the UCR default)."""
  run = reader.open_run(str(workdir), which="tested")
  records = task_runs.records(workdir)
  chosen = run.config.checkpoint
  if chosen.best_metric:
    split, name = chosen.best_metric.split("/")
    evals = [r for r in records if r["split"] == split]
    sign = 1 if chosen.best_mode == "max" else -1
    # Of equal values the later step: Orbax's best_step sorts stably and
    # takes the last (a tiny seq2seq run ties at exact match 0).
    want = max(evals, key=lambda r: (sign * r[name], r["step"]))["step"]
  else:
    want = run.config.train.steps
  test = task_runs.test_record(workdir)
  assert run.step == want == test["checkpoint_step"]
  return run, test


_JITTED: dict[int, object] = {}


def _apply(run, batch, stats=None):
  # One jitted apply per run: `jax.jit(run.model.apply)` anew each call would
  # trace again (a bound method is a new object), ~0.3 s a call. `stats`: a
  # batch-norm FCN's "batch_stats" collection, else the batch's own are used.
  if id(run) not in _JITTED:
    _JITTED[id(run)] = (run, jax.jit(run.model.apply))
  variables = {"params": run.params, **({"batch_stats": stats} if stats else {})}
  out, _ = _JITTED[id(run)][1](variables, batch)
  return np.asarray(out, np.float64)


def test_adding_mse(reference):
  run, test = _tested(reference("adding"))
  datasets = run.task.make_datasets(run.config)
  errs, base = [], []
  for batch in datasets.test_batches():
    x = batch["inputs"].astype(np.float64)
    target = (x[..., 0] * x[..., 1]).sum(1)  # the two marked values
    errs.append((_apply(run, batch)[:, 0] - target) ** 2)
    base.append((1.0 - target) ** 2)
  np.testing.assert_allclose(test["mse"], np.concatenate(errs).mean(), rtol=RTOL)
  # float32 vs float64 mean of the same squared errors: sum_tol of the test set's size
  np.testing.assert_allclose(test["baseline_mse"], np.concatenate(base).mean(), 1e-5)


def test_copy_cross_entropy(reference):
  run, test = _tested(reference("copy"))
  datasets = run.task.make_datasets(run.config)
  nll = []
  for batch in datasets.test_batches():
    logits = _apply(run, batch)
    logp = (
      logits
      - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1))[..., None]
      - logits.max(-1, keepdims=True)
    )
    nll.append(-np.take_along_axis(logp, batch["targets"][..., None], -1))
  ce = np.concatenate([n.ravel() for n in nll]).mean()
  np.testing.assert_allclose(test["loss"], ce, rtol=RTOL)
  t = run.config.data.seq_len
  np.testing.assert_allclose(
    test["ce_ratio"], ce / (10 * math.log(8) / (t + 20)), rtol=RTOL
  )


def _ts_rows(path: str) -> list[str]:
  """The stripped, non-empty lines after a .ts file's @data line, read here."""
  lines = (task_runs.REPO / path).read_text().splitlines()
  start = [s.strip().lower() for s in lines].index("@data") + 1
  return [s.strip() for s in lines[start:] if s.strip()]


def test_ucr_accuracy(reference):
  run, test = _tested(reference("ucr"))
  labels = [s.rsplit(":", 1)[1] for s in _ts_rows(task_runs.UCR_PAIR[1])]
  classes = run.info["classes"]
  from lstm_jax.tasks import ucr as ucr_task
  from lstm_jax.tasks.ucr import choice

  splits, _ = ucr_task.load_splits(run.config)
  # The default FCN's BatchNorm normalises every series it scores by the
  # statistics of the whole training file (precise BatchNorm): one pass in
  # batch mode with the collection mutable, the class weights left out.
  assert run.config.model.fcn_norm == "batch"
  train = choice.unweighted(splits["train"])
  _, state = run.model.apply({"params": run.params}, train, mutable=["batch_stats"])
  stats = state["batch_stats"]

  def probs(split):  # per choice: each candidate, then their mean probability
    z = np.swapaxes(_apply(run, splits[split], stats), 0, 1)  # [candidates, N, classes]
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    return np.concatenate([p, p.mean(0, keepdims=True)])

  # Ours, the LSTM's choice: of the scores (accuracy - 0.01 x cross-entropy)
  # within one standard error of the best, the first candidate, then the
  # ensemble, then the other candidates in order; on the validation part, or
  # with no validation part (valid_fraction 0) on the whole training file.
  on = "valid" if run.config.data.valid_fraction else "train"
  if on == "train":
    assert run.info["sizes"]["train"] == len(_ts_rows(task_runs.UCR_PAIR[0]))
    assert "valid" not in run.info["sizes"] and run.info["chosen_on"] == "train"
  pv, yv = probs(on), splits[on]["labels"]
  acc_v = (pv.argmax(-1) == yv).mean(-1)
  score = acc_v - 0.01 * -np.log(pv[:, np.arange(len(yv)), yv]).mean(-1)
  best, n = np.argmax(score), len(yv)
  p = (acc_v[best] * n + 1) / (n + 2)
  near = score >= score[best] - math.sqrt(p * (1 - p) / n)
  order = [0, len(pv) - 1, *range(1, len(pv) - 1)]
  want = next(i for i in order if near[i])
  assert test["choice"] == want
  pt = probs("test")
  acc = [
    np.mean([classes[p] == y for p, y in zip(pt[i].argmax(-1), labels, strict=True)])
    for i in range(len(pt))
  ]
  assert list(test)[2] == "accuracy"  # step, split, then accuracy first
  # the run's float32 accuracies vs the count ratios: one float32 rounding
  np.testing.assert_allclose(test["accuracy"], acc[want], rtol=1e-6)
  for i in range(len(pt) - 1):  # every candidate's own test accuracy
    np.testing.assert_allclose(test[f"m{i}/accuracy"], acc[i], rtol=1e-6)
  # No kernel ensemble in the default; the closing line names the scored file.
  assert "ensemble/accuracy" not in test
  stdout = (reference("ucr").parent / "stdout.txt").read_text()
  assert f"{task_runs.UCR_PAIR[1]}: test accuracy " in stdout


def test_ucr_default_on_own_variable_length_multivariate_pair(reference):
  run = reader.open_run(str(reference("ucr")), which="tested")
  # The given files win over the tiny variant's name (GunPoint).
  assert run.info["source"] == task_runs.UCR_PAIR[0]
  # The longest series of either file is 20 steps, and there are 2 channels.
  assert run.info["num_channels"] == 2 and run.info["max_len"] == 20
  fcn = run.params["members_0"]["fcn"]  # LSTM-FCN: multivariate, so MLSTM-FCN
  assert "se_0_squeeze" in fcn and "se_1_excite" in fcn
  assert "fcn" not in run.params["members_1"]  # the time-major LSTM alone
  # The dimension-shuffled LSTM reads one step per channel of max_len
  # features (shorter series zero-padded).
  w_ih = run.params["members_0"]["lstm"]["layer_0_fwd"]["w_ih"]
  assert w_ih.shape[0] == 20


def test_forecast_against_statsmodels(reference):
  import statsmodels.api as sm
  from statsmodels.tsa.statespace.sarimax import SARIMAX

  workdir = reference("forecast")
  run, test = _tested(workdir)
  y = sm.datasets.sunspots.load_pandas().data["SUNACTIVITY"].to_numpy(np.float64)
  n_test = round(0.2 * len(y))
  t0 = len(y) - n_test
  v0 = t0 - round(0.1 * len(y))
  history, holdout = y[:t0], y[t0:]
  arima = SARIMAX(history, order=(2, 0, 1), trend="c").fit(disp=False)
  # the run's and this test's statsmodels ARIMA on the same float64 data: rounding only
  np.testing.assert_allclose(
    test["arima/mae"], np.abs(arima.forecast(n_test) - holdout).mean(), rtol=1e-6
  )
  season = 11
  snaive = np.resize(history[-season:], n_test)
  # The baselines are float64 on both sides, the same formula: rounding only.
  np.testing.assert_allclose(
    test["seasonal_naive/mae"], np.abs(snaive - holdout).mean()
  )
  scale = np.abs(y[season:v0] - y[: v0 - season]).mean()  # MASE on the train part
  np.testing.assert_allclose(
    test["seasonal_naive/mase"], np.abs(snaive - holdout).mean() / scale
  )
  np.testing.assert_allclose(
    test["valid_multi/seasonal_naive/mae"],
    np.abs(np.resize(y[v0 - season : v0], t0 - v0) - y[v0:t0]).mean(),
  )
  # The model's recursive forecast, one call at a time, on the counts
  # standardised with the training part's statistics.
  assert run.config.data.transform is None  # unset: sunspots default to none
  z = y
  mean, std, L = z[:v0].mean(), z[:v0].std(), run.config.data.input_len

  def recursive(origin, n):
    window, preds = list((z[origin - L : origin] - mean) / std), []
    for _ in range(n):
      x = np.asarray(window[-L:], np.float32)[None, :, None]
      nxt = float(_apply(run, {"inputs": x})[0, 0])
      window.append(nxt)
      preds.append(nxt * std + mean)
    return np.array(preds)

  np.testing.assert_allclose(
    test["mae"], np.abs(recursive(t0, n_test) - holdout).mean(), rtol=RTOL
  )
  np.testing.assert_allclose(
    test["valid_multi/mae"],
    np.abs(recursive(v0, t0 - v0) - y[v0:t0]).mean(),
    rtol=RTOL,
  )
  assert (workdir / "forecast.png").stat().st_size > 1000


def test_seq2seq_exact_match(reference):
  run, test = _tested(reference("seq2seq"))
  d = run.config.data
  held = synthetic.seq2seq_heldout(
    run.config.seed, d.test_per_length, d.problem, d.min_len, d.max_len, d.extra
  )
  apply = jax.jit(run.model.apply)
  n, max_out = len(held["inputs"]), held["targets"].shape[1]
  # Greedy decoding one token at a time. The decoder is causal (an LSTM with
  # attention over the encoder only), so the logits at position t read
  # dec[:, :t + 1] alone: one fixed-length input, filled in as it goes,
  # compiles once instead of once per length.
  dec = np.full((n, max_out + 1), synthetic.BOS, np.int32)
  batch = {"inputs": held["inputs"], "inputs_mask": held["inputs_mask"]}
  for t in range(max_out):
    logits, _ = apply({"params": run.params}, {**batch, "decoder_inputs": dec[:, :-1]})
    dec[:, t + 1] = np.argmax(np.asarray(logits[:, t]), -1)
  right = []
  for src_ids, out in zip(held["inputs"], dec[:, 1:], strict=True):
    src = synthetic.decode(src_ids)
    want = (
      str(sum(int(v) for v in src.split("+"))) if d.problem == "addition" else src[::-1]
    )
    right.append(synthetic.decode(out) == want)
  right, lengths = np.array(right), held["length"]
  # the run's exact-match fraction vs the count ratio: float32 rounding of one division
  np.testing.assert_allclose(test["exact_match"], right[lengths <= d.max_len].mean())
  np.testing.assert_allclose(
    test["exact_match/longer"], right[lengths > d.max_len].mean()
  )

  # The printed examples show this greedy answer (even a wrong or empty one).
  stdout = (reference("seq2seq").parent / "stdout.txt").read_text()
  shown = seq2seq.examples(run.config, run.model, run.params)
  names = {synthetic.PAD: "<pad>", synthetic.BOS: "<bos>"}
  for line, i in zip(shown, np.linspace(0, n - 1, 4).astype(int), strict=True):
    ids = dec[i, 1:].tolist()
    ids = ids[: ids.index(synthetic.EOS)] if synthetic.EOS in ids else ids
    answer = "".join(names.get(t) or synthetic.SEQ2SEQ_CHARS[t - 3] for t in ids)
    assert f"  {line}\n" in stdout
    assert line.startswith(f"{synthetic.decode(held['inputs'][i])} -> ")
    assert line.split(" -> ")[1].split(" (target ")[0] == (answer or "<eos>")
  # The eval line's best step is the checkpoint the run names as its best.
  best_lines = re.findall(r"best exact_match [\d.]+ \(step (\d+)\)", stdout)
  (closing,) = re.findall(r"Best checkpoint: step (\d+)", stdout)
  assert int(best_lines[-1]) == int(closing) == run.step


# The resume machinery is the task-independent loop (tests/system/resume_test.py
# kills the char-LM at many points in the default suite); what differs per task
# is the data order, and each task's batches are a pure function of (seed,
# step), tested in-process (e.g. tests/data/ucr_ts_test.py::
# test_epoch_batch_visits_every_row_once_per_epoch). Each task's kill and
# resume (two CLI runs) is `-m slow`.
@pytest.mark.slow
@pytest.mark.parametrize("task", task_runs.TASKS)
def test_sigkill_then_resume_is_exact(task, tmp_path, env, reference):
  ref = reference(task)
  workdir = tmp_path / "run"
  with open(tmp_path / "err.txt", "w") as err:
    proc = subprocess.Popen(
      task_runs.command(task, workdir), cwd=task_runs.REPO, env=env,
      stdout=subprocess.DEVNULL, stderr=err,
    )  # fmt: skip
    deadline = time.monotonic() + task_runs.TIMEOUT
    while len(finalized_steps(workdir)) < 2:
      assert proc.poll() is None, (tmp_path / "err.txt").read_text()[-3000:]
      assert time.monotonic() < deadline, "no checkpoints in time"
      time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
  final = final_state(ref)[0]
  assert finalized_steps(workdir)[-1] < final, "finished before the kill"
  out = task_runs.run(task, workdir, env)
  assert "Resuming" in out.stdout
  (step, state), (ref_step, ref_state) = final_state(workdir), final_state(ref)
  assert step == ref_step
  leaves, ref_leaves = jax.tree.leaves(state), jax.tree.leaves(ref_state)
  assert len(leaves) == len(ref_leaves)
  assert all(np.array_equal(a, b) for a, b in zip(leaves, ref_leaves, strict=True))
  assert task_runs.records(workdir) == task_runs.records(ref)
