"""The tiny training run that the command-line tests share.

`tests/cli/cli_errors_test.py` and `tests/system/resume_test.py` run the same command (and the
`env` fixture in conftest.py gives them one JAX compilation cache per pytest
worker), so only the first of them compiles.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
STEPS = 30
CHECKPOINT_EVERY = 5
# Checkpoints every 5 steps, evals (with a best-by-bpc checkpoint) every 10,
# train logs every 5: log windows align with checkpoints, so a run resumed
# from any checkpoint writes the same metrics history as an uninterrupted one.
ARGS = (
  "--config=experiments/charlm.py:tiny",
  f"--config.train.steps={STEPS}",
  f"--config.checkpoint.every_steps={CHECKPOINT_EVERY}",
  "--config.train.log_every=5",
  "--config.train.eval_every=10",
  "--config.train.eval_batches=2",
  "--config.sample.length=8",
)


def command(*args: str) -> list[str]:
  """`python -m lstm_jax.main` with the tiny run's flags, then `args`."""
  return [sys.executable, "-m", "lstm_jax.main", *ARGS, *args]


def run(workdir, env, timeout: float = 300, *args: str):
  """The tiny run (plus `args`) in `workdir`, to completion or `timeout`
  seconds: the `subprocess.CompletedProcess`, output captured as text."""
  import subprocess

  return subprocess.run(
    command(f"--workdir={workdir}", *args),
    cwd=REPO,
    env=env,
    capture_output=True,
    text=True,
    timeout=timeout,
  )


def tree_snapshot(root, skip=()) -> dict[str, tuple]:
  """{relative path: (kind, size, mtime_ns, sha256)} of everything under
  `root` (directories included), but the names in `skip`: two equal
  snapshots mean nothing was created, deleted, moved, written or touched."""
  import hashlib
  import os

  snap = {}
  for dirpath, dirnames, filenames in os.walk(root):
    dirnames[:] = [d for d in dirnames if d not in skip]
    for name in [*dirnames, *filenames]:
      if name in skip:
        continue
      path = os.path.join(dirpath, name)
      st = os.lstat(path)
      digest = ""
      if os.path.isfile(path):
        with open(path, "rb") as f:
          digest = hashlib.sha256(f.read()).hexdigest()
      kind = "dir" if os.path.isdir(path) else "file"
      snap[os.path.relpath(path, root)] = (kind, st.st_size, st.st_mtime_ns, digest)
  return snap
