r"""Copy memory (Arjovsky et al. 2016): 10 symbols across T blanks.

  python -m lstm_jax.main --config=experiments/copy.py --workdir=runs/copy
  python -m lstm_jax.main --config=experiments/copy.py \
      --config.data.seq_len=200 --workdir=runs/copy200
  python -m lstm_jax.main --config=experiments/copy.py:tiny --workdir=/tmp/copy

The memoryless baseline's cross-entropy is 10 log 8 / (T + 20); the target is
below 10% of it (`eval/ce_ratio` < 0.1).

Not met yet. Measured (seed 0, T=100, the shared 2-core CPU): the first
command (chrono, Adam 2e-3, 3000 steps) sits on the memoryless plateau
(ratio 1.00) until step ~2000 and ends at test ratio 0.968 (copy accuracy
0.21, chance 0.125); 6.7 min wall, 2.5 min CPU, ~7 steps/s. With
--config.optim.learning_rate=1e-2 --config.train.steps=1500 it leaves the
plateau by step 750 and ends at 0.946 (3.5 min wall). Leaving the plateau
is the slow part of this task for LSTMs (Arjovsky et al. 2016); reaching
0.1 needs a longer run (many thousand steps) than this budget allowed.
"""

import ml_collections

from experiments import base
from lstm_jax.layers import lstm_config

# The `:variant`s of get_config (listed by `python -m lstm_jax.main --help`).
VARIANTS = ("tiny", "plain")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The copy-memory config; `arg="tiny"` trains in seconds."""
  config = base.get_config()
  config.task = "copy_memory"

  config.data = ml_collections.ConfigDict()
  # T: blanks between the symbols and the recall (sequence length T + 20).
  config.data.seq_len = 100
  # Sequences per training batch.
  config.data.batch_size = 64
  # Validation batches (fixed, from steps no training run reaches).
  config.data.eval_batches = 4
  # Test batches, scored once on the best checkpoint.
  config.data.test_batches = 8

  config.model = ml_collections.ConfigDict()
  # Width of the symbol embedding.
  config.model.embed_dim = 16
  # The LSTM (keys: lstm_jax.layers.lstm_config). Chrono init with T_max =
  # seq_len + 20, the whole sequence (a reference: it follows
  # --config.data.seq_len), so some cells hold a symbol across the T blanks
  # from the start; the `plain` variant keeps the
  # plain init (forget_bias 1).
  config.model.lstm = lstm_config(hidden_size=128, forget_bias=1.0)
  config.model.lstm.chrono_max_len = config.data.get_ref("seq_len") + 20

  config.optim.learning_rate = 2e-3
  config.optim.warmup_steps = 100
  config.optim.clip_norm = 1.0
  config.train.steps = 3000
  config.train.log_every = 50
  config.train.eval_every = 250
  config.checkpoint.every_steps = 250
  config.checkpoint.best_metric = "eval/ce_ratio"
  config.checkpoint.best_mode = "min"

  if arg == "tiny":
    config.data.seq_len = 10
    config.data.batch_size = 32
    config.data.eval_batches = 2
    config.data.test_batches = 2
    config.model.lstm.hidden_size = 32
    config.optim.learning_rate = 1e-2
    config.optim.warmup_steps = 5
    config.train.steps = 60
    config.train.log_every = 10
    config.train.eval_every = 20
    config.checkpoint.every_steps = 10
  elif arg == "plain":
    # The comparison run: the plain init (forget_bias 1, no chrono).
    config.model.lstm.chrono_max_len = None
  elif arg:
    raise ValueError(f"unknown copy variant {arg!r}; use 'tiny', 'plain' or nothing")
  return config
