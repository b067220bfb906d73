"""Shared test setup: CPU by default, no global x64."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax
import pytest


@pytest.fixture
def key():
  """A fresh PRNG key; tests split it as needed."""
  return jax.random.key(0)


@pytest.fixture(scope="session")
def env(tmp_path_factory) -> dict[str, str]:
  """Environment for `python -m lstm_jax.main` subprocesses.

  CPU, and one persistent JAX compilation cache for the whole session (per
  pytest worker), so the tiny run (tests/tiny_run.py) compiles only once.
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
  """One uninterrupted tiny run (tests/tiny_run.py), shared by the test files
  that compare a disturbed run with it: (workdir, CompletedProcess)."""
  import subprocess

  import tiny_run

  workdir = tmp_path_factory.mktemp("tiny_reference") / "run"
  proc = subprocess.run(
    tiny_run.command(f"--workdir={workdir}"),
    cwd=tiny_run.REPO,
    env=env,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  return workdir, proc


@pytest.fixture(scope="session")
def finished_run(tiny_reference):
  """The completed tiny run's workdir (config.json, data.json, vocab.json,
  checkpoints, metrics.jsonl, events), for the command-line tests; a test
  that changes files copies it first."""
  workdir = tiny_reference[0]
  assert (workdir / "config.json").exists()
  assert any((workdir / "checkpoints").iterdir())
  return workdir
