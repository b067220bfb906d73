"""experiments/*.py: every config loads locked, adds no keys, and its tiny variant builds."""

import glob
import os
import runpy
import subprocess
import sys

import jax
import pytest
from absl import flags
from ml_collections import config_flags

from experiments import base
from lstm_jax import errors, tasks
from lstm_jax.cli import experiment
from lstm_jax.nn import layers
from lstm_jax.parallel import mesh as mesh_lib
from lstm_jax.training import build

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXPERIMENTS = sorted(
  p
  for p in glob.glob(os.path.join(ROOT, "experiments", "*.py"))
  if os.path.basename(p) not in ("__init__.py", "base.py")
)


def _load(path_and_arg, *overrides):
  """Loads a config the way lstm_jax.cli.main does (locked), in a private registry."""
  fv = flags.FlagValues()
  config_flags.DEFINE_config_file("config", None, "", flag_values=fv, lock_config=True)
  fv["config"].parser = experiment.ExperimentParser()  # as lstm_jax.cli.main does
  fv(["prog", f"--config={path_and_arg}", *overrides])
  return fv.config


def _keys(config, prefix=""):
  out = set()
  for k, v in config.items():
    out |= _keys(v, f"{prefix}{k}.") if hasattr(v, "items") else {f"{prefix}{k}"}
  return out


def _variants(path):
  """The `VARIANTS` an experiment file lists for --help (NAME: GunPoint)."""
  names = runpy.run_path(path, run_name="experiment").get("VARIANTS", ())
  return [v.replace("NAME", "GunPoint") for v in names]


@pytest.mark.parametrize("path", EXPERIMENTS, ids=os.path.basename)
def test_every_listed_variant_loads(path):
  for variant in _variants(path):
    config = _load(f"{path}:{variant}")
    assert config.task in tasks.available(), variant
  if path.endswith("ucr.py"):
    return  # any NAME is a dataset name, checked when the run starts
  with pytest.raises(Exception, match="variant|NAME|one|unknown"):
    _load(f"{path}:no_such_variant")


def test_there_are_experiments():
  assert any(p.endswith("charlm.py") for p in EXPERIMENTS)


@pytest.mark.parametrize("path", EXPERIMENTS, ids=os.path.basename)
@pytest.mark.parametrize("arg", ["", ":tiny"])
def test_loads_locked_and_adds_no_trainer_keys(path, arg):
  config = _load(path + arg)
  assert config.is_locked
  trainer = base.get_config()
  # The trainer's sections hold exactly the keys base.py declares; the task
  # adds sections of its own (data, model, ...), and its LSTM section is the
  # one layers.lstm_config declares.
  own = {k for k in _keys(config) if k.split(".")[0] in trainer}
  assert own == _keys(trainer)
  assert {"data", "model"} <= set(config) - set(trainer)
  lstm_sections = [k for k in _keys(config) if k.endswith(".lstm.hidden_size")]
  assert lstm_sections
  for key in lstm_sections:
    section = config
    for part in key.split(".")[:-1]:
      section = section[part]
    assert set(section) == set(layers.lstm_config(hidden_size=1))
  assert config.task in tasks.available()


@pytest.mark.parametrize("path", EXPERIMENTS, ids=os.path.basename)
def test_tiny_variant_builds_a_model(path):
  # ucr.py:tiny alone is GunPoint, a shipped set (the `ucr` extra).
  config = _load(path + ":tiny")
  built = build.build(config)
  task, model, batch = built.task, built.model, built.example
  # Built abstractly (shapes only): the train tests run the real thing.
  (outputs, _), variables = jax.eval_shape(
    model.init_with_output, jax.random.key(0), batch
  )
  # One output row per batch row, and a finite loss of the task's own shape.
  rows = mesh_lib.batch_rows(batch)
  assert all(leaf.shape[0] == rows for leaf in jax.tree.leaves(outputs))
  loss, _ = jax.eval_shape(task.loss_and_metrics, outputs, batch)
  assert loss.shape == ()
  assert jax.tree.leaves(variables["params"])
  # The state the trainer starts from has these parameters, and Adam's
  # moments of the same shapes.
  state = built.abstract_state()
  assert jax.tree.map(lambda a: a.shape, state.params) == jax.tree.map(
    lambda a: a.shape, variables["params"]
  )
  assert state.step.shape == ()


def test_locked_config_rejects_unknown_keys_and_wrong_types():
  config = _load(os.path.join(ROOT, "experiments", "charlm.py"))
  config.data.path = "/x.txt"  # a typed placeholder accepts its type
  config.optim.learning_rate = 1  # int -> float is allowed
  with pytest.raises(AttributeError, match="stepz"):
    config.train.stepz = 3
  with pytest.raises(TypeError):
    config.train.steps = "abc"


@pytest.mark.parametrize(
  "override, phrases",
  [
    ("--config.train.stepz=3", ("'stepz'", 'Did you mean "steps"')),
    ("--config.train.steps=abc", ("--config.train.steps=abc", "'abc'")),
  ],
  ids=["unknown_key", "wrong_type"],
)
def test_cli_bad_override_is_one_error_line(override, phrases, tmp_path):
  proc = subprocess.run(
    [
      sys.executable,
      "-m",
      "lstm_jax.main",
      "--config=experiments/charlm.py:tiny",
      f"--workdir={tmp_path / 'run'}",
      override,
    ],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert proc.returncode != 0
  (line,) = proc.stderr.splitlines()  # one line, no traceback, no absl hint after
  assert line.startswith("error: ")
  assert all(p in line for p in phrases), line
  assert not os.path.exists(tmp_path / "run")


def test_unknown_variant():
  with pytest.raises(errors.ConfigError, match="get_config\\('huge'\\) failed"):
    _load(os.path.join(ROOT, "experiments", "charlm.py:huge"))


@pytest.mark.parametrize("name, extra", [("adding.py", 0), ("copy.py", 20)])
def test_chrono_horizon_follows_seq_len(name, extra):
  """The long-range tasks' chrono T_max is the sequence's length (T, or T + 20
  for copy's symbols and recall) at any data.seq_len, and the `plain` variant
  has no chrono init (the forget_bias comparison runs)."""
  path = os.path.join(ROOT, "experiments", name)
  config = _load(path)
  assert config.model.lstm.chrono_max_len == config.data.seq_len + extra
  config.data.seq_len = 400  # what --config.data.seq_len=400 does
  assert config.model.lstm.chrono_max_len == 400 + extra
  assert config.to_dict()["model"]["lstm"]["chrono_max_len"] == 400 + extra
  plain = _load(path + ":plain")
  plain.data.seq_len = 400
  assert plain.model.lstm.chrono_max_len is None and plain.data.seq_len == 400
  assert plain.model.lstm.forget_bias == 1.0


def test_parse_variants():
  """Parts combine with commas (blanks ignored); flags any number of times,
  one alternative at most; anything else is named in the error."""
  v = base.parse_variants(" co2 , tiny ", "forecast", choices=("sunspots", "co2"))
  assert v == base.Variants("co2", frozenset({"tiny"}))
  assert base.parse_variants(None, "x") == base.Variants(None, frozenset())
  assert base.parse_variants("", "x") == base.Variants(None, frozenset())
  both = base.parse_variants("plain,tiny", "adding", flags=("tiny", "plain"))
  assert both.flags == {"tiny", "plain"} and both.choice is None
  # Any name when choices is None (a dataset looked up at run time).
  assert base.parse_variants("Foo,tiny", "ucr", choices=None).choice == "Foo"
  with pytest.raises(
    ValueError, match=r"unknown adding variant 'huge'; use 'tiny', 'plain'"
  ):
    base.parse_variants("huge", "adding", flags=("tiny", "plain"))
  with pytest.raises(ValueError, match=r"'huge' in 'tiny,huge'"):
    base.parse_variants("tiny,huge", "adding")
  with pytest.raises(ValueError, match="takes one of a, b .*got 'a,b'"):
    base.parse_variants("a,b", "x", choices=("a", "b"))
  with pytest.raises(ValueError, match="takes one NAME"):
    base.parse_variants("A,B,tiny", "ucr", choices=None)


def test_build_checks_the_config_before_loading_data(tmp_path):
  """build() names a bad trainer key before it reads the (missing) corpus."""
  config = _load(os.path.join(ROOT, "experiments", "charlm.py:tiny"))
  config.data.path = str(tmp_path / "missing.txt")
  config.train.steps = 0
  with pytest.raises(errors.ConfigError, match=r"train\.steps must be >= 1, got 0"):
    build.build(config)
  config.train.steps = 5
  with pytest.raises(errors.DataError, match="missing.txt"):
    build.build(config)
