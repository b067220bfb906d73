r"""Character-level LSTM language model on the built-in corpus.

  python -m lstm_jax.main --config=experiments/charlm.py --workdir=runs/charlm
  python -m lstm_jax.main --config=experiments/charlm.py:tiny --workdir=/tmp/tiny
  python -m lstm_jax.main --config=experiments/charlm.py \
      --config.data.path=my.txt --workdir=runs/mine

The default corpus is Python's `pydoc_data.topics` (~465k characters); the
last 10% is validation. The default run is sized for about 12 minutes on two
CPU cores and ends by printing a sample and the validation bits per character.
"""

from experiments import base


def get_config(arg: str | None = None):
  """The char-LM config; `arg="tiny"` is a seconds-long smoke-test variant."""
  config = base.get_config()
  config.task = "charlm"

  config.data.seq_len = 128
  config.data.batch_size = 64
  config.data.eval_batch_size = 64

  config.model.embed_dim = 64
  config.model.hidden_size = 512
  config.model.num_layers = 1
  config.model.dropout = 0.1
  config.model.dtype = "bfloat16"

  config.optim.learning_rate = 2e-3
  config.optim.warmup_steps = 100
  config.optim.b2 = 0.99
  config.optim.weight_decay = 0.01

  config.train.steps = 1800
  config.train.log_every = 50
  config.train.eval_every = 300
  config.checkpoint.every_steps = 300

  if arg == "tiny":
    config.data.seq_len = 32
    config.data.batch_size = 16
    config.data.eval_batch_size = 16
    config.model.embed_dim = 16
    config.model.hidden_size = 64
    config.model.dtype = "float32"
    config.optim.learning_rate = 1e-2
    config.optim.warmup_steps = 5
    config.train.steps = 150
    config.train.log_every = 10
    config.train.eval_every = 50
    config.train.eval_batches = 4
    config.train.sample_length = 60
    config.checkpoint.every_steps = 50
  elif arg:
    raise ValueError(f"unknown charlm variant {arg!r}; use 'tiny' or nothing")
  return config
