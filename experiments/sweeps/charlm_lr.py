r"""A small grid over the tiny char-LM's learning rate and dropout (4 trials).

  python -m lstm_jax.sweep --config=experiments/charlm.py:tiny \
      --sweep=experiments/sweeps/charlm_lr.py --workdir=runs/sweep

Trials that trail the median of the finished ones at an eval are stopped.
"""


def get_sweep() -> dict:
  return {
    "method": "grid",
    "parameters": {
      "optim.learning_rate": [3e-3, 1e-2],
      "model.lstm.dropout": [0.0, 0.1],
    },
    "metric": "eval/bpc",
    "mode": "min",
    "early_stop": {"rule": "median", "min_trials": 2, "grace_evals": 1},
  }
