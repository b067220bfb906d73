r"""The adding problem (Le et al. 2015 form) at sequence length T.

  python -m lstm_jax.main --config=experiments/adding.py --workdir=runs/adding
  python -m lstm_jax.main --config=experiments/adding.py \
      --config.data.seq_len=400 --workdir=runs/adding400
  python -m lstm_jax.main --config=experiments/adding.py:tiny --workdir=/tmp/add

Always predicting 1 has MSE 0.167; the target is < 0.01. Measured figures are
in benchmarks/RESULTS.md (`python benchmarks/tasks.py --only=adding`).

Measured (seed 0, chrono init, the shared 2-core CPU under load from other
jobs; CPU = user + sys of the whole run):
* T=200, the first command (3000 steps): test MSE 0.00015 (best checkpoint
  step 2750); validation MSE 0.0008 already at step 1000. 10.0 min wall,
  4.9 min CPU.
* T=400, the second command with --config.train.steps=2000: test MSE 0.00071
  (best step 2000); validation 0.0097 at step 1000. 18.2 min wall, 6.8 min
  CPU.
The `plain` variant (forget_bias 1, no chrono) is the vanishing-gradient
comparison (`adding_T400_plain` in benchmarks/tasks.py): the T=400 command
with `adding.py:plain` stays at the always-1 baseline, test MSE 0.168 after
2000 steps (validation 0.170, still falling slowly); 6.4 min wall, 6.4 min
CPU.
"""

import ml_collections

from experiments import base
from lstm_jax.nn.layers import lstm_config

# The `:variant`s of get_config (listed by `python -m lstm_jax.main --help`).
VARIANTS = ("tiny", "plain")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The adding-problem config; `arg="tiny"` trains in seconds."""
  variant = base.parse_variants(arg, "adding", flags=("tiny", "plain"))
  config = base.get_config()
  config.task = "adding"

  config.data = ml_collections.ConfigDict()
  # Sequence length T (two marked values, one in each half).
  config.data.seq_len = 200
  # Sequences per training batch.
  config.data.batch_size = 64
  # Validation batches (fixed, from steps no training run reaches).
  config.data.eval_batches = 8
  # Test batches, scored once on the best checkpoint.
  config.data.test_batches = 16

  config.model = ml_collections.ConfigDict()
  # The LSTM (keys: lstm_jax.nn.layers.lstm_config). Chrono init with T_max =
  # seq_len (a reference: it follows --config.data.seq_len) spreads the
  # forget gates' memory over 1..T steps, so gradient reaches the markers
  # from the first update; the `plain` variant
  # keeps the plain init (forget_bias 1).
  config.model.lstm = lstm_config(hidden_size=128, forget_bias=1.0)
  config.model.lstm.chrono_max_len = config.data.get_ref("seq_len")

  config.optim.learning_rate = 2e-3
  config.optim.warmup_steps = 100
  config.optim.clip_norm = 1.0
  config.train.steps = 3000
  config.train.log_every = 50
  config.train.eval_every = 250
  config.checkpoint.every_steps = 250
  config.checkpoint.best_metric = "eval/mse"
  config.checkpoint.best_mode = "min"

  if "tiny" in variant.flags:
    base.tiny(config, steps=60)
    config.data.seq_len = 20
    config.data.batch_size = 32
    config.data.eval_batches = 2
    config.data.test_batches = 2
    config.model.lstm.hidden_size = 16
  if "plain" in variant.flags:
    # The comparison run: the plain init (forget_bias 1, no chrono).
    config.model.lstm.chrono_max_len = None
  return config
