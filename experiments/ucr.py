r"""UCR/UEA time-series classification: a shipped set by NAME, or any .ts pair.

  python -m lstm_jax.main --config=experiments/ucr.py:GunPoint --workdir=runs/gp
  python -m lstm_jax.main --config=experiments/ucr.py:GunPoint,tiny --workdir=/tmp/gp
  python -m lstm_jax.main --config=experiments/ucr.py \
      --config.data.train_path=X_TRAIN.ts --config.data.test_path=X_TEST.ts \
      --workdir=runs/x

NAME is looked up inside the installed aeon/sktime wheel (nothing is
downloaded); an unknown NAME lists the shipped ones. The official split is
kept; validation is a stratified part of the training file. Test accuracy is
computed once, on the best checkpoint by validation accuracy (per-dataset
budgets and flags of the benchmark: ENTRIES in benchmarks/tasks.py).
"""

import ml_collections
from ml_collections import config_dict

from experiments import base
from lstm_jax.nn.layers import lstm_config

# The `:variant`s of get_config (listed by `python -m lstm_jax.main --help`).
VARIANTS = ("NAME", "tiny", "NAME,tiny")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """`arg` is "", "tiny", "NAME" or "NAME,tiny"."""
  variant = base.parse_variants(arg, "ucr", choices=None)

  config = base.get_config()
  config.task = "ucr"

  config.data = ml_collections.ConfigDict()
  # A set shipped in aeon/sktime (GunPoint, ItalyPowerDemand, ArrowHead,
  # BasicMotions, JapaneseVowels, ...); ignored when the paths are set.
  config.data.name = variant.choice or config_dict.placeholder(str)
  # Official train and test .ts files (both or neither).
  config.data.train_path = config_dict.placeholder(str)
  config.data.test_path = config_dict.placeholder(str)
  # Fraction of each class of the train file held out for validation.
  config.data.valid_fraction = 0.2
  # Missing values: unset = an error naming file and line; "zero" or "ffill".
  config.data.fill_missing = config_dict.placeholder(str)
  # Series per training batch (epochs are seeded permutations).
  config.data.batch_size = 16
  # Series per validation/test batch.
  config.data.eval_batch_size = 256
  # Training-batch augmentation (lstm_jax/data/ts_augment.py), in units of the
  # normalised inputs: additive Gaussian noise per value, and a N(1, std^2)
  # magnitude factor per series and channel. 0 = off.
  config.data.jitter_std = 0.0
  config.data.scale_std = 0.0

  config.model = ml_collections.ConfigDict()
  # The LSTM (keys: lstm_jax.nn.layers.lstm_config); bidirectional reads the
  # whole series both ways before the readout.
  config.model.lstm = lstm_config(hidden_size=64, bidirectional=True)
  # Readout over real steps: "mean", "max" or "last".
  config.model.pooling = "mean"
  # Dropout on the pooled features.
  config.model.dropout = 0.1
  # Filters of an FCN branch beside the LSTM (LSTM-FCN, Karim et al. 2018;
  # lstm_jax/models/fcn.py; the papers use 128); 0 = the LSTM alone.
  config.model.fcn_width = 0
  # Non-overlapping patches of this many steps are the LSTM's inputs (251
  # ArrowHead steps -> 51 of 5 x channels); values are regrouped, never
  # resampled, and a patch is real when any of its steps is. 1 = off.
  config.model.patch = 1

  config.optim.learning_rate = 3e-3
  config.optim.warmup_steps = 50
  config.optim.weight_decay = 1e-4
  config.train.steps = 2000
  config.train.log_every = 50
  config.train.eval_every = 100
  config.checkpoint.every_steps = 100
  config.checkpoint.best_metric = "eval/accuracy"
  config.checkpoint.best_mode = "max"

  if "tiny" in variant.flags:
    base.tiny(config)
    config.model.lstm.hidden_size = 16
    config.model.dropout = 0.0
  return config
