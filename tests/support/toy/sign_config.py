"""Config of the out-of-library toy task `tests/support/toy/sign_task.py`.

python -m lstm_jax.main --config=tests/support/toy/sign_config.py --workdir=/tmp/sign
"""

import ml_collections

from experiments import base
from lstm_jax.nn.layers import lstm_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  del arg
  config = base.get_config()
  config.task = "tests.support.toy.sign_task"
  config.data = ml_collections.ConfigDict()
  # Longest sequence (steps); shorter ones are right-padded.
  config.data.seq_len = 12
  # Shortest sequence.
  config.data.min_len = 3
  # Rows per batch.
  config.data.batch_size = 32
  # Examples in each of the validation and test splits.
  config.data.eval_examples = 256
  config.model = ml_collections.ConfigDict()
  # The LSTM that reads the sequence.
  config.model.lstm = lstm_config(hidden_size=16)
  config.optim.learning_rate = 1e-2
  config.optim.warmup_steps = 5
  config.train.steps = 120
  config.train.log_every = 20
  config.train.eval_every = 40
  config.checkpoint.every_steps = 40
  config.checkpoint.best_metric = "eval/accuracy"
  config.checkpoint.best_mode = "max"
  return config
