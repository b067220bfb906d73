"""Shared test setup: CPU by default, no global x64."""

import fcntl
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# XLA's LLVM back end at -O0 for the suite and its subprocesses (the `env`
# fixture copies os.environ): most tests are compile-bound, and this cut the
# kernel tests' wall by a quarter (fused_test + masking_test on 2 cores:
# 39.8 s -> 29.1 s; the tiny UCR run 12.4 s -> 10.4 s). The HLO passes, and so
# fusion and memory figures, are unchanged. LSTM_JAX_TEST_FULL_OPT=1 tests the
# optimised machine code instead.
if not os.environ.get("LSTM_JAX_TEST_FULL_OPT"):
  os.environ["XLA_FLAGS"] = " ".join(
    [
      os.environ.get("XLA_FLAGS", ""),
      "--xla_backend_optimization_level=0",
      "--xla_llvm_disable_expensive_passes=true",
    ]
  ).strip()

import jax
import pytest

from lstm_jax.workdir import orbax_compat


@pytest.hookimpl(trylast=True)
def pytest_configure(config):
  """Tests restore damaged checkpoints in-process on purpose; Orbax then
  leaves reads whose exceptions surface at garbage collection, each a
  traceback in the warning summary. Drop exactly those reports, as the CLIs
  do (`orbax_compat.silence_unraisable`), on top of pytest's own hook (set in
  its pytest_configure, hence trylast), which still reports every other one."""
  del config
  orbax_compat.silence_unraisable()


@pytest.fixture
def key():
  """A fresh PRNG key; tests split it as needed."""
  return jax.random.key(0)


@pytest.fixture(scope="session")
def env(tmp_path_factory) -> dict[str, str]:
  """Environment for `python -m lstm_jax.main` subprocesses.

  CPU, and one persistent JAX compilation cache for the whole session (per
  pytest worker), so the tiny run (tests/support/tiny_run.py) compiles only once.
  """
  cache = tmp_path_factory.getbasetemp() / "jax_compilation_cache"
  cache.mkdir(exist_ok=True)
  return {
    **os.environ,
    "JAX_PLATFORMS": "cpu",
    "JAX_COMPILATION_CACHE_DIR": str(cache),
    "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
    "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "-1",
  }


@pytest.fixture(scope="session")
def tiny_reference(tmp_path_factory, env):
  """One uninterrupted tiny run (tests/support/tiny_run.py), shared by the test files
  that compare a disturbed run with it: (workdir, CompletedProcess).

  Under pytest-xdist the workers share one run: the first to get here makes
  it in the session's common temporary directory under a file lock, and the
  others read its output (it is the same command, so the same result).
  Nothing may write into it: tests copy it first.
  """
  import json
  import subprocess

  from tests.support import tiny_run

  base = tmp_path_factory.getbasetemp()
  if os.environ.get("PYTEST_XDIST_WORKER"):
    base = base.parent  # the session's directory, above each worker's own
  root = base / "tiny_reference_shared"
  root.mkdir(exist_ok=True)
  workdir, done = root / "run", root / "done.json"
  with open(root / "lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
    if not done.exists():
      proc = tiny_run.run(workdir, env)
      assert proc.returncode == 0, proc.stderr[-3000:]
      done.write_text(json.dumps([proc.args, proc.stdout, proc.stderr]))
  args, stdout, stderr = json.loads(done.read_text())
  return workdir, subprocess.CompletedProcess(args, 0, stdout, stderr)


@pytest.fixture(scope="session")
def finished_run(tiny_reference):
  """The completed tiny run's workdir (config.json, data.json, vocab.json,
  checkpoints, metrics.jsonl, events), for the command-line tests; a test
  that changes files copies it first."""
  workdir = tiny_reference[0]
  assert (workdir / "config.json").exists()
  assert any((workdir / "checkpoints").iterdir())
  return workdir
