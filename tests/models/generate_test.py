"""generate.py: scan-with-carry generation equals decoding the growing prefix;
reader.open_run on a directory without a run."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lstm_jax.data.text import Vocab
from lstm_jax.errors import ConfigError, LstmJaxError
from lstm_jax.models import generate
from lstm_jax.models.lm import LanguageModel
from lstm_jax.nn.layers import LSTM
from lstm_jax.runs import reader

VOCAB = Vocab(list(" abcdefgh"))


@pytest.fixture(scope="module")
def model_and_params():
  model = LanguageModel(
    vocab_size=len(VOCAB), embed_dim=8, lstm=LSTM(hidden_size=16, num_layers=2)
  )
  params = jax.jit(model.init)(
    jax.random.key(1), {"inputs": jnp.zeros((1, 4), jnp.int32)}
  )
  # Sharpen the output layer so that no two logits are near a tie.
  params = jax.tree_util.tree_map_with_path(
    lambda p, x: x * 8.0 if "out" in jax.tree_util.keystr(p) else x, params["params"]
  )
  return model, params


def test_greedy_equals_step_by_step_decode(model_and_params):
  model, params = model_and_params
  prompt, length = "abc a", 15
  out = generate.sample_text(
    params, model, VOCAB, prompt, length, 0.0, jax.random.key(0)
  )
  assert len(out) == length
  # The key does not matter at temperature 0.
  again = generate.sample_text(
    params, model, VOCAB, prompt, length, 0.0, jax.random.key(9)
  )
  assert again == out
  # Reference: re-run the model from scratch on the prefix for every new
  # character. The LSTM is causal, so the prefix sits in a fixed-size buffer
  # (one compilation) and the logits at its last position ignore what follows.
  buffer = np.zeros((1, len(prompt) + length), np.int32)
  buffer[0, : len(prompt)] = VOCAB.encode(prompt)
  logits_fn = jax.jit(lambda x: model.apply({"params": params}, {"inputs": x})[0])
  for t in range(len(prompt), len(prompt) + length):
    buffer[0, t] = int(jnp.argmax(logits_fn(jnp.asarray(buffer))[0, t - 1]))
  assert out == VOCAB.decode(buffer[0, len(prompt) :])


def test_temperature_sampling_is_reproducible(model_and_params):
  model, params = model_and_params
  a = generate.sample_text(params, model, VOCAB, "ab", 40, 1.0, jax.random.key(3))
  b = generate.sample_text(params, model, VOCAB, "ab", 40, 1.0, jax.random.key(3))
  c = generate.sample_text(params, model, VOCAB, "ab", 40, 1.0, jax.random.key(4))
  assert a == b and a != c
  assert set(a) <= set(VOCAB.chars)


def test_each_batched_row_equals_its_unbatched_sample(model_and_params):
  model, params = model_and_params
  prompts = jnp.array([[1, 2], [3, 4], [5, 5]], jnp.int32)
  # Greedy: no randomness, so each row must be what the row alone gives.
  batched = np.asarray(
    generate.generate(params, model, prompts, 6, 0.0, jax.random.key(0))
  )
  assert batched.shape == (3, 6) and batched.dtype == np.int32
  for row in range(3):
    alone = generate.generate(
      params, model, prompts[row : row + 1], 6, 0.0, jax.random.key(0)
    )
    np.testing.assert_array_equal(batched[row], np.asarray(alone)[0])
  assert len({tuple(r) for r in batched}) > 1  # the rows do differ


def test_prompt_with_unknown_characters(model_and_params):
  model, params = model_and_params
  with pytest.raises(ConfigError, match=r"\['x', 'z'\]"):
    generate.sample_text(params, model, VOCAB, "abzx", 5, 0.0, jax.random.key(0))
  with pytest.raises(ConfigError, match="empty"):
    generate.sample_text(params, model, VOCAB, "", 5, 0.0, jax.random.key(0))


def test_length_and_temperature_checked(model_and_params):
  model, params = model_and_params
  key = jax.random.key(0)
  with pytest.raises(ConfigError, match="temperature must be >= 0, got nan"):
    generate.sample_text(params, model, VOCAB, "ab", 5, float("nan"), key)
  with pytest.raises(ConfigError, match="length must be >= 0, got -1"):
    generate.sample_text(params, model, VOCAB, "ab", -1, 0.0, key)
  assert generate.sample_text(params, model, VOCAB, "ab", 0, 0.0, key) == ""


def test_open_run_without_a_run(tmp_path):
  with pytest.raises(LstmJaxError, match="does not hold a training run"):
    reader.open_run(str(tmp_path))
  assert list(tmp_path.iterdir()) == []  # a reader writes nothing
