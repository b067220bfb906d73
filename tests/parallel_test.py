"""Scale-out (issue 9): sharding rules, grad accumulation, multi-device runs,
bad parallel config, the TPU launcher.

Multi-device runs happen in subprocesses with forced CPU devices (this pytest
process has one device); `tests/parallel_runs.py` runs several configurations
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
import parallel_runs
import pytest
import tiny_run
from jax.sharding import PartitionSpec as P

from lstm_jax import launch, optim, sharding, steps, tasks

REPO = tiny_run.REPO
TIMEOUT = 600


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
  task = tasks.get_task("charlm")
  datasets = task.make_datasets(config)
  model = task.make_model(config, datasets.info)
  tx, _ = optim.make_optimizer(config.optim, config.train.steps)
  batch0 = datasets.train_batch(0)
  state = jax.jit(lambda rng: steps.create_train_state(model, tx, config, batch0, rng))(
    jax.random.key(0)
  )
  return task, datasets, model, tx, state


@pytest.mark.parametrize("stateful", [False, True])
def test_grad_accumulation_equals_the_whole_batch(stateful):
  task, datasets, model, tx, state0 = _setup(**{"train.stateful": stateful})
  results = {}
  for k in (1, 4):
    step = jax.jit(
      steps.make_train_step(model, task.loss_and_metrics, tx, grad_accum_steps=k)
    )
    state, losses, sums = state0, [], []
    for i in range(3):  # consecutive windows: the carry must follow its rows
      state, m, loss = step(state, datasets.train_batch(i))
      losses.append(float(loss))
      sums.append(float(m["loss"][0]))
    results[k] = (state, losses, sums)
  (s1, l1, m1), (s4, l4, m4) = results[1], results[4]
  np.testing.assert_allclose(l4, l1, rtol=1e-5)
  np.testing.assert_allclose(m4, m1, rtol=1e-5)
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5),
    s4.params,
    s1.params,
  )
  if stateful:  # the final carry: every row continued its own stream
    jax.tree.map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5),
      s4.carry,
      s1.carry,
    )


# --------------------------------------------------------------------------
# Multi-device runs against one device.
# --------------------------------------------------------------------------


def _run(out, specs, devices, env):
  env = dict(env, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
  proc = subprocess.run(
    [sys.executable, os.path.join(REPO, "tests", "parallel_runs.py"), out, *specs],
    cwd=REPO,
    env=env,
    capture_output=True,
    text=True,
    timeout=TIMEOUT,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc


def _assert_same_run(path, ref_path):
  got, ref = dict(np.load(path)), dict(np.load(ref_path))
  np.testing.assert_allclose(got.pop("losses"), ref.pop("losses"), rtol=1e-5)
  assert set(got) == set(ref)
  for name in ref:
    np.testing.assert_allclose(got[name], ref[name], rtol=1e-5, atol=1e-5, err_msg=name)


@pytest.mark.slow  # four 8-device trainings in one subprocess: minutes on 2 cores
def test_meshes_and_pmap_on_8_devices_match_one_device(tmp_path, env):
  out = str(tmp_path)
  _run(out, ["one="], 1, env)
  specs = [
    "d81=parallel.mesh_shape=(8,1)",
    "d42=parallel.mesh_shape=(4,2)",
    "d24=parallel.mesh_shape=(2,4)",
    "pmap=parallel.strategy='pmap'",
  ]
  proc = _run(out, specs, 8, env)
  assert "mesh {'data': 2, 'model': 4}" in proc.stdout
  for name in ("d81", "d42", "d24", "pmap"):
    _assert_same_run(tmp_path / f"{name}.npz", tmp_path / "one.npz")


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


@pytest.mark.parametrize("case", sorted(BAD))
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
