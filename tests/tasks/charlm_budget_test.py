"""The char-LM's data-scaled budget (`data.min_epochs`, tasks/charlm.py)."""

import math

import numpy as np
import pytest

from experiments import charlm
from lstm_jax.errors import ConfigError
from lstm_jax.tasks import charlm as task


def test_builtin_corpus_keeps_the_default_900_steps():
  config = charlm.get_config()
  task.make_datasets(config)
  assert config.train.steps == 900  # 5 passes would be only 256 steps


@pytest.fixture(scope="module")
def big_corpus(tmp_path_factory):
  rng = np.random.default_rng(0)
  n = 2_000_000
  letters = np.array(list("Thabcdefgij \n"))  # holds the sample prompt "The "
  path = tmp_path_factory.mktemp("budget") / "big.txt"
  path.write_text("".join(letters[rng.integers(0, len(letters), n)]))
  return str(path), n


def test_larger_corpus_gets_min_epochs_passes(big_corpus):
  path, n = big_corpus
  config = charlm.get_config()
  config.data.path = path
  task.make_datasets(config)
  train_chars = n - round(n * 0.1)  # the last 10% is validation
  # 5 passes of 64 windows x 128 characters: 1,099 steps, more than 900.
  assert config.train.steps == math.ceil(5 * train_chars / (64 * 128)) == 1099


def test_min_epochs_zero_is_exactly_train_steps(big_corpus):
  config = charlm.get_config()
  config.data.path, config.data.min_epochs = big_corpus[0], 0.0
  task.make_datasets(config)
  assert config.train.steps == 900


@pytest.mark.parametrize("bad", [-1.0, float("nan")])
def test_bad_min_epochs_names_the_key(bad):
  config = charlm.get_config()
  config.data.min_epochs = bad
  with pytest.raises(ConfigError, match="data.min_epochs"):
    task.validate(config)
