"""train.py: the step (updates, padding, NaN skipping, overfitting) and a tiny run."""

import dataclasses
import glob
import json
import os
import struct
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tensorboardX.proto import event_pb2

from experiments import charlm
from lstm_jax.errors import DivergenceError
from lstm_jax.models.lm import LanguageModel
from lstm_jax.nn.layers import LSTM
from lstm_jax.tasks import charlm as charlm_task
from lstm_jax.training import build, steps, train
from lstm_jax.training import metrics as metrics_lib
from tests.support import tolerances


def _tiny(**overrides):
  config = charlm.get_config("tiny")
  for key, value in overrides.items():
    *sections, name = key.split(".")
    node = config
    for section in sections:
      node = node[section]
    node[name] = value
  return config


class Setup:
  """A tiny char-LM, its optimizer, a state and a jitted step (no donation)."""

  def __init__(self, config):
    self.config = config
    built = build.build(config)
    self.task, self.datasets, self.model = built.task, built.datasets, built.model
    self.tx, self.batch = built.tx, built.example
    self.state = jax.jit(built.init_state)(jax.random.key(0))
    self.step = jax.jit(
      steps.make_train_step(self.model, self.task.loss_and_metrics, self.tx)
    )


@pytest.fixture(scope="module")
def setup():
  # Constant rate, no dropout: what the overfitting test needs; the other step
  # tests do not care, and sharing the setup compiles the step once.
  return Setup(_tiny(**{"model.lstm.dropout": 0.0, "optim.schedule": "constant"}))


def _changed(a, b):
  return any(
    not np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))
  )


def test_train_step_changes_params_and_gives_finite_loss(setup):
  state, metrics, _ = setup.step(setup.state, setup.batch)
  loss_sum, weight = metrics["loss"]
  assert np.isfinite(loss_sum) and weight == setup.batch["mask"].size
  assert int(state.step) == 1
  assert _changed(setup.state.params, state.params)
  # Every parameter leaf moves, not just some.
  for old, new in zip(
    jax.tree.leaves(setup.state.params), jax.tree.leaves(state.params)
  ):
    assert not np.array_equal(old, new)


def test_all_padding_batch_contributes_no_gradient(setup):
  pad = {k: np.zeros_like(v) for k, v in setup.batch.items()}
  pad["inputs"], pad["targets"] = setup.batch["inputs"], setup.batch["targets"]

  def loss(params):
    logits, _ = setup.model.apply(
      {"params": params},
      pad,
      deterministic=False,
      rngs={"dropout": jax.random.key(0)},
    )
    return setup.task.loss_and_metrics(logits, pad)[0]

  grads = jax.jit(jax.grad(loss))(setup.state.params)
  for g in jax.tree.leaves(grads):
    np.testing.assert_array_equal(g, 0.0)
  _, metrics, _ = setup.step(setup.state, pad)
  assert float(metrics["loss"][1]) == 0.0 and float(metrics["grad_norm"][0]) == 0.0


def test_nan_batch_is_skipped_and_training_continues(setup):
  bad = dict(setup.batch)
  bad["inputs"] = bad["inputs"].copy()
  bad["inputs"][0, 3] = setup.datasets.info[
    "vocab_size"
  ]  # out of range -> NaN embedding
  s1, _, _ = setup.step(setup.state, setup.batch)
  s2, m2, loss2 = setup.step(s1, bad)
  assert not np.isfinite(m2["loss"][0]) and not np.isfinite(loss2)
  jax.tree.map(np.testing.assert_array_equal, s2.params, s1.params)
  jax.tree.map(
    np.testing.assert_array_equal, s2.opt_state.inner_state, s1.opt_state.inner_state
  )
  assert int(s2.step) == 2 and int(s2.opt_state.notfinite_count) == 1
  s3, m3, _ = setup.step(s2, setup.datasets.train_batch(2))
  assert np.isfinite(m3["loss"][0]) and _changed(s2.params, s3.params)
  assert (
    int(s3.opt_state.notfinite_count) == 0 and int(s3.opt_state.total_notfinite) == 1
  )


def test_overfits_one_batch(setup):
  state, losses = setup.state, []
  for _ in range(80):
    state, metrics, _ = setup.step(state, setup.batch)
    losses.append(float(metrics["loss"][0] / metrics["loss"][1]))
  assert losses[-1] < 0.5 * losses[0], losses[::10]


def _tensorboard_scalars(workdir):
  out = {}
  for path in glob.glob(os.path.join(workdir, "events.out.tfevents.*")):
    with open(path, "rb") as f:
      data, i = f.read(), 0
    while i < len(data):
      (n,) = struct.unpack("<Q", data[i : i + 8])
      event = event_pb2.Event.FromString(data[i + 12 : i + 12 + n])
      i += 12 + n + 4
      for v in event.summary.value:
        out[(event.step, v.tag)] = v.simple_value
  return out


def eval_steps_expected(config):
  every = config.train.eval_every
  return list(range(every, config.train.steps + 1, every))


def test_tiny_end_to_end(tmp_path, capsys):
  workdir = str(tmp_path / "run")
  results = train.train_and_evaluate(_tiny(), workdir)
  config = charlm.get_config("tiny")
  for name in ("config.json", "data.json", "vocab.json", "metrics.jsonl"):
    assert os.path.exists(os.path.join(workdir, name)), name
  assert os.path.isdir(os.path.join(workdir, "checkpoints", str(config.train.steps)))
  assert results["stopped"] == "finished" and results["step"] == config.train.steps
  assert len(results["sample"]) == config.sample.length
  assert results["best_step"] in eval_steps_expected(config)
  assert np.isfinite(results["eval/bpc"])
  out = capsys.readouterr().out
  assert results["sample"] in out and "validation bpc" in out

  records = metrics_lib.read_jsonl(os.path.join(workdir, "metrics.jsonl"))
  train_steps = [r["step"] for r in records if r["split"] == "train"]
  eval_steps = [r["step"] for r in records if r["split"] == "eval"]
  assert train_steps == list(range(10, config.train.steps + 1, 10))
  assert eval_steps == eval_steps_expected(config)
  last_eval = [r for r in records if r["split"] == "eval"][-1]
  assert last_eval["bpc"] == results["eval/bpc"]
  # bpc is loss / ln 2 in float32: one rounding
  np.testing.assert_allclose(last_eval["bpc"], last_eval["loss"] / np.log(2), rtol=1e-6)
  # TensorBoard holds the same values (as float32).
  scalars = _tensorboard_scalars(workdir)
  for r in records:
    for k, v in r.items():
      if k not in ("step", "split"):
        assert scalars[(r["step"], f"{r['split']}/{k}")] == np.float32(v)
  with open(os.path.join(workdir, "data.json")) as f:
    data_info = json.load(f)
  assert data_info["source"] == "pydoc_data.topics" and len(data_info["sha256"]) == 64


def test_stateful_run_and_early_stopping(tmp_path):
  # lr 0: the eval metric never improves after the first eval -> stop at the
  # second (patience 1), before train.steps.
  config = _tiny(
    **{
      "train.stateful": True,
      "optim.learning_rate": 0.0,
      "train.early_stop_patience": 1,
      "train.eval_every": 10,
      "train.steps": 40,
      "sample.length": 0,
    }
  )
  results = train.train_and_evaluate(config, str(tmp_path / "run"))
  assert results["stopped"] == "early_stop" and results["step"] == 20
  assert results["best_step"] in (10, 20)  # equal metrics: either is best


def test_too_many_nonfinite_steps_stop_the_run(tmp_path, monkeypatch):
  config = _tiny(**{"train.max_nonfinite_steps": 3, "train.log_every": 5})
  original = charlm_task.make_datasets

  def poisoned(config):
    ds = original(config)
    vocab_size = ds.info["vocab_size"]

    def batch(step):
      b = ds.train_batch(step)
      if step >= 2:
        b["inputs"] = np.full_like(b["inputs"], vocab_size)
      return b

    return dataclasses.replace(ds, train_batch=batch)

  monkeypatch.setattr(charlm_task, "make_datasets", poisoned)
  with pytest.raises(DivergenceError, match=r"3 consecutive steps \(steps 3\.\.5\)"):
    train.train_and_evaluate(config, str(tmp_path / "run"))


@pytest.mark.slow  # two subprocesses, one compiling for two devices: ~40 s of CPU
def test_two_device_data_parallel_mesh_matches_one_device(tmp_path):
  # Two CPU devices in a subprocess: the same loop, only parallel.mesh_shape
  # changes; the batch (and the stateful carry) are split over "data". The
  # numbers must be the one-device run's, up to float32 reduction order.
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  args = [
    "--config=experiments/charlm.py:tiny",
    "--config.train.stateful=True",
    "--config.train.steps=6",
    "--config.train.log_every=2",
    "--config.train.eval_every=6",
    "--config.train.eval_batches=1",
    "--config.sample.length=5",
    # SGD: an update linear in the gradient, so the two runs' parameters
    # differ by the gradients' summation order only (see the bound below);
    # Adam would magnify it at near-zero gradients.
    "--config.optim.name=sgd",
  ]
  records = {}
  for mesh, devices in (("(2,1)", 2), ("(1,1)", 1)):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    workdir = tmp_path / mesh.strip("()").replace(",", "x")
    proc = subprocess.run(
      [
        sys.executable,
        "-m",
        "lstm_jax.main",
        *args,
        f"--workdir={workdir}",
        f"--config.parallel.mesh_shape={mesh}",
      ],
      cwd=root,
      env=env,
      capture_output=True,
      text=True,
      timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"mesh {{'data': {mesh[1]}, 'model': 1}}" in proc.stdout
    records[mesh] = [
      r
      for r in metrics_lib.read_jsonl(str(workdir / "metrics.jsonl"))
      if r["split"] in ("train", "eval")
    ]
  two, one = records["(2,1)"], records["(1,1)"]
  assert [(r["step"], r["split"]) for r in two] == [
    (r["step"], r["split"]) for r in one
  ]
  assert [r["step"] for r in two if r["split"] == "eval"] == [6]
  # Loss and bpc are means over the record's tokens (2 steps x 16 x 32 for
  # train) after up to 6 steps: sum_tol(tokens per batch x steps) relative,
  # the bound tests/parallel/data_parallel_test.py derives for the same split.
  # Accuracy counts argmax hits, which can flip only at a near-tie of two
  # logits: one token's worth per record at most.
  tokens = 16 * 32
  for a, b in zip(two, one, strict=True):
    rtol = tolerances.sum_tol(tokens * a["step"])
    for name in ("loss", "bpc"):
      np.testing.assert_allclose(a[name], b[name], rtol=rtol, err_msg=f"{a} vs {b}")
    np.testing.assert_allclose(
      a["accuracy"], b["accuracy"], rtol=0, atol=1 / tokens, err_msg=f"{a} vs {b}"
    )


@pytest.mark.parametrize("proj_size", [0, 8])  # 0: hidden 12 != embed 8, a projection
def test_tied_embeddings_are_an_explicit_matmul(proj_size):
  lstm = LSTM(hidden_size=12, proj_size=proj_size)
  model = LanguageModel(vocab_size=11, embed_dim=8, lstm=lstm, tie_embeddings=True)
  batch = {"inputs": jnp.arange(10, dtype=jnp.int32).reshape(2, 5)}
  variables = model.init(jax.random.key(0), batch)
  params = variables["params"]
  assert "out" not in params and ("tie_proj" in params) == (proj_size == 0)
  params = {**params, "out_bias": jnp.linspace(-1.0, 1.0, 11)}  # not all zero
  logits, carry = model.apply({"params": params}, batch)
  assert logits.shape == (2, 5, 11) and len(carry.lstm) == 1
  # The same numbers by hand: embedding lookup, the LSTM, the projection to
  # embed_dim (if any), then y @ E^T + b with the input embedding matrix E.
  table = np.asarray(params["embed"]["embedding"])
  y, _ = lstm.apply({"params": params["lstm"]}, jnp.asarray(table[batch["inputs"]]))
  y = np.asarray(y, np.float64)
  if proj_size == 0:
    y = y @ np.asarray(params["tie_proj"]["kernel"], np.float64)
  want = y @ table.T.astype(np.float64) + np.asarray(params["out_bias"])
  # float32 logits vs float64 numpy: float32 rounding of the LSTM and the matmul
  np.testing.assert_allclose(np.asarray(logits), want, rtol=1e-5, atol=1e-5)


def test_carry_resets_at_a_new_segment_between_windows():
  model = LanguageModel(vocab_size=7, embed_dim=4, lstm=LSTM(hidden_size=6))
  a = {
    "inputs": jnp.array([[1, 2, 3], [1, 2, 3]]),
    "segment_ids": jnp.array([[1, 1, 1]] * 2),
  }
  b = {
    "inputs": jnp.array([[4, 5, 6], [4, 5, 6]]),
    "segment_ids": jnp.array([[1, 1, 1], [2, 2, 2]]),
  }

  @jax.jit
  def run(key):  # one compilation for all four calls
    (_, carry), params = model.init_with_output(key, a)
    continued, after = model.apply(params, b, carry=carry)
    fresh, _ = model.apply(params, b)
    return continued, after, fresh

  continued, after, fresh = run(jax.random.key(0))
  # Row 0 continues its document: the carry matters. Row 1 starts document 2:
  # it equals a run from zero state.
  assert not np.allclose(continued[0], fresh[0])
  np.testing.assert_allclose(continued[1], fresh[1], rtol=1e-6, atol=1e-6)
  np.testing.assert_array_equal(after.segment, [1, 2])
