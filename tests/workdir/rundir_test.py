"""rundir.prepare: a workdir holds one run; mixing two is refused untouched."""

from __future__ import annotations

import json
import logging
import os

import ml_collections
import pytest

from lstm_jax import errors
from lstm_jax.workdir import rundir

DATA = {"path": "/data/corpus.txt", "sha256": "ab" * 32, "num_bytes": 1234}


def _config(**overrides):
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.model = ml_collections.ConfigDict(dict(hidden_size=64, num_layers=1))
  c.train = ml_collections.ConfigDict(
    dict(steps=100, log_every=10, eval_every=50, learning_rate=1e-3)
  )
  c.checkpoint = ml_collections.ConfigDict(dict(every_steps=10, keep=2))
  c.data = ml_collections.ConfigDict(dict(path="", seq_len=32, dims=(1, 2)))
  for key, value in overrides.items():
    section, name = key.split(".")
    c[section][name] = value
  return c


def _snapshot(directory) -> dict[str, bytes]:
  out = {}
  for root, _, files in os.walk(directory):
    for f in files:
      path = os.path.join(root, f)
      with open(path, "rb") as fh:
        out[os.path.relpath(path, directory)] = fh.read()
  return out


def test_fresh_dir_writes_config_and_data(tmp_path):
  run = tmp_path / "run"
  rundir.prepare(str(run), _config(), DATA)
  stored = json.loads((run / "config.json").read_text())
  assert stored["model"]["hidden_size"] == 64
  assert stored["data"]["dims"] == [1, 2]
  assert json.loads((run / "data.json").read_text()) == DATA
  assert not [f for f in os.listdir(run) if f.startswith(".tmp")]
  # load_config gives the resolved config back.
  assert rundir.load_config(str(run)).train.learning_rate == 1e-3


def test_same_config_resumes_and_resumable_keys_may_change(tmp_path):
  run = str(tmp_path)
  rundir.prepare(run, _config(), DATA)
  rundir.prepare(run, _config(), DATA)
  changed = _config(**{"train.steps": 500, "train.log_every": 1})
  changed.checkpoint.every_steps = 7
  rundir.prepare(run, changed, DATA)
  assert rundir.load_config(run).train.steps == 500  # stored the new value


def test_incompatible_config_names_each_key_and_touches_nothing(tmp_path):
  run = str(tmp_path)
  rundir.prepare(run, _config(), DATA)
  (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n')
  before = _snapshot(run)
  new = _config(**{"model.hidden_size": 128, "train.learning_rate": 3e-4})
  with pytest.raises(errors.IncompatibleRunError) as info:
    rundir.prepare(run, new, DATA)
  message = str(info.value)
  assert "model.hidden_size: 64 (in workdir) vs 128 (now)" in message
  assert "train.learning_rate: 0.001 (in workdir) vs 0.0003 (now)" in message
  assert "train.steps" not in message.split("Keys that may change")[0]
  assert _snapshot(run) == before


def test_added_or_removed_key_is_a_difference(tmp_path):
  run = str(tmp_path)
  rundir.prepare(run, _config(), DATA)
  new = _config()
  new.model.dropout = 0.1
  with pytest.raises(errors.IncompatibleRunError, match=r"model.dropout: <absent>"):
    rundir.prepare(run, new, DATA)


def test_int_and_float_of_same_value_are_equal():
  assert rundir.config_differences({"a": 1}, {"a": 1.0}) == []
  assert rundir.config_differences({"a": 1}, {"a": True}) == [("a", 1, True)]


def test_changed_data_refused(tmp_path):
  run = str(tmp_path)
  rundir.prepare(run, _config(), DATA)
  before = _snapshot(run)
  with pytest.raises(errors.IncompatibleRunError, match="training data differ"):
    rundir.prepare(run, _config(), dict(DATA, sha256="cd" * 32))
  assert _snapshot(run) == before
  # Same bytes at another path: fine when the task says its path may change
  # (the char-LM's RESUMABLE_KEYS), refused as a config change otherwise.
  moved = _config(**{"data.path": "/moved.txt"})
  with pytest.raises(errors.IncompatibleRunError, match="data.path"):
    rundir.prepare(run, moved, dict(DATA, path="/m"))
  rundir.prepare(run, moved, dict(DATA, path="/m"), resumable=("data.path",))


def test_checkpoints_without_config_refused(tmp_path):
  (tmp_path / "checkpoints" / "10").mkdir(parents=True)
  with pytest.raises(errors.IncompatibleRunError, match="no config.json"):
    rundir.prepare(str(tmp_path), _config(), DATA)
  assert not (tmp_path / "config.json").exists()


def test_unreadable_config_json_refused(tmp_path):
  (tmp_path / "config.json").write_text("{not json")
  with pytest.raises(errors.IncompatibleRunError, match="cannot be read"):
    rundir.prepare(str(tmp_path), _config(), DATA)
  assert (tmp_path / "config.json").read_text() == "{not json"


def test_workdir_is_a_file(tmp_path):
  path = tmp_path / "file"
  path.write_text("x")
  with pytest.raises(errors.ConfigError, match="not a directory"):
    rundir.prepare(str(path), _config(), DATA)


def test_extending_steps_warns_when_schedule_follows_them(tmp_path, caplog):
  from ml_collections import config_dict

  def config(steps):
    c = _config(**{"train.steps": steps})
    c.optim = ml_collections.ConfigDict()
    c.optim.decay_steps = config_dict.placeholder(int)
    return c

  rundir.prepare(str(tmp_path), config(100), DATA)
  with caplog.at_level(logging.WARNING):
    rundir.prepare(str(tmp_path), config(300), DATA)
  assert any("schedule now spans 300 steps" in r.getMessage() for r in caplog.records)
