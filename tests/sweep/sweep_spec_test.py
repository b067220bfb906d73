"""Sweep declarations: grid and random trials, names, overrides and checks
(no training here)."""

from __future__ import annotations

import math

import pytest

from experiments import charlm
from lstm_jax.errors import ConfigError
from lstm_jax.sweep import spec as sweep_spec
from lstm_jax.sweep.spec import IntUniform, LogUniform, Uniform


def test_grid_is_every_combination_in_order():
  spec = sweep_spec.check(
    {
      "method": "grid",
      "parameters": {"optim.learning_rate": [0.1, 0.2], "seed": [0, 1, 2]},
    }
  )
  got = [(o["optim.learning_rate"], o["seed"]) for o in sweep_spec.override_sets(spec)]
  assert got == [(0.1, 0), (0.1, 1), (0.1, 2), (0.2, 0), (0.2, 1), (0.2, 2)]


def test_random_draws_are_seeded_and_in_range():
  params = {
    "optim.learning_rate": LogUniform(1e-4, 1e-1),
    "optim.weight_decay": Uniform(0.0, 0.5),
    "model.lstm.hidden_size": IntUniform(8, 10),
    "model.lstm.cell": ["standard", "layernorm"],
  }
  spec = sweep_spec.check({"method": "random", "parameters": params, "num_trials": 200})
  draws = sweep_spec.override_sets(spec)
  assert draws == sweep_spec.override_sets(spec)  # same seed, same trials
  assert draws != sweep_spec.override_sets({**spec, "seed": 1})
  lr = [d["optim.learning_rate"] for d in draws]
  assert all(1e-4 <= v <= 1e-1 for v in lr)
  # Log-uniform: about half the draws below the geometric midpoint 10^-2.5.
  assert 70 < sum(v < 10**-2.5 for v in lr) < 130
  assert {d["model.lstm.hidden_size"] for d in draws} == {8, 9, 10}
  assert {d["model.lstm.cell"] for d in draws} == {"standard", "layernorm"}
  assert all(0.0 <= d["optim.weight_decay"] <= 0.5 for d in draws)


def test_trials_set_their_keys_and_get_distinct_names():
  config = charlm.get_config("tiny")
  spec = sweep_spec.check(
    {
      "method": "grid",
      "parameters": {"optim.learning_rate": [3e-3, 3e-3], "model.lstm.dropout": [0.2]},
    }
  )
  trials = sweep_spec.plan(config, spec)
  assert [t.name for t in trials] == [
    "learning_rate=0.003,dropout=0.2",
    "learning_rate=0.003,dropout=0.2+2",
  ]
  assert trials[0].config.model.lstm.dropout == 0.2
  # a float parsed from the spec: exact up to one rounding
  assert math.isclose(trials[0].config.optim.learning_rate, 3e-3)
  assert config.model.lstm.dropout == 0.1  # the base config is untouched


def test_colliding_short_names_keep_the_full_key():
  name = sweep_spec.trial_name({"model.lstm.dropout": 0.1, "model.head.dropout": 0.2})
  assert name == "model.lstm.dropout=0.1,model.head.dropout=0.2"


@pytest.mark.parametrize(
  ("spec", "message"),
  [
    (
      {"method": "grid", "parameters": {"optim.lr": [1]}},
      r"'optim\.lr' is not a config key",
    ),
    (
      {"method": "grid", "parameters": {"optim.learning_rate": ["fast"]}},
      "optim.learning_rate",
    ),
    ({"method": "bayes", "parameters": {"seed": [1]}}, "method must be one of"),
    ({"method": "random", "parameters": {"seed": [1]}}, "num_trials >= 1"),
    (
      {"method": "grid", "parameters": {"seed": IntUniform(0, 3)}},
      "'seed' must be a list",
    ),
    (
      {"method": "grid", "parameters": {"seed": [1]}, "early_stop": {"rule": "x"}},
      "early_stop",
    ),
    (
      {"method": "grid", "parameters": {"seed": [1]}, "trials": 3},
      r"unknown options \['trials'\]",
    ),
  ],
)
def test_bad_declarations_name_the_problem(spec, message):
  with pytest.raises(ConfigError, match=message):
    sweep_spec.plan(charlm.get_config("tiny"), sweep_spec.check(spec))
