"""What a sweep is: its declaration, its trials and their config overrides.

A sweep file `experiments/sweeps/<name>.py` defines `get_sweep() -> dict`::

  from lstm_jax.sweep.spec import LogUniform

  def get_sweep():
    return {
      "method": "grid",            # "grid", "random" or "optuna"
      "parameters": {              # dotted config keys -> values
        "optim.learning_rate": [3e-3, 1e-2],     # grid: a list per key
        "model.lstm.dropout": [0.0, 0.1],
      },
      # Optional:
      "num_trials": 8,             # random / optuna: trials to run
      "seed": 0,                   # random / optuna: the sampler's seed
      "metric": "eval/bpc",        # ranks trials; default checkpoint.best_metric
      "mode": "min",               # default checkpoint.best_mode
      "early_stop": {"rule": "median", "min_trials": 2, "grace_evals": 1},
      "population": 0,             # > 0: train this many trials at once (vmap)
    }

For "random" and "optuna" a parameter is a list (a uniform choice),
`Uniform(low, high)`, `LogUniform(low, high)` or `IntUniform(low, high)`
(both ends included). Early-stopping rules ("none", "median", "halving") are
described in `lstm_jax.sweep.runner`.

Everything here is checked before anything is written: an unknown key, a value
of the wrong type, an empty grid or an unknown option is a `ConfigError`
naming it.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import itertools
import math
import re
from typing import Any

import ml_collections
import numpy as np

from lstm_jax.errors import ConfigError

METHODS = ("grid", "random", "optuna")
RULES = ("none", "median", "halving")
_OPTIONS = {"method", "parameters", "num_trials", "seed", "metric", "mode"}
_OPTIONS |= {"early_stop", "population"}
_EARLY_STOP = {"rule", "min_trials", "grace_evals", "eta"}


@dataclasses.dataclass(frozen=True)
class Uniform:
  low: float
  high: float


@dataclasses.dataclass(frozen=True)
class LogUniform:
  low: float
  high: float


@dataclasses.dataclass(frozen=True)
class IntUniform:
  low: int
  high: int


Distribution = list | Uniform | LogUniform | IntUniform


@dataclasses.dataclass(frozen=True)
class Trial:
  """One trial: its directory name, overrides and resolved config."""

  name: str
  overrides: dict[str, Any]
  config: ml_collections.ConfigDict


def load_sweep(path: str) -> dict[str, Any]:
  """`get_sweep()` of the file at `path`, with its options checked."""
  module_spec = importlib.util.spec_from_file_location("_sweep_file", path)
  if module_spec is None:
    raise ConfigError(f"--sweep={path}: not a Python file")
  module = importlib.util.module_from_spec(module_spec)
  try:
    module_spec.loader.exec_module(module)
  except FileNotFoundError as e:
    raise ConfigError(f"--sweep={path}: no such file") from e
  if not callable(getattr(module, "get_sweep", None)):
    raise ConfigError(f"{path} defines no get_sweep()")
  return check(module.get_sweep(), path)


def check(spec: dict[str, Any], where: str = "the sweep") -> dict[str, Any]:
  """`spec` with defaults filled in; raises ConfigError naming a bad option."""
  unknown = sorted(set(spec) - _OPTIONS)
  if unknown:
    raise ConfigError(f"{where}: unknown options {unknown}; known: {sorted(_OPTIONS)}")
  spec = {"seed": 0, "population": 0, "early_stop": {"rule": "none"}, **spec}
  method = spec.get("method")
  if method not in METHODS:
    raise ConfigError(f"{where}: method must be one of {METHODS}, got {method!r}")
  params = spec.get("parameters")
  if not isinstance(params, dict) or not params:
    raise ConfigError(f"{where}: 'parameters' is empty: nothing to sweep over")
  for key, values in params.items():
    if isinstance(values, list):
      if not values:
        raise ConfigError(f"{where}: parameter {key!r} has an empty list of values")
    elif method == "grid" or not isinstance(values, Uniform | LogUniform | IntUniform):
      raise ConfigError(
        f"{where}: parameter {key!r} must be a list of values"
        + ("" if method == "grid" else " or a Uniform/LogUniform/IntUniform")
        + f", got {values!r}"
      )
    elif values.low > values.high or (
      isinstance(values, LogUniform) and values.low <= 0
    ):
      raise ConfigError(f"{where}: parameter {key!r} has an empty range {values}")
  if method != "grid" and int(spec.get("num_trials", 0)) < 1:
    raise ConfigError(f"{where}: a {method} sweep needs num_trials >= 1")
  stop = spec["early_stop"]
  unknown = sorted(set(stop) - _EARLY_STOP)
  if unknown or stop.get("rule", "none") not in RULES:
    raise ConfigError(
      f"{where}: early_stop takes {sorted(_EARLY_STOP)} with rule in {RULES}, "
      f"got {stop}"
    )
  spec["early_stop"] = {"rule": "none", "min_trials": 2, "grace_evals": 1, "eta": 2}
  spec["early_stop"].update(stop)
  if spec.get("mode", "min") not in ("min", "max"):
    raise ConfigError(f"{where}: mode must be 'min' or 'max', got {spec['mode']!r}")
  if spec["population"] and method == "optuna":
    raise ConfigError(f"{where}: population mode needs a grid or random sweep")
  return spec


def set_key(config: ml_collections.ConfigDict, key: str, value: Any) -> None:
  """`config.<key> = value` for a dotted key that must already exist."""
  node, parts = config, key.split(".")
  for i, part in enumerate(parts):
    if not isinstance(node, ml_collections.ConfigDict) or part not in node:
      have = sorted(node) if isinstance(node, ml_collections.ConfigDict) else []
      where = ".".join(parts[:i]) or "the config"
      raise ConfigError(
        f"sweep parameter {key!r} is not a config key: {where} has no {part!r} "
        f"(its keys: {have})"
      )
    if i < len(parts) - 1:
      node = node[part]
  try:
    with node.unlocked():
      node[parts[-1]] = value
  except TypeError as e:
    raise ConfigError(f"sweep parameter {key!r} = {value!r}: {e}") from e


def apply_overrides(
  config: ml_collections.ConfigDict, overrides: dict[str, Any]
) -> ml_collections.ConfigDict:
  """A copy of `config` with `overrides` (dotted key -> value) set."""
  config = copy.deepcopy(config)
  for key, value in overrides.items():
    set_key(config, key, value)
  return config


def _format(value: Any) -> str:
  if isinstance(value, float):
    return f"{value:.4g}"
  return str(value)


def trial_name(overrides: dict[str, Any]) -> str:
  """A directory name from the overrides, e.g. `learning_rate=0.003,dropout=0.1`.

  Keys are shortened to their last component unless two would collide.
  """
  last = [k.rsplit(".", 1)[-1] for k in overrides]
  parts = []
  for key, short in zip(overrides, last):
    label = short if last.count(short) == 1 else key
    parts.append(f"{label}={_format(overrides[key])}")
  return re.sub(r"[^A-Za-z0-9._=,+-]", "_", ",".join(parts))


def _sample(dist: Distribution, rng: np.random.Generator) -> Any:
  if isinstance(dist, list):
    return dist[int(rng.integers(len(dist)))]
  if isinstance(dist, Uniform):
    return float(rng.uniform(dist.low, dist.high))
  if isinstance(dist, LogUniform):
    return float(math.exp(rng.uniform(math.log(dist.low), math.log(dist.high))))
  return int(rng.integers(dist.low, dist.high + 1))


def override_sets(spec: dict[str, Any]) -> list[dict[str, Any]]:
  """The overrides of every trial of a grid or random sweep, in run order."""
  params = spec["parameters"]
  if spec["method"] == "grid":
    keys = list(params)
    return [dict(zip(keys, combo)) for combo in itertools.product(*params.values())]
  rng = np.random.default_rng(spec["seed"])
  return [
    {k: _sample(d, rng) for k, d in params.items()} for _ in range(spec["num_trials"])
  ]


def make_trial(
  config: ml_collections.ConfigDict, overrides: dict[str, Any], taken: set[str]
) -> Trial:
  """The trial of `overrides`, its name made unique against `taken`."""
  name = base = trial_name(overrides)
  n = 2
  while name in taken:
    name, n = f"{base}+{n}", n + 1
  taken.add(name)
  return Trial(name, dict(overrides), apply_overrides(config, overrides))


def plan(config: ml_collections.ConfigDict, spec: dict[str, Any]) -> list[Trial]:
  """Every trial of a grid or random sweep, each config built (and so its
  keys checked) before anything runs."""
  taken: set[str] = set()
  return [make_trial(config, o, taken) for o in override_sets(spec)]
