"""`build.with_model_axis` sets the mesh's "model" size on every LSTM a task's
model holds, and nothing else."""

from __future__ import annotations

import flax.linen as nn

from lstm_jax.nn.layers import LSTM
from lstm_jax.training import build


class _Pair(nn.Module):
  encoder: nn.Module
  decoders: tuple[nn.Module, ...]
  head: nn.Module
  width: int = 3


def test_with_model_axis_reaches_nested_lstms_and_keeps_the_rest():
  model = _Pair(
    encoder=LSTM(8, num_layers=2), decoders=(LSTM(8), nn.Dense(2)), head=nn.Dense(4)
  )
  tp = build.with_model_axis(model, 4)
  assert tp.encoder.model_axis == 4 and tp.decoders[0].model_axis == 4
  assert tp.encoder.num_layers == 2 and tp.width == 3
  assert tp.decoders[1] is model.decoders[1] and tp.head is model.head
  assert model.encoder.model_axis == 1  # the original is unchanged
  assert build.with_model_axis(model, 1) is model  # nothing to change
