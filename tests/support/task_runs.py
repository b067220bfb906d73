"""The tiny CLI runs of the five tasks, shared by tasks_test.py's tests.

Every run goes through `python -m lstm_jax.main` in a subprocess with the
session's compilation cache (the `env` fixture), so a task compiles once and
its kill/resume runs only pay for start-up.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 300  # seconds per subprocess; a hung run fails instead of stalling
TIMING = {"steps_per_sec", "tokens_per_sec"}
# name -> the config argument of its tiny variant.
TASKS = {
  "adding": "experiments/adding.py:tiny",
  "copy": "experiments/copy.py:tiny",
  "ucr": "experiments/ucr.py:tiny",  # the default path, on the pair below
  "forecast": "experiments/forecast.py:tiny",
  "seq2seq": "experiments/seq2seq.py:tiny",
  "wordlm": "experiments/wordlm.py:tiny",
}

# A user's own .ts pair by path, variable-length and multivariate (2 channels
# of 12-20 steps), so the tiny UCR run trains MLSTM-FCN with masks.
UCR_PAIR = ("tests/fixtures/toy_TRAIN.ts", "tests/fixtures/toy_TEST.ts")
# name -> flags after the config argument.
ARGS = {
  "ucr": (
    f"--config.data.train_path={UCR_PAIR[0]}",
    f"--config.data.test_path={UCR_PAIR[1]}",
  ),
}


def command(task: str, workdir, *args: str) -> list[str]:
  return [
    sys.executable,
    "-m",
    "lstm_jax.main",
    f"--config={TASKS[task]}",
    *ARGS.get(task, ()),
    f"--workdir={workdir}",
    *args,
  ]


def run(task: str, workdir, env, *args: str) -> subprocess.CompletedProcess:
  proc = subprocess.run(
    command(task, workdir, *args),
    cwd=REPO,
    env=env,
    capture_output=True,
    text=True,
    timeout=TIMEOUT,
  )
  assert proc.returncode == 0, f"{task} failed:\n{proc.stderr[-4000:]}"
  return proc


def records(workdir) -> list[dict]:
  lines = (Path(workdir) / "metrics.jsonl").read_text().splitlines()
  return [
    {k: v for k, v in json.loads(line).items() if k not in TIMING} for line in lines
  ]


def test_record(workdir) -> dict:
  (test,) = [r for r in records(workdir) if r["split"] == "test"]
  return test
