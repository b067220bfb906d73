"""The UCR task's model keys, checked before anything is read.

The default path itself (a user's own variable-length, multivariate .ts pair
by path, the candidates trained, ours the LSTM's choice, scored once) runs
through the CLI in tests/system/tiny_tasks_test.py."""

import re

import pytest

from experiments import ucr as ucr_experiment
from lstm_jax.errors import ConfigError
from lstm_jax.tasks import ucr as ucr_task


def test_bad_model_keys_name_the_key_and_the_choices():
  for key, value, message in [
    (
      "fcn_norm",
      "group",
      "model.fcn_norm must be one of ('layer', 'batch', 'sequence', 'none'), "
      "got 'group'",
    ),
    ("fcn_width", -1, "model.fcn_width must be >= 0, got -1"),
    ("pooling", "sum", "model.pooling must be one of"),
    (
      "data.normalization",
      "global",
      "data.normalization must be one of ('auto', 'train', 'series'), got 'global'",
    ),
  ]:
    config = ucr_experiment.get_config("tiny")
    section, _, key = key.rpartition(".")
    config[section or "model"][key] = value
    with pytest.raises(ConfigError, match=re.escape(message)):
      ucr_task.validate(config)


def test_valid_fraction_zero_is_allowed_but_not_with_the_kernel_ensemble():
  config = ucr_experiment.get_config("tiny")
  config.data.valid_fraction = 0.0
  ucr_task.validate(config)  # the whole training file trains
  config.data.valid_fraction = 1.0
  with pytest.raises(
    ConfigError, match=re.escape("data.valid_fraction must be in [0, 1), got 1.0")
  ):
    ucr_task.validate(config)
  config = ucr_experiment.get_config("GunPoint,ensemble")
  config.data.valid_fraction = 0.0
  with pytest.raises(
    ConfigError, match=r"model\.kernels=10000 .* data\.valid_fraction > 0"
  ):
    ucr_task.validate(config)


def test_batch_norm_cannot_rank_checkpoints():
  """The trainer's evaluations normalise by their batch's statistics, so a
  batch-norm FCN may not pick the tested checkpoint; the default (the last
  checkpoint) is fine."""
  config = ucr_experiment.get_config("tiny")
  config.model.fcn_norm = "batch"
  ucr_task.validate(config)
  config.checkpoint.best_metric = "eval/score"
  with pytest.raises(
    ConfigError, match=r"model\.fcn_norm='batch' .* checkpoint\.best_metric unset"
  ):
    ucr_task.validate(config)
