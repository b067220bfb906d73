"""Without matplotlib (the `plots` extra) a run loses its PNGs, nothing else.

Each command runs in a subprocess whose `sys.modules["matplotlib"]` is None
before anything is imported: every `import matplotlib...` then raises
ImportError, as on an install without the package. The reference for what a
run writes is the same command's files minus the PNGs; the run must exit 0,
keep its checkpoints, metrics and tables, and log one warning naming the
extra, however many plots it skipped.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lstm_jax.util import plotting

REPO = Path(__file__).resolve().parents[2]
# `python -m MODULE ARGS...` with matplotlib made unimportable first.
PRELUDE = (
  "import runpy, sys; sys.modules['matplotlib'] = None; "
  "sys.argv = sys.argv[1:]; runpy.run_module(sys.argv[0], run_name='__main__', "
  "alter_sys=True)"
)
SERIES = "t,y\n" + "".join(f"{i},{(i * 7) % 11 + i / 10}\n" for i in range(120))


def _run(module: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
  return subprocess.run(
    [sys.executable, "-c", PRELUDE, module, *args],
    cwd=REPO,
    env=env,
    capture_output=True,
    text=True,
    timeout=300,
  )


def _records(workdir: Path) -> list[dict]:
  lines = (workdir / "metrics.jsonl").read_text().splitlines()
  return [json.loads(line) for line in lines]


def test_figure_is_none_with_one_warning_naming_the_first_file(env):
  code = (
    "import sys; sys.modules['matplotlib'] = None; from lstm_jax.util import plotting; "
    "print([plotting.figure(f, figsize=(2, 2)) for f in ('a.png', 'b.png')])"
  )
  done = subprocess.run(
    [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True
  )
  assert done.returncode == 0, done.stderr[-2000:]
  assert done.stdout.strip() == "[None, None]"
  assert done.stderr.count(plotting.INSTALL_HINT) == 1
  assert "a.png" in done.stderr and "b.png" not in done.stderr


def test_forecast_with_diagnostics_finishes_without_its_two_plots(tmp_path, env):
  csv = tmp_path / "series.csv"
  csv.write_text(SERIES)
  workdir = tmp_path / "run"
  done = _run(
    "lstm_jax.main",
    "--config=experiments/forecast.py:tiny",
    f"--workdir={workdir}",
    "--config.data.dataset=",
    f"--config.data.path={csv}",
    "--config.data.columns=y",
    "--config.forecast.arima=False",
    "--config.train.steps=20",
    "--config.diagnostics.every_steps=10",
    env=env,
  )
  assert done.returncode == 0, done.stderr[-3000:]
  assert any((workdir / "checkpoints").iterdir())
  splits = [r["split"] for r in _records(workdir)]
  assert splits.count("diagnostics") == 2 and "test" in splits
  assert not list(workdir.glob("*.png"))
  # One warning for both skipped plots (gradient_flow.png, forecast.png).
  assert done.stderr.count(plotting.INSTALL_HINT) == 1, done.stderr[-3000:]
  assert "Traceback" not in done.stderr


@pytest.mark.slow  # a sweep of CLI runs; the forecast run covers the warning
def test_sweep_writes_its_tables_without_the_plot(tmp_path, env):
  sweep_file = tmp_path / "one.py"
  sweep_file.write_text(
    "def get_sweep():\n"
    "  return {'method': 'grid', 'parameters': {'optim.learning_rate': [1e-2]}}\n"
  )
  workdir = tmp_path / "sweep"
  done = _run(
    "lstm_jax.sweep",
    "--config=tests/support/toy/sign_config.py",
    f"--sweep={sweep_file}",
    f"--workdir={workdir}",
    "--config.data.seq_len=8",
    "--config.data.eval_examples=16",
    "--config.model.lstm.hidden_size=8",
    "--config.train.steps=10",
    "--config.train.eval_every=5",
    "--config.checkpoint.every_steps=5",
    env=env,
  )
  assert done.returncode == 0, done.stderr[-3000:]
  assert (workdir / "results.csv").exists() and (workdir / "results.md").exists()
  assert not (workdir / "results.png").exists()
  (trial,) = [p for p in workdir.iterdir() if p.is_dir()]
  assert any((trial / "checkpoints").iterdir())
  assert done.stderr.count(plotting.INSTALL_HINT) == 1, done.stderr[-3000:]
