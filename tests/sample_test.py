"""sample.py: scan-with-carry generation equals decoding the growing prefix."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lstm_jax import sample as sample_lib
from lstm_jax.data.text import Vocab
from lstm_jax.errors import ConfigError, LstmJaxError
from lstm_jax.models.lm import LanguageModel

VOCAB = Vocab(list(" abcdefgh"))


@pytest.fixture(scope="module")
def model_and_params():
  model = LanguageModel(
    vocab_size=len(VOCAB), embed_dim=8, hidden_size=16, num_layers=2
  )
  params = jax.jit(model.init)(
    jax.random.PRNGKey(1), {"inputs": jnp.zeros((1, 4), jnp.int32)}
  )
  # Sharpen the output layer so that no two logits are near a tie.
  params = jax.tree_util.tree_map_with_path(
    lambda p, x: x * 8.0 if "out" in jax.tree_util.keystr(p) else x, params["params"]
  )
  return model, params


def test_greedy_equals_step_by_step_decode(model_and_params):
  model, params = model_and_params
  prompt, length = "abc a", 15
  out = sample_lib.sample(
    params, model, VOCAB, prompt, length, 0.0, jax.random.PRNGKey(0)
  )
  assert len(out) == length
  # The key does not matter at temperature 0.
  again = sample_lib.sample(
    params, model, VOCAB, prompt, length, 0.0, jax.random.PRNGKey(9)
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
  a = sample_lib.sample(params, model, VOCAB, "ab", 40, 1.0, jax.random.PRNGKey(3))
  b = sample_lib.sample(params, model, VOCAB, "ab", 40, 1.0, jax.random.PRNGKey(3))
  c = sample_lib.sample(params, model, VOCAB, "ab", 40, 1.0, jax.random.PRNGKey(4))
  assert a == b and a != c
  assert set(a) <= set(VOCAB.chars)


def test_generate_batched_shapes(model_and_params):
  model, params = model_and_params
  tokens = sample_lib.generate(
    params, model, jnp.zeros((3, 2), jnp.int32), 5, 0.5, jax.random.PRNGKey(0)
  )
  assert tokens.shape == (3, 5) and tokens.dtype == jnp.int32
  assert np.all((np.asarray(tokens) >= 0) & (np.asarray(tokens) < len(VOCAB)))


def test_prompt_with_unknown_characters(model_and_params):
  model, params = model_and_params
  with pytest.raises(ConfigError, match=r"\['x', 'z'\]"):
    sample_lib.sample(params, model, VOCAB, "abzx", 5, 0.0, jax.random.PRNGKey(0))
  with pytest.raises(ConfigError, match="empty"):
    sample_lib.sample(params, model, VOCAB, "", 5, 0.0, jax.random.PRNGKey(0))


def test_load_run_without_a_run(tmp_path):
  with pytest.raises(LstmJaxError, match="does not hold a trained char-LM run"):
    sample_lib.load_run(str(tmp_path))
