"""Runs the tiny char-LM under several parallel configs in one process.

  python tests/support/parallel_runs.py OUT_DIR NAME=KEY=VALUE;KEY=VALUE ...

Each NAME runs `train.train_and_evaluate` in OUT_DIR/NAME with the shared
overrides of `BASE` plus its own, then writes OUT_DIR/NAME.npz: the train
loss of every step and the final parameters (gathered to the host). One
process amortises JAX's start-up and the multi-device compile cache over
the configurations (tests/parallel/data_parallel_test.py).
"""

from __future__ import annotations

import ast
import os
import sys

import jax
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

from experiments import charlm  # noqa: E402
from lstm_jax.training import metrics, train  # noqa: E402
from lstm_jax.util.treepath import path_name  # noqa: E402
from lstm_jax.workdir import checkpoint  # noqa: E402

# Dropout 0: pmap draws its masks per device (lstm_jax/parallel/pmap_step.py).
BASE = {
  "train.steps": 4,
  "train.log_every": 1,
  "train.eval_every": 4,
  "train.eval_batches": 1,
  "sample.length": 0,
  "model.lstm.dropout": 0.0,
  "checkpoint.every_steps": 2,
  "optim.warmup_steps": 2,
  # SGD + momentum: an update linear in the gradient, so runs that sum the
  # gradient in another order differ by a bound the tests can state
  # (tests/support/tolerances.py, sgd_params_tol); the momentum is optimizer
  # state for ZeRO-1 to shard.
  "optim.name": "sgd",
}


def config_with(overrides: dict[str, object]):
  config = charlm.get_config("tiny")
  for key, value in {**BASE, **overrides}.items():
    *sections, name = key.split(".")
    node = config
    for section in sections:
      node = node[section]
    node[name] = value
  return config


def parse(spec: str) -> tuple[str, dict[str, object]]:
  name, _, rest = spec.partition("=")
  overrides = {}
  for item in filter(None, rest.split(";")):
    key, _, value = item.partition("=")
    try:
      overrides[key] = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      overrides[key] = value
  return name, overrides


def run(out: str, name: str, overrides: dict[str, object]) -> dict[str, object]:
  workdir = os.path.join(out, name)
  results = train.train_and_evaluate(config_with(overrides), workdir)
  records = metrics.read_jsonl(os.path.join(workdir, "metrics.jsonl"))
  losses = [r["loss"] for r in records if r["split"] == "train"]
  manager = checkpoint.make_manager(workdir, config_with(overrides), read_only=True)
  state = checkpoint.restore_step(manager, results["step"], None)
  manager.close()
  flat = jax.tree_util.tree_flatten_with_path(state["params"])[0]
  params = {path_name(p): np.asarray(x) for p, x in flat}
  if jax.process_index() == 0:
    np.savez(os.path.join(out, name + ".npz"), losses=np.asarray(losses), **params)
  return results


if __name__ == "__main__":
  for spec in sys.argv[2:]:
    name, overrides = parse(spec)
    print(name, run(sys.argv[1], name, overrides)["step"], flush=True)
