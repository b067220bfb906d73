"""Sequence tagger: token embedding -> LSTM -> logits at every step.

The copy-memory task's network (`lstm_jax.tasks.copy_memory`); any task whose
inputs are token ids and whose targets are one class per step can use it::

  model = SequenceTagger(lstm=lstm_jax.LSTM(128), vocab_size=10)
  logits, finals = model.apply(variables, {"inputs": ids, "mask": mask})
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from lstm_jax.nn.layers import LSTM


class SequenceTagger(nn.Module):
  """Embedding -> unidirectional or bidirectional LSTM -> per-step logits.

  Attributes:
    lstm: the LSTM stack.
    vocab_size: number of input tokens, which is also the number of output
      classes.
    embed_dim: embedding width.
  """

  lstm: LSTM
  vocab_size: int
  embed_dim: int = 16

  @nn.compact
  def __call__(
    self, batch: dict[str, Any], carry=None, deterministic: bool = True
  ) -> tuple[jax.Array, Any]:
    """Logits for every step.

    Args:
      batch: "inputs" <int>[batch, time] token ids, optional "mask"
        <bool>[batch, time] (true for real steps).
      carry: unused; each call starts from a zero carry.
      deterministic: no dropout when true.

    Returns:
      (<float32>[batch, time, vocab_size] logits, the LSTM's final carries).
    """
    del carry
    x = nn.Embed(self.vocab_size, self.embed_dim)(batch["inputs"])
    y, finals = self.lstm(x, mask=batch.get("mask"), deterministic=deterministic)
    return nn.Dense(self.vocab_size, name="out")(y.astype(jnp.float32)), finals
