"""The metric writer: metrics.jsonl is strict JSON (non-finite values are
null), TensorBoard's events are durable at every sync (what the trainer does
before each checkpoint save) and a resume rewrites the events a killed run
lost."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap

from lstm_jax.training import metrics
from tests.support.runs import read_tensorboard_scalars


def _strict(line: str):
  def refuse(token):
    raise ValueError(f"non-standard JSON token {token}")

  return json.loads(line, parse_constant=refuse)


def test_metrics_jsonl_is_strict_json(tmp_path):
  with metrics.MetricWriter(str(tmp_path), 10) as writer:
    writer.write(1, "train", {"loss": math.nan, "grad_norm": math.inf, "x": 2.5})
  (line,) = (tmp_path / "metrics.jsonl").read_text().splitlines()
  assert _strict(line) == {
    "step": 1,
    "split": "train",
    "loss": None,
    "grad_norm": None,
    "x": 2.5,
  }
  scalars = read_tensorboard_scalars(tmp_path)  # TensorBoard keeps the floats
  assert math.isnan(scalars[("train/loss", 1)]) and scalars[("train/x", 1)] == 2.5


def test_tensorboard_survives_sigkill_after_sync(tmp_path, env):
  script = textwrap.dedent(f"""
    import os, signal
    from lstm_jax.training import metrics
    writer = metrics.MetricWriter({str(tmp_path)!r}, 10)
    writer.write(3, "eval", {{"bpc": 1.25}})
    writer.sync()  # what the trainer does before every checkpoint save
    os.kill(os.getpid(), signal.SIGKILL)
  """)
  proc = subprocess.run([sys.executable, "-c", script], env=env, timeout=120)
  assert proc.returncode == -9
  assert read_tensorboard_scalars(tmp_path)[("eval/bpc", 3)] == 1.25


def test_resume_rewrites_what_tensorboard_lost(tmp_path):
  import tensorboardX

  records = [
    {"step": 5, "split": "train", "loss": 2.0},
    {"step": 10, "split": "train", "loss": 1.5},
    {"step": 10, "split": "eval", "bpc": 3.0},
    {"step": 12, "split": "train", "loss": 1.4},  # after the checkpoint at 10
  ]
  (tmp_path / "metrics.jsonl").write_text(
    "".join(json.dumps(r) + "\n" for r in records)
  )
  # The killed run's events: its train records, but the eval at 10 was lost.
  old = tensorboardX.SummaryWriter(str(tmp_path), purge_step=1)
  for r in (records[0], records[1], records[3]):
    old.add_scalar("train/loss", r["loss"], r["step"])
  old.close()

  metrics.MetricWriter(str(tmp_path), 20, initial_step=10).close()
  scalars = read_tensorboard_scalars(tmp_path)
  assert scalars[("eval/bpc", 10)] == 3.0
  assert {s for (t, s) in scalars if t == "train/loss"} >= {5, 10}
  kept = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert kept == records[:3]
