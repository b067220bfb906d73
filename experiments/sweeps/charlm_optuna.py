r"""Optuna (TPE) over the tiny char-LM's learning rate and dropout.

  python -m lstm_jax.sweep --config=experiments/charlm.py:tiny \
      --sweep=experiments/sweeps/charlm_optuna.py --workdir=runs/optuna

Needs `pip install optuna`; Optuna's MedianPruner hears eval/bpc at each eval.
"""

from lstm_jax.sweep.spec import LogUniform


def get_sweep() -> dict:
  return {
    "method": "optuna",
    "parameters": {
      "optim.learning_rate": LogUniform(1e-3, 3e-2),
      "model.lstm.dropout": [0.0, 0.1, 0.2],
    },
    "num_trials": 4,
    "seed": 0,
    "metric": "eval/bpc",
    "early_stop": {"rule": "median", "min_trials": 2, "grace_evals": 1},
  }
