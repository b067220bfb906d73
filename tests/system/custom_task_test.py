"""A task defined outside the library trains through the CLI with its own keys.

`tests/support/toy/sign_task.py` (classify the sign of a sequence's sum) and its
config `tests/support/toy/sign_config.py` are the whole task: the trainer, the base
config and the metrics writer are untouched by it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from lstm_jax.runs import reader
from lstm_jax.training import metrics

REPO = Path(__file__).resolve().parents[2]


def test_toy_task_trains_through_the_cli(tmp_path, env):
  workdir = tmp_path / "sign"
  cmd = [
    sys.executable,
    "-m",
    "lstm_jax.main",
    "--config=tests/support/toy/sign_config.py",
    f"--workdir={workdir}",
    "--config.data.min_len=4",  # the task's own key, overridden like any other
  ]
  proc = subprocess.run(
    cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300
  )
  assert proc.returncode == 0, proc.stderr[-3000:]

  stored = json.loads((workdir / "config.json").read_text())
  assert (
    stored["task"] == "tests.support.toy.sign_task" and stored["data"]["min_len"] == 4
  )
  records = metrics.read_jsonl(str(workdir / metrics.METRICS_FILE))
  splits = [r["split"] for r in records]
  assert splits.count("eval") == 3 and splits.count("test") == 1
  (test,) = [r for r in records if r["split"] == "test"]
  best_eval = max(r["accuracy"] for r in records if r["split"] == "eval")
  # The test split is scored on the best checkpoint by validation accuracy.
  best_step = [
    r for r in records if r["split"] == "eval" and r["accuracy"] == best_eval
  ]
  assert test["checkpoint_step"] in [r["step"] for r in best_step]
  assert test["accuracy"] > 0.8, test  # chance is 0.5
  train = [r for r in records if r["split"] == "train"]
  assert all("tokens_per_sec" in r for r in train[1:])

  # Recompute the test accuracy independently: the best checkpoint's logits
  # on the test split, arg-maxed and compared with the labels in numpy.
  sys.path.insert(0, str(REPO))
  try:
    run = reader.open_run(str(workdir), which="best")
    from tests.support.toy import sign_task  # importable from the repo root
  finally:
    sys.path.remove(str(REPO))
  datasets = sign_task.make_datasets(run.config)
  correct = total = 0
  for batch in datasets.test_batches():
    logits, _ = run.model.apply({"params": run.params}, batch)
    correct += int(np.sum(np.argmax(np.asarray(logits), -1) == batch["label"]))
    total += len(batch["label"])
  # the run's float32 accuracy vs the count ratio: one float32 rounding
  np.testing.assert_allclose(test["accuracy"], correct / total, rtol=1e-6)
