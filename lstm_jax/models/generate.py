"""Autoregressive generation from a model with a carry: pure functions.

The prompt is run through the model once (priming the carry); then each new
token is drawn from softmax(logits / temperature) (temperature 0 takes the
argmax) and fed back, inside one `lax.scan` that carries the model's state, so
generating n tokens costs n single-step updates. Any model called as
`model.apply(variables, {"inputs": ids}, carry=...) -> (logits, carry)` works
(the char-LM's `LanguageModel`, for one). Reading a trained run from disk is
`lstm_jax.runs.reader`; the command line is `python -m lstm_jax.sample`.
"""

from __future__ import annotations

import functools
from typing import Any, Protocol

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lstm_jax import errors

Array = jax.Array


class Vocabulary(Protocol):
  """What `sample_text` needs of a vocabulary (e.g. `data.text.Vocab`)."""

  def missing(self, text: str) -> list[str]: ...
  def encode(self, text: str) -> np.ndarray: ...
  def decode(self, ids: np.ndarray) -> str: ...


@functools.partial(jax.jit, static_argnames=("model", "length", "temperature"))
def generate(
  params: Any,
  model: nn.Module,
  prompt_ids: Array,
  length: int,
  temperature: float,
  rng: Array,
) -> Array:
  """Continues `prompt_ids` <int32>[batch, prompt_len] by `length` tokens.

  Compiled once per (model, shapes, length, temperature).

  Returns:
    <int32>[batch, length] the generated tokens (the prompt excluded).
  """
  logits, carry = model.apply({"params": params}, {"inputs": prompt_ids})

  def step(state, key):
    last, carry = state
    if temperature == 0:
      token = jnp.argmax(last, axis=-1).astype(jnp.int32)
    else:
      token = jax.random.categorical(key, last / temperature).astype(jnp.int32)
    logits, carry = model.apply(
      {"params": params}, {"inputs": token[:, None]}, carry=carry
    )
    return (logits[:, -1], carry), token

  keys = jax.random.split(rng, length)
  _, tokens = jax.lax.scan(step, (logits[:, -1], carry), keys)
  return tokens.T


def sample_text(
  params: Any,
  model: nn.Module,
  vocab: Vocabulary,
  prompt: str,
  length: int,
  temperature: float,
  rng: Array,
) -> str:
  """Generates `length` characters after `prompt`; returns them (not the prompt).

  Raises:
    errors.ConfigError: the prompt is empty or has characters the vocabulary
      lacks (they are named), or `length` / `temperature` is negative or NaN.
  """
  if not prompt:
    raise errors.ConfigError("the prompt is empty; give at least one character.")
  missing = vocab.missing(prompt)
  if missing:
    raise errors.ConfigError(
      f"the prompt has characters that are not in the model's vocabulary: {missing}"
    )
  if not temperature >= 0:  # also catches NaN
    raise errors.ConfigError(f"temperature must be >= 0, got {temperature}")
  if length < 0:
    raise errors.ConfigError(f"length must be >= 0, got {length}")
  if length == 0:
    return ""
  ids = jnp.asarray(vocab.encode(prompt))[None]
  tokens = generate(params, model, ids, length, float(temperature), rng)
  return vocab.decode(np.asarray(tokens[0]))
