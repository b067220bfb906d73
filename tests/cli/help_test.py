"""Every entry point's --help is a user's page (exit 0), and its logs are quiet.

Run as a user runs them: subprocesses of `python -m ...`, from a directory
outside the repository too (the experiments are then found beside the
package, as in a clone with an editable install).
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.support import tiny_run

# absl's log line prefix: severity letter, MMDD, time (I1202 01:54:10.398 ...).
ABSL_LINE = re.compile(r"^[IWE]\d{4} \d\d:\d\d:\d\d", re.M)


def _run(args, env, cwd, timeout=300):
  env = {**env, "PYTHONPATH": str(tiny_run.REPO)}
  return subprocess.run(
    [sys.executable, *args],
    env=env,
    cwd=cwd,
    capture_output=True,
    text=True,
    timeout=timeout,
  )


@pytest.mark.parametrize(
  "where", ["repo", pytest.param("elsewhere", marks=pytest.mark.slow)]
)
def test_main_help_is_a_users_page(where, env, tmp_path):
  cwd = tiny_run.REPO if where == "repo" else tmp_path
  proc = _run(["-m", "lstm_jax.main", "--help"], env, cwd)
  assert proc.returncode == 0, proc.stderr
  page = proc.stdout
  for phrase in (
    "usage: python -m lstm_jax.main",
    "experiments/charlm.py",  # the experiments, from experiments/*.py
    "Character-level LSTM language model",  # ... with their docstrings
    ":tiny",  # ... and variants
    "--config.KEY=VALUE",  # the override syntax
    "experiments/base.py",  # where the keys are declared
    "resumes from the latest good checkpoint",
    "python -m lstm_jax.main --config=experiments/charlm.py --workdir=runs/charlm",
    "--verbosity=0",
  ):
    assert phrase in page, f"{phrase!r} missing from:\n{page}"
  assert "None" not in page  # no "(default: 'None')" for required flags
  assert "logic" not in page  # no notes about the code's internals


def test_sample_help_is_a_users_page(env, tmp_path):
  proc = _run(["-m", "lstm_jax.sample", "--help"], env, tmp_path)
  assert proc.returncode == 0, proc.stderr
  for phrase in (
    "usage: python -m lstm_jax.sample --workdir=DIR",
    "python -m lstm_jax.sample --workdir=runs/charlm --prompt=",
    "--temperature",
    "(default: 0.8)",
  ):
    assert phrase in proc.stdout, f"{phrase!r} missing from:\n{proc.stdout}"
  assert "None" not in proc.stdout


@pytest.mark.parametrize(
  "module, phrases",
  [
    (
      "lstm_jax.sweep",
      [
        "usage: python -m lstm_jax.sweep --config=FILE",
        "experiments/sweeps/charlm_lr.py",  # the sweep files, listed
        "experiments/charlm.py",  # the experiments
        "--config.KEY=VALUE",  # the override syntax
        "--sweep=experiments/sweeps/charlm_lr.py --workdir=runs/sweep",  # example
      ],
    ),
    (
      "lstm_jax.launch",
      [
        "usage: python -m lstm_jax.launch",
        "--config=experiments/",
        "--config.KEY=VALUE",
      ],
    ),
  ],
)
def test_other_entry_points_help_is_a_users_page(module, phrases, env, tmp_path):
  proc = _run(["-m", module, "--help"], env, tmp_path)
  assert proc.returncode == 0, proc.stderr
  for phrase in phrases:
    assert phrase in proc.stdout, f"{phrase!r} missing from:\n{proc.stdout}"
  assert "(default: 'None')" not in proc.stdout


def test_train_and_sample_stderr_has_no_log_lines(tiny_reference, env):
  workdir, train = tiny_reference  # the session's tiny run (conftest.py)
  assert not ABSL_LINE.findall(train.stderr), train.stderr
  args = ["-m", "lstm_jax.sample", f"--workdir={workdir}", "--length=10"]
  quiet = _run(args, env, tiny_run.REPO)
  assert quiet.returncode == 0, quiet.stderr
  assert quiet.stderr.splitlines() == [
    f"# {workdir} step {tiny_run.STEPS}, temperature 0.8"
  ]
  assert quiet.stdout.startswith("The ")
  # --verbosity=0 brings the INFO log back (Orbax's restore lines).
  loud = _run([*args, "--verbosity=0"], env, tiny_run.REPO)
  assert loud.returncode == 0, loud.stderr
  assert len(ABSL_LINE.findall(loud.stderr)) > 5, loud.stderr
  assert loud.stdout == quiet.stdout
