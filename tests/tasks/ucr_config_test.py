"""The UCR task's default path on a user's own .ts pair: variable-length,
multivariate series read by path, the default candidates trained (tiny
sizes), ours the LSTM's choice, scored once on the test file."""

import json
import os
import re

import numpy as np
import pytest

from experiments import ucr as ucr_experiment
from lstm_jax.errors import ConfigError
from lstm_jax.runs import reader
from lstm_jax.tasks import ucr as ucr_task
from lstm_jax.training import metrics, train

HEADER = (
  "@problemName toy\n@univariate false\n@dimensions 2\n@equalLength false\n"
  "@classLabel true up down\n@data\n"
)


def _write(path, n, seed):
  """n series of 12-20 steps, 2 channels: class "up" rises, "down" falls."""
  rng = np.random.default_rng(seed)
  lines = []
  for i in range(n):
    label = ("up", "down")[i % 2]
    t = np.linspace(0, 1, 20 if i == 0 else rng.integers(12, 20))
    trend = t if label == "up" else 1 - t
    chans = [trend + 0.1 * rng.normal(size=len(t)), rng.normal(size=len(t))]
    lines.append(":".join(",".join(f"{v:.4f}" for v in c) for c in chans) + f":{label}")
  path.write_text(HEADER + "\n".join(lines) + "\n")
  return str(path)


def test_tiny_default_on_own_variable_length_multivariate_pair(tmp_path, capsys):
  config = ucr_experiment.get_config("tiny")
  config.data.name = None
  config.data.train_path = _write(tmp_path / "own_TRAIN.ts", 20, 0)
  config.data.test_path = _write(tmp_path / "own_TEST.ts", 12, 1)
  workdir = str(tmp_path / "run")
  train.train_and_evaluate(config, workdir)
  # The closing line names the file that was scored.
  assert f"{config.data.test_path}: test accuracy " in capsys.readouterr().out
  records = metrics.read_jsonl(os.path.join(workdir, metrics.METRICS_FILE))
  (test,) = [r for r in records if r["split"] == "test"]
  # Ours is one of the LSTM choices (2 candidates, their ensemble), and each
  # candidate's own test accuracy is in the record; no kernel ensemble.
  assert test["choice"] in (0, 1, 2) and "ensemble/accuracy" not in test
  assert {"m0/accuracy", "m1/accuracy"} <= set(test)
  data = json.loads((tmp_path / "run" / "data.json").read_text())
  assert data["num_channels"] == 2 and data["max_len"] == 20
  run = reader.open_run(workdir, which="latest")  # the last checkpoint is tested
  fcn = run.params["members_0"]["fcn"]  # LSTM-FCN: multivariate, so MLSTM-FCN
  assert "se_0_squeeze" in fcn and "se_1_excite" in fcn
  assert "fcn" not in run.params["members_1"]  # the time-major LSTM alone
  # The dimension-shuffled LSTM reads one step per channel of max_len
  # features (the longest series of either file; shorter ones zero-padded).
  w_ih = run.params["members_0"]["lstm"]["layer_0_fwd"]["w_ih"]
  assert w_ih.shape[0] == 20


def test_bad_model_keys_name_the_key_and_the_choices():
  for key, value, message in [
    (
      "fcn_norm",
      "batch",
      "model.fcn_norm must be one of ('layer', 'sequence', 'none'), got 'batch'",
    ),
    ("fcn_width", -1, "model.fcn_width must be >= 0, got -1"),
    ("pooling", "sum", "model.pooling must be one of"),
    (
      "data.normalization",
      "global",
      "data.normalization must be one of ('auto', 'train', 'series'), got 'global'",
    ),
  ]:
    config = ucr_experiment.get_config("tiny")
    section, _, key = key.rpartition(".")
    config[section or "model"][key] = value
    with pytest.raises(ConfigError, match=re.escape(message)):
      ucr_task.validate(config)
