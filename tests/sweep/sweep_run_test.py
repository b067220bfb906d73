"""Sweeps end to end: grid run, kill and restart (bit-identical, ended trials
not rerun), the ranked table, Optuna, early stopping and bad input.

Trials are the toy sign task (tests/support/toy) at a few steps, so each trial takes
seconds; the reference for "bit-identical" is the same sweep run without a
kill, and for the table's ranking the trials' own metrics.jsonl files.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lstm_jax import errors
from lstm_jax.sweep import runner
from lstm_jax.sweep import spec as sweep_spec
from tests.support.toy import sign_config

REPO = Path(__file__).resolve().parents[2]
OVERRIDES = (
  "--config.data.seq_len=8",
  "--config.data.batch_size=8",
  "--config.data.eval_examples=16",
  "--config.model.lstm.hidden_size=8",
  "--config.train.steps=30",
  "--config.train.log_every=5",
  "--config.train.eval_every=10",
  "--config.checkpoint.every_steps=5",
)
GRID = """
def get_sweep():
  return {
    "method": "grid",
    "parameters": {"optim.learning_rate": [1e-2, 3e-3], "seed": [0, 1]},
    "early_stop": {"rule": "median", "min_trials": 2, "grace_evals": 1},
  }
"""
# Time-dependent fields; everything else must match bit for bit.
CLOCK = ("steps_per_sec", "tokens_per_sec")


def _command(sweep_file, workdir, *extra):
  return [
    sys.executable,
    "-m",
    "lstm_jax.sweep",
    "--config=tests/support/toy/sign_config.py",
    f"--sweep={sweep_file}",
    f"--workdir={workdir}",
    *OVERRIDES,
    *extra,
  ]


def _records(trial_dir):
  with open(os.path.join(trial_dir, "metrics.jsonl"), encoding="utf-8") as f:
    rows = [json.loads(line) for line in f]
  return [{k: v for k, v in r.items() if k not in CLOCK} for r in rows]


@pytest.mark.slow
def test_grid_sweep_survives_kill_and_restart(tmp_path, env):
  sweep_file = tmp_path / "grid.py"
  sweep_file.write_text(GRID)
  straight, killed = tmp_path / "straight", tmp_path / "killed"
  subprocess.run(
    _command(sweep_file, straight), cwd=REPO, env=env, check=True, capture_output=True
  )
  names = sorted(p.name for p in straight.iterdir() if (p / "trial.json").exists())
  assert len(names) == 4
  order = [
    sweep_spec.trial_name(o)
    for o in sweep_spec.override_sets(
      sweep_spec.check(
        {
          "method": "grid",
          "parameters": {"optim.learning_rate": [1e-2, 3e-3], "seed": [0, 1]},
        }
      )
    )
  ]
  proc = subprocess.Popen(
    _command(sweep_file, killed),
    cwd=REPO,
    env=env,
    stdout=subprocess.DEVNULL,
    stderr=subprocess.DEVNULL,
  )
  first, second = killed / order[0], killed / order[1]
  deadline = time.time() + 300
  while time.time() < deadline and not (
    (first / "trial.json").exists()
    and (second / "checkpoints").is_dir()
    and any(p.name.isdigit() for p in (second / "checkpoints").iterdir())
  ):
    time.sleep(0.2)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert (first / "trial.json").exists() and not (killed / "results.md").exists()
  stamp = (
    (first / "trial.json").stat().st_mtime_ns,
    (first / "metrics.jsonl").stat().st_mtime_ns,
  )
  out = subprocess.run(
    _command(sweep_file, killed),
    cwd=REPO,
    env=env,
    check=True,
    capture_output=True,
    text=True,
  ).stdout
  assert f"{order[0]}: already" in out  # not rerun...
  assert stamp == (
    (first / "trial.json").stat().st_mtime_ns,
    (first / "metrics.jsonl").stat().st_mtime_ns,
  )  # ...nor touched
  for name in names:
    assert _records(killed / name) == _records(straight / name), name
    a = json.loads((killed / name / "trial.json").read_text())
    b = json.loads((straight / name / "trial.json").read_text())
    assert (a["status"], a["best"]) == (b["status"], b["best"])
  # The table ranks by the best eval/accuracy found in each trial's own records.
  with open(killed / "results.csv", encoding="utf-8") as f:
    rows = list(csv.DictReader(f))
  # (the sign task's best_metric: eval/accuracy, max)
  best = {
    n: max(r["accuracy"] for r in _records(killed / n) if r["split"] == "eval")
    for n in names
  }
  assert [float(r["eval/accuracy"]) for r in rows] == sorted(
    best.values(), reverse=True
  )
  assert {r["trial"] for r in rows} == set(names)
  assert (killed / "results.md").exists() and (
    killed / "results.png"
  ).stat().st_size > 1000


def _small_config():
  config = sign_config.get_config()
  for flag in OVERRIDES:
    key, value = flag.removeprefix("--config.").split("=")
    sweep_spec.set_key(config, key, type(eval(f"config.{key}"))(value))  # noqa: S307
  return config


@pytest.mark.slow
def test_median_rule_stops_a_trial_behind_the_ended_ones(tmp_path):
  config = _small_config()
  spec = sweep_spec.check(
    {
      "method": "grid",
      # lr 0 cannot learn: at its second eval it trails both ended trials.
      "parameters": {"optim.learning_rate": [1e-2, 2e-2, 0.0]},
      "early_stop": {"rule": "median", "min_trials": 2, "grace_evals": 1},
    }
  )
  rows = runner.run(config, spec, str(tmp_path))
  status = {r["trial"]: r["status"] for r in rows}
  assert status["learning_rate=0"] == "pruned"
  assert [r["last_step"] for r in rows if r["trial"] == "learning_rate=0"] == [20]
  assert rows[-1]["trial"] == "learning_rate=0"


@pytest.mark.slow
def test_optuna_sweep_of_four_trials(tmp_path):
  pytest.importorskip("optuna")
  config = _small_config()
  spec = sweep_spec.check(
    {
      "method": "optuna",
      "parameters": {"optim.learning_rate": sweep_spec.LogUniform(1e-3, 3e-2)},
      "num_trials": 4,
      "early_stop": {"rule": "median", "min_trials": 2, "grace_evals": 1},
    }
  )
  rows = runner.run(config, spec, str(tmp_path))
  assert len(rows) == 4 and all(r["status"] in ("finished", "pruned") for r in rows)
  values = [r["eval/accuracy"] for r in rows]  # the sign task's best_metric (max)
  assert values == sorted(values, reverse=True)
  assert (tmp_path / "optuna.db").exists() and (tmp_path / "results.md").exists()


@pytest.mark.parametrize(
  ("spec", "message"),
  [
    (
      {"method": "grid", "parameters": {"optim.lerning_rate": [1e-3]}},
      "'optim.lerning_rate'",
    ),
    ({"method": "grid", "parameters": {}}, "'parameters' is empty"),
    ({"method": "grid", "parameters": {"seed": []}}, "'seed' has an empty list"),
    (
      {
        "method": "grid",
        "parameters": {"model.lstm.hidden_size": [8, 16]},
        "population": 2,
      },
      "'model.lstm.hidden_size'",
    ),
  ],
)
def test_bad_sweeps_fail_before_anything_is_written(tmp_path, spec, message):
  keep = tmp_path / "earlier_trial" / "note.txt"
  keep.parent.mkdir()
  keep.write_text("results of an earlier sweep")
  before = sorted(str(p) for p in tmp_path.rglob("*"))
  with pytest.raises(errors.ConfigError, match=message):
    runner.run(_small_config(), sweep_spec.check(spec), str(tmp_path))
  assert sorted(str(p) for p in tmp_path.rglob("*")) == before
  assert keep.read_text() == "results of an earlier sweep"


def test_cli_prints_one_error_line_and_exits_non_zero(tmp_path, env):
  sweep_file = tmp_path / "bad.py"
  sweep_file.write_text(
    "def get_sweep():\n  return {'method': 'grid', 'parameters': {'optim.nope': [1]}}\n"
  )
  done = subprocess.run(
    _command(sweep_file, tmp_path / "w"),
    cwd=REPO,
    env=env,
    capture_output=True,
    text=True,
  )
  assert done.returncode != 0
  assert (
    done.stderr.strip()
    .splitlines()[-1]
    .startswith("error: sweep parameter 'optim.nope'")
  )
  assert not (tmp_path / "w").exists()


@pytest.mark.parametrize(
  "args, message",
  [
    (
      [
        "--config=experiments/charlm.py:nope",
        "--sweep=experiments/sweeps/charlm_lr.py",
      ],
      "error: experiments/charlm.py:",  # ...: get_config('nope') failed: ...
    ),
    (
      [
        "--config=experiments/charlm.py:tiny",
        "--sweep=experiments/sweeps/charlm_lr.py",
        "--table_only",
      ],
      "error: --table_only: no sweep directory",
    ),
  ],
  ids=["bad_variant", "table_only_without_sweep"],
)
def test_cli_bad_config_or_table_only_is_one_error_line(tmp_path, env, args, message):
  done = subprocess.run(
    [sys.executable, "-m", "lstm_jax.sweep", *args, f"--workdir={tmp_path / 'w'}"],
    cwd=REPO,
    env=env,
    capture_output=True,
    text=True,
  )
  assert done.returncode == 1
  assert done.stderr.strip().splitlines() == [done.stderr.strip()]  # one line
  assert done.stderr.startswith(message), done.stderr[-2000:]
  assert not (tmp_path / "w").exists()
