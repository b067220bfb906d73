"""Config of the long-range toy task `tests/support/toy/recall_task.py` (T = 400).

python -m lstm_jax.main --config=tests/support/toy/recall_config.py --workdir=/tmp/recall \
    --config.diagnostics.every_steps=5
"""

import ml_collections

from experiments import base
from lstm_jax.nn.layers import lstm_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  del arg
  config = base.get_config()
  config.task = "tests.support.toy.recall_task"
  config.data = ml_collections.ConfigDict()
  # Sequence length: the first input must be recalled this many steps later.
  config.data.seq_len = 400
  # Rows per batch.
  config.data.batch_size = 16
  config.model = ml_collections.ConfigDict()
  # The LSTM that reads the sequence.
  config.model.lstm = lstm_config(hidden_size=16)
  config.optim.warmup_steps = 2
  config.train.steps = 10
  config.train.log_every = 5
  config.train.eval_every = 10
  config.checkpoint.every_steps = 10
  config.checkpoint.best_metric = "eval/loss"
  return config
