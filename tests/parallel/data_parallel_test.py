"""Scale-out: sharding rules, grad accumulation, multi-device runs,
bad parallel config, the TPU launcher.

Multi-device runs happen in subprocesses with forced CPU devices (this pytest
process has one device); `tests/support/parallel_runs.py` runs several configurations
in one subprocess, so JAX starts once. The reference is always the plain
one-device run with the same global batch: the multi-device and accumulated
runs must reproduce its loss curve and final parameters.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from lstm_jax.cli import launch
from lstm_jax.parallel import sharding
from lstm_jax.training import build, steps
from lstm_jax.util.treepath import path_name
from lstm_jax.workdir import preemption
from tests.support import parallel_runs, runs, tiny_run, tolerances
from tests.support.runs import final_curve_and_params

REPO = tiny_run.REPO
TIMEOUT = 600
# The tiny char-LM's batch (experiments/charlm.py, tiny): every gradient and
# loss here is a mean over this many tokens, summed in another order by each
# way of splitting the batch (micro-batches, devices, processes).
TOKENS = 16 * 32
# The runs compared below train with SGD + momentum (tests/support/
# parallel_runs.py, BASE), an update linear in the gradient, so the parameters
# differ by the gradients' rounding: tolerances.sgd_params_tol. Adam's default
# would divide by sqrt(v) + eps at gradients that are almost zero and turn
# one ulp of summation order into a visible step (3e-5 on one machine).


def _assert_params_close(got, want, initial, steps):
  """Every leaf within the SGD bound for its own size and movement."""
  for (path, a), b, p0 in zip(
    jax.tree_util.tree_flatten_with_path(got)[0],
    jax.tree.leaves(want),
    jax.tree.leaves(initial),
    strict=True,
  ):
    b, p0 = np.asarray(b), np.asarray(p0)
    tol = tolerances.sgd_params_tol(
      TOKENS, steps, param_scale=np.max(np.abs(b)), moved=np.max(np.abs(b - p0))
    )
    np.testing.assert_allclose(
      a, b, rtol=0, atol=tol, err_msg=jax.tree_util.keystr(path)
    )


# --------------------------------------------------------------------------
# The rules table.
# --------------------------------------------------------------------------


def test_rules_split_every_lstm_gate_matrix_and_only_large_vocab_matrices():
  lstm = "params/lstm/layer_1_fwd/"
  assert sharding.spec_for(lstm + "w_ih", (64, 256), 2) == P(None, "model")
  assert sharding.spec_for(lstm + "w_hh", (64, 256), 4) == P(None, "model")
  assert sharding.spec_for(lstm + "bias", (256,), 4) == P("model")
  # Adam's moments live under other prefixes and follow their parameter.
  moment = "opt_state/inner_state/0/mu/lstm/layer_0_fwd/w_hh"
  assert sharding.spec_for(moment, (64, 256), 2) == P(None, "model")
  # A 100 x 16 embedding is replicated; a 50k x 1024 one is split by rows.
  assert sharding.spec_for("params/embed/embedding", (100, 16), 2) == P()
  assert sharding.spec_for("params/embed/embedding", (50000, 1024), 2) == P(
    "model", None
  )
  assert sharding.spec_for("params/out/kernel", (1024, 50000), 2) == P(None, "model")
  # Not divisible, scalar counters, model axis 1: replicated.
  assert sharding.spec_for("params/out/kernel", (1024, 50001), 2) == P()
  assert sharding.spec_for("opt_state/count", (), 2) == P()
  assert sharding.spec_for(lstm + "w_ih", (64, 256), 1) == P()


# --------------------------------------------------------------------------
# Gradient accumulation: k micro-batches == one batch of k times the rows.
# --------------------------------------------------------------------------


def _setup(**overrides):
  config = parallel_runs.config_with(overrides)
  built = build.build(config)
  state = jax.jit(built.init_state)(jax.random.key(0))
  return built.task, built.datasets, built.model, built.tx, state


# Stateful in the default suite: the same loss, metric and parameter checks
# as the stateless case, plus the carry; the stateless case is `-m slow`.
@pytest.mark.parametrize(
  "stateful", [pytest.param(False, marks=pytest.mark.slow), True]
)
def test_grad_accumulation_equals_the_whole_batch(stateful):
  task, datasets, model, tx, state0 = _setup(**{"train.stateful": stateful})
  windows = 3  # consecutive windows: the carry must follow its rows
  results = {}
  for k in (1, 4):
    step = jax.jit(
      steps.make_train_step(model, task.loss_and_metrics, tx, grad_accum_steps=k)
    )
    state, losses, sums = state0, [], []
    for i in range(windows):
      state, m, loss = step(state, datasets.train_batch(i))
      losses.append(float(loss))
      sums.append(float(m["loss"][0]))
    results[k] = (state, losses, sums)
  (s1, l1, m1), (s4, l4, m4) = results[1], results[4]
  # A loss is a mean (its metric a sum) of TOKENS positive terms: two orders
  # differ by sum_tol(TOKENS) relative; the parameters of later windows differ
  # by far less (below).
  rtol = tolerances.sum_tol(TOKENS)
  np.testing.assert_allclose(l4, l1, rtol=rtol)
  np.testing.assert_allclose(m4, m1, rtol=rtol)
  _assert_params_close(s4.params, s1.params, state0.params, windows)
  if stateful:  # the final carry: every row continued its own stream
    # The micro-batches run the same recurrence on 4 rows instead of 16 (XLA
    # may block the matmuls differently) with parameters within the bound
    # above: recurrence_tol over the windows' steps, at the inner size
    # embed + hidden, for c at its own scale and h (|h| < 1).
    config = parallel_runs.config_with({})
    width = config.model.embed_dim + config.model.lstm.hidden_size
    time_steps = windows * config.data.seq_len
    for a, b in zip(jax.tree.leaves(s4.carry), jax.tree.leaves(s1.carry)):
      scale = max(1.0, float(np.max(np.abs(b))))
      tol = tolerances.recurrence_tol(time_steps, width, scale)
      np.testing.assert_allclose(a, b, rtol=0, atol=tol)


# --------------------------------------------------------------------------
# Multi-device runs against one device.
# --------------------------------------------------------------------------


def _run(out, specs, devices, env):
  env = dict(env, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
  proc = subprocess.run(
    [
      sys.executable,
      os.path.join(REPO, "tests", "support", "parallel_runs.py"),
      out,
      *specs,
    ],
    cwd=REPO,
    env=env,
    capture_output=True,
    text=True,
    timeout=TIMEOUT,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc


def _initial_params():
  """The tiny char-LM's initial parameters (init from config.seed, as the
  trainer does), for how far each leaf moved."""
  config = parallel_runs.config_with({})
  return jax.jit(build.build(config).init_state)(jax.random.key(config.seed)).params


def _by_name(params) -> dict[str, np.ndarray]:
  flat = jax.tree_util.tree_flatten_with_path(params)[0]
  return {path_name(p): np.asarray(x) for p, x in flat}


def _assert_same_run(path, ref_path, initial):
  """Same losses and parameters as the one-device run, within the bounds of
  a different summation order (the mesh's and pmap's cross-device sums)."""
  got, ref = dict(np.load(path)), dict(np.load(ref_path))
  losses, ref_losses = got.pop("losses"), ref.pop("losses")
  # Each step's loss: sum_tol(TOKENS), plus what the parameters' own
  # difference (the SGD bound, ~TOKENS * eps relative per step) adds: one
  # more sum_tol per step before it.
  rtol = tolerances.sum_tol(TOKENS * len(ref_losses))
  np.testing.assert_allclose(losses, ref_losses, rtol=rtol)
  assert set(got) == set(ref)
  _assert_params_close(got, ref, {n: initial[n] for n in ref}, len(ref_losses))


@pytest.mark.slow  # four 8-device trainings in one subprocess: minutes on 2 cores
def test_meshes_and_pmap_on_8_devices_match_one_device(tmp_path, env):
  out = str(tmp_path)
  _run(out, ["one="], 1, env)
  specs = [
    "d81=parallel.mesh_shape=(8,1)",
    "d42=parallel.mesh_shape=(4,2)",
    "d24=parallel.mesh_shape=(2,4)",
    "pmap=parallel.strategy='pmap'",
    "zero1=parallel.mesh_shape=(4,2);parallel.shard_opt_state=True",
  ]
  proc = _run(out, specs, 8, env)
  initial = _by_name(_initial_params())
  assert "mesh {'data': 2, 'model': 4}" in proc.stdout
  for name in ("d81", "d42", "d24", "pmap", "zero1"):
    _assert_same_run(tmp_path / f"{name}.npz", tmp_path / "one.npz", initial)


# --------------------------------------------------------------------------
# Bad input: one message naming the key, exit 1, nothing written.
# --------------------------------------------------------------------------


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


BAD = {
  "mesh_vs_devices": (1, ["--config.parallel.mesh_shape=(2,1)"], "parallel.mesh_shape"),
  "batch_vs_data": (3, ["--config.parallel.mesh_shape=(3,1)"], "parallel.mesh_shape"),
  "accum_vs_batch": (1, ["--config.train.grad_accum_steps=3"], "grad_accum_steps"),
  "model_vs_hidden": (
    8,
    ["--config.parallel.mesh_shape=(1,8)", "--config.model.lstm.hidden_size=60"],
    "model.lstm.hidden_size",
  ),
  "pmap_with_model": (
    2,
    ["--config.parallel.mesh_shape=(1,2)", "--config.parallel.strategy=pmap"],
    "parallel.strategy",
  ),
  "process_id_range": (
    1,
    [
      "--config.parallel.coordinator_address=127.0.0.1:1",
      "--config.parallel.num_processes=2",
      "--config.parallel.process_id=2",
    ],
    "parallel.process_id",
  ),
  "unreachable": (
    1,
    [
      "--config.parallel.coordinator_address=127.0.0.1:{port}",
      "--config.parallel.num_processes=2",
      "--config.parallel.process_id=1",
      "--config.parallel.init_timeout_s=2",
    ],
    "parallel.coordinator_address",
  ),
}


# Two cases by default (each a process start); `-m slow` runs them all.
@pytest.mark.parametrize(
  "case",
  [
    c
    if c in ("model_vs_hidden", "mesh_vs_devices")
    else pytest.param(c, marks=pytest.mark.slow)
    for c in sorted(BAD)
  ],
)
def test_bad_parallel_config_fails_naming_the_key(case, tmp_path, env):
  devices, flags, key = BAD[case]
  flags = [f.format(port=_free_port()) for f in flags]
  workdir = tmp_path / "run"
  proc = subprocess.run(
    [*tiny_run.command(f"--workdir={workdir}"), *flags],
    cwd=REPO,
    env=dict(env, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}"),
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert proc.returncode == 1, proc.stderr[-2000:]
  error = proc.stderr.strip().splitlines()[-1]
  assert error.startswith("error: ") and key in error, error
  assert "Traceback" not in proc.stderr
  assert not workdir.exists()


# --------------------------------------------------------------------------
# The TPU launcher, dry run only (no cloud access).
# --------------------------------------------------------------------------


def test_launcher_dry_run_prints_every_command(capsys):
  argv = [
    "--name=lstm-v4",
    "--zone=us-central2-b",
    "--accelerator=v4-32",
    "--create",
    "--workdir=gs://b/run",
    "--dry-run",
    "--",
    "--config=experiments/charlm.py",
    "--config.parallel.mesh_shape=(-1,1)",
  ]
  assert launch.main(argv) == 0
  lines = capsys.readouterr().out.strip().splitlines()
  assert lines[0].startswith("gcloud compute tpus tpu-vm describe lstm-v4")
  assert lines[1].startswith("gcloud compute tpus tpu-vm create lstm-v4")
  assert "--accelerator-type=v4-32" in lines[1]
  assert lines[2].startswith("git archive")
  assert "scp" in lines[3] and "--worker=all" in lines[3]
  assert "pip install" in lines[4] and "--worker=all" in lines[4]
  run = lines[5]
  assert run.startswith("gcloud compute tpus tpu-vm ssh lstm-v4")
  assert "--worker=all" in run and "--zone=us-central2-b" in run
  assert "python -m lstm_jax.main --workdir=gs://b/run" in run
  assert "--config.parallel.mesh_shape=(-1,1)" in run
  # Without --create the VM is assumed to exist: no create command.
  assert launch.main([a for a in argv if a != "--create"]) == 0
  assert "create" not in capsys.readouterr().out


# --------------------------------------------------------------------------
# Two processes x 4 devices == one process x 8 devices; SIGTERM on one host.
# --------------------------------------------------------------------------

MH_ARGS = (
  "--config.train.steps=10",
  "--config.train.eval_every=10",
  "--config.checkpoint.every_steps=2",
  "--config.parallel.mesh_shape=(8,1)",
  "--config.optim.name=sgd",  # gradient-linear: see TOKENS
)


def _start(workdir, env, devices, *extra):
  env = dict(env, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
  return subprocess.Popen(
    [*tiny_run.command(f"--workdir={workdir}"), *MH_ARGS, *extra],
    cwd=REPO,
    env=env,
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
  )


def _two_processes(workdir, env):
  address = f"127.0.0.1:{_free_port()}"
  return [
    _start(
      workdir,
      env,
      4,
      f"--config.parallel.coordinator_address={address}",
      "--config.parallel.num_processes=2",
      f"--config.parallel.process_id={i}",
    )
    for i in (0, 1)
  ]


def _wait(procs, returncode=0):
  return runs.wait_all(procs, TIMEOUT, returncode)


@pytest.mark.slow  # three multi-device trainings, two of them in two processes
def test_two_processes_match_one_and_agree_on_sigterm(tmp_path, env):
  import signal
  import time

  _wait([_start(tmp_path / "one", env, 8)])
  _wait(_two_processes(tmp_path / "two", env))
  curve1, step1, params1 = final_curve_and_params(tmp_path / "one")
  curve2, step2, params2 = final_curve_and_params(tmp_path / "two")
  assert step1 == step2 == 10
  assert len(curve1) == len(curve2)
  for a, b in zip(curve1, curve2):
    assert a.keys() == b.keys()
    assert (a["step"], a["split"]) == (b["step"], b["split"])
    # Means over TOKENS-sized batches after up to `step` SGD steps whose
    # parameters differ by the cross-process sums' order (as in
    # _assert_same_run).
    rtol = tolerances.sum_tol(TOKENS * max(a["step"], 1))
    for k in a.keys() - {"step", "split"}:
      np.testing.assert_allclose(b[k], a[k], rtol=rtol, err_msg=k)
  _assert_params_close(params2, params1, _initial_params(), step1)

  # SIGTERM to process 1 only, once a checkpoint exists: both stop at the
  # same step boundary, save it once and exit 75 (preempted: rerun, which
  # resumes); the rerun finishes (0).
  workdir = tmp_path / "term"
  procs = _two_processes(workdir, env)
  deadline = time.monotonic() + TIMEOUT
  while not (workdir / "checkpoints" / "2").exists():
    assert time.monotonic() < deadline and all(p.poll() is None for p in procs)
    time.sleep(0.2)
  procs[1].send_signal(signal.SIGTERM)
  _wait(procs, returncode=preemption.EXIT_PREEMPTED)
  _, stopped, _ = final_curve_and_params(workdir)
  assert 2 <= stopped < 10
  _wait(_two_processes(workdir, env))
  curve3, step3, params3 = final_curve_and_params(workdir)
  assert step3 == 10
  jax.tree.map(np.testing.assert_array_equal, params3, params2)
  assert [r["step"] for r in curve3] == [r["step"] for r in curve2]


# --------------------------------------------------------------------------
# Resharding on restore: 8 devices (4, 2) <-> 1 device.
# --------------------------------------------------------------------------


@pytest.mark.slow  # three subprocesses, two of them on 8 devices
def test_checkpoint_reshards_between_8_devices_and_one(tmp_path, env):
  import shutil

  out, keep = str(tmp_path), "checkpoint.keep=10"
  mesh42 = "parallel.mesh_shape=(4,2)"

  def interrupt(name):  # as if the run had stopped after step 2
    shutil.copy(tmp_path / f"{name}.npz", tmp_path / f"{name}_whole.npz")
    shutil.rmtree(tmp_path / name / "checkpoints" / "4")

  _run(out, [f"b={keep}"], 1, env)  # b: 1 device, uninterrupted
  interrupt("b")
  _run(out, [f"a={keep};{mesh42}", f"b={keep};{mesh42}"], 8, env)  # b: 1 -> 8
  interrupt("a")
  proc = _run(out, [f"a={keep}"], 1, env)  # a: 8 -> 1
  assert "Resuming" in proc.stdout and "at step 2/4" in proc.stdout
  # The restore itself is exact (each leaf's checksum is verified after
  # restoring into the new shardings, lstm_jax/workdir/fingerprint.py); the
  # last two steps then run on another device count: the SGD bound of the
  # cross-device sums, as in _assert_same_run.
  initial = _by_name(_initial_params())
  for resumed, whole in (("a", "a_whole"), ("b", "b_whole")):
    got, ref = (
      dict(np.load(tmp_path / f"{resumed}.npz")),
      dict(np.load(tmp_path / f"{whole}.npz")),
    )
    losses, ref_losses = got.pop("losses"), ref.pop("losses")
    rtol = tolerances.sum_tol(TOKENS * len(ref_losses))
    np.testing.assert_allclose(losses, ref_losses, rtol=rtol)
    _assert_params_close(got, ref, {n: initial[n] for n in ref}, len(ref_losses))
