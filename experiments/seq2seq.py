r"""Encoder-decoder LSTM with attention on generated addition or reversal.

  python -m lstm_jax.main --config=experiments/seq2seq.py --workdir=runs/s2s
  python -m lstm_jax.main --config=experiments/seq2seq.py:reversal --workdir=runs/rev
  python -m lstm_jax.main --config=experiments/seq2seq.py:tiny --workdir=/tmp/s2s

`arg` is "" (= "addition_lsb"), "addition", "addition_lsb", "reversal",
"tiny" or e.g. "reversal,tiny". The test record holds greedy exact match on
held-out examples of the training lengths and on `data.extra` longer lengths
never seen in training.

Measured (seed 0, greedy, 200 held-out examples per length, 2 shared CPUs):

| problem (steps)          | held-out 1..max | by length            | longer (+1, +2)   |
| addition_lsb (6000)      | 0.9988          | 1, 1, 1, 0.995       | 0.065 (0.13, 0)   |
| addition_lsb (3000)      | 0.9487          |                      | 0.1175            |
| addition (6000)          | 0.9775          | 1, 1, 0.99, 0.92     | 0.035 (0.07, 0)   |
| addition (3000)          | 0.8588          | 1, 1, 0.845, 0.59    | 0.02 (0.04, 0)    |
| reversal (2000), 2 runs  | 1.0, 1.0        | 1 for lengths 1-8    | 0.4925 (0.985, 0),|
|                          |                 |                      | 0.4425 (0.885, 0) |

addition_lsb at 6000 steps: 2.0 CPU-minutes (5.3 min wall under load, ~21
steps/s); reversal is solved on validation by step 500. Lengths beyond
training barely generalise (the +2 length is 0 everywhere). The two reversal
runs share config and seed but one ran pinned to one core: XLA:CPU's results
depend on the cores a process may use (docs/training.md, the workdir), and the
longer lengths move with that last-bit difference.
"""

import ml_collections

from experiments import base
from lstm_jax.nn.layers import lstm_config

# The `:variant`s of get_config (listed by `python -m lstm_jax.main --help`).
VARIANTS = ("addition", "addition_lsb", "reversal", "tiny")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The seq2seq config; see the module docstring for `arg`."""
  variant = base.parse_variants(arg, "seq2seq", choices=VARIANTS[:3])
  problem = variant.choice or "addition_lsb"

  config = base.get_config()
  config.task = "seq2seq"

  config.data = ml_collections.ConfigDict()
  # "addition" ("123+45" -> "168"), "addition_lsb" (digits least significant
  # first: "321+54" -> "861"; the default, the carry then flows in emission
  # order: 0.999 vs 0.978 held-out at 6000 steps, 0.95 vs 0.86 at 3000) or
  # "reversal" ("abc" -> "cba").
  config.data.problem = problem
  # Training lengths: digits of the longer operand, or letters.
  config.data.min_len = 1
  config.data.max_len = 8 if problem == "reversal" else 4
  # Held-out lengths up to max_len + extra (never seen in training).
  config.data.extra = 2
  # Examples per training batch.
  config.data.batch_size = 64
  # Validation batches (training distribution, unreached steps).
  config.data.eval_batches = 8
  # Held-out test examples per length.
  config.data.test_per_length = 200

  config.model = ml_collections.ConfigDict()
  # Width of the shared token embedding.
  config.model.embed_dim = 32
  # The encoder (keys: lstm_jax.nn.layers.lstm_config).
  config.model.lstm = lstm_config(hidden_size=128, bidirectional=True)
  # The decoder: unidirectional, as many layers as the encoder.
  config.model.decoder_lstm = lstm_config(hidden_size=128)
  # Attention: "luong", "bahdanau" or "" (none).
  config.model.attention = "bahdanau"

  config.decode = ml_collections.ConfigDict()
  # Test decoding: 0 = greedy, > 0 samples at this softmax temperature.
  config.decode.temperature = 0.0

  config.optim.learning_rate = 3e-3
  config.optim.warmup_steps = 100
  config.train.steps = 2000 if problem == "reversal" else 6000
  config.train.log_every = 50
  config.train.eval_every = 250
  config.checkpoint.every_steps = 250
  config.checkpoint.best_metric = "eval/exact_match"
  config.checkpoint.best_mode = "max"

  if "tiny" in variant.flags:
    base.tiny(config)
    config.data.max_len = 3 if problem == "reversal" else 2
    config.data.extra = 1
    config.data.batch_size = 32
    config.data.eval_batches = 2
    config.data.test_per_length = 16
    config.model.embed_dim = 8
    config.model.lstm.hidden_size = 16
    config.model.decoder_lstm.hidden_size = 16
  return config
