"""Language model: embedding -> LSTM stack -> dropout -> logits.

Built as `LanguageModel(vocab_size, embed_dim, tie_embeddings, lstm=LSTM(...))`
(the char-LM task builds the LSTM with `layers.lstm_from_config`). Like every
task model it is called on a batch dict and a carry::

  logits, carry = model.apply(variables, batch, carry=carry, deterministic=...)

The carry (`LMCarry`) holds the LSTM state of every layer plus the segment id
of the last real input of each row. When the next window's first input has a
different segment id (a new document, or the streams wrapped around), that
row's state is reset to zeros first. The LSTM resets inside a window by
itself; this covers the boundary between windows, which it cannot see.
"""

from __future__ import annotations

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from lstm_jax.nn.layers import LSTM
from lstm_jax.ops import regularisation as reg
from lstm_jax.ops.cell import LSTMCarry

Array = jax.Array


class LMCarry(NamedTuple):
  """State carried between windows.

  Attributes:
    lstm: one `LSTMCarry` per layer.
    segment: <int32>[batch] segment id of the last real input (0 = none yet).
  """

  lstm: tuple[LSTMCarry, ...]
  segment: Array


def _last_segment(segment_ids: Array, previous: Array) -> Array:
  """Segment id of each row's last real step, or `previous` if none."""
  t = jnp.arange(segment_ids.shape[1])
  last = jnp.max(jnp.where(segment_ids != 0, t, -1), axis=1)
  picked = jnp.take_along_axis(segment_ids, jnp.maximum(last, 0)[:, None], 1)[:, 0]
  return jnp.where(last >= 0, picked, previous)


class LanguageModel(nn.Module):
  """Character (or token) LSTM language model.

  Attributes:
    vocab_size: number of symbols (from the data, not the config).
    lstm: the unidirectional LSTM stack (its dtype sets the matmul dtype; the
      embedding, the output layer and the softmax stay float32: they are
      small and precision matters there). Its `dropout` also applies to the
      last layer's output, before the output layer.
    embed_dim: embedding width.
    tie_embeddings: the output layer is `h @ embedding.T` (+ bias). If the LSTM
      output width is not `embed_dim`, a linear projection to `embed_dim` comes
      first.
    embed_dropout: in training, the rate at which whole symbols (rows of the
      embedding matrix) are dropped for the batch (Merity et al., 2017); a
      tied output layer reads the undropped matrix.
  """

  vocab_size: int
  lstm: LSTM
  embed_dim: int = 64
  tie_embeddings: bool = False
  embed_dropout: float = 0.0

  def initialize_carry(self, batch: int) -> LMCarry:
    """Zero state for `batch` rows (no previous segment)."""
    return LMCarry(self.lstm.initialize_carry(batch), jnp.zeros((batch,), jnp.int32))

  @nn.compact
  def __call__(
    self,
    batch: dict[str, Array],
    carry: LMCarry | None = None,
    deterministic: bool = True,
  ) -> tuple[Array, LMCarry]:
    """Next-symbol logits.

    Args:
      batch: "inputs" <int32>[batch, time]; optional "mask" <bool>[batch,
        time] (false = padding) and "segment_ids" <int32>[batch, time]
        (0 = padding; the carry resets where the id changes).
      carry: state from the previous window; zeros if None.
      deterministic: disables dropout; otherwise needs a 'dropout' rng.

    Returns:
      logits <float32>[batch, time, vocab_size] and the carry after the window.
    """
    if self.lstm.bidirectional:
      raise ValueError("a language model's LSTM cannot be bidirectional")
    inputs = batch["inputs"]
    segment_ids = batch.get("segment_ids")
    if carry is None:
      carry = self.initialize_carry(inputs.shape[0])
    lstm_carry = carry.lstm
    if segment_ids is not None:
      new_doc = (carry.segment != 0) & (segment_ids[:, 0] != carry.segment)
      lstm_carry = jax.tree.map(
        lambda a: jnp.where(new_doc[:, None], jnp.zeros_like(a), a), lstm_carry
      )
    embed = nn.Embed(self.vocab_size, self.embed_dim, name="embed")
    if self.embed_dropout > 0 and not deterministic:
      table = reg.embedding_dropout(
        self.make_rng("dropout"), self.embed_dropout, embed.embedding
      )
      x = jnp.take(table, inputs, axis=0)
    else:
      x = embed(inputs)
    y, finals = self.lstm(
      x,
      mask=batch.get("mask"),
      segment_ids=segment_ids,
      initial_carry=lstm_carry,
      deterministic=deterministic,
    )
    y = y.astype(jnp.float32)
    if self.lstm.dropout > 0:
      y = nn.Dropout(self.lstm.dropout)(y, deterministic=deterministic)
    if self.tie_embeddings:
      if y.shape[-1] != self.embed_dim:
        y = nn.Dense(self.embed_dim, use_bias=False, name="tie_proj")(y)
      bias = self.param("out_bias", nn.initializers.zeros, (self.vocab_size,))
      logits = embed.attend(y) + bias
    else:
      logits = nn.Dense(self.vocab_size, name="out")(y)
    segment = carry.segment
    if segment_ids is not None:
      segment = _last_segment(segment_ids, segment)
    return logits, LMCarry(finals, segment)
