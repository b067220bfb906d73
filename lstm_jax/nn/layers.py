"""Flax Linen modules: a thin shell that owns parameters and calls `lstm_jax.lstm_scan`.

`LSTMLayer` is one layer in one direction. `LSTM` stacks layers, optionally
bidirectional, with inter-layer dropout; it mirrors `torch.nn.LSTM` so that
`convert.py` can map weights both ways.

Variable layout of `LSTM` (what `convert.py` and `lstm_jax.nnx` rely on)::

  params/layer_{l}_{fwd,bwd}/{w_ih, w_hh, bias[, w_proj, peephole, ln_*]}

The LSTM's options are the fields of `spec.LayerOptions` / `spec.StackOptions`
(types, defaults and docs written there once), which the modules inherit as
their attributes; each module adds the few that are not config options
(`reverse`, `param_dtype`, the initializers, `model_axis`). `lstm_from_config` builds the
`LSTM` of a config section (`config.model.lstm`, from `lstm_config`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from lstm_jax.nn import spec, stack
from lstm_jax.nn.dtypes import compute_dtype
from lstm_jax.nn.initializers import layer_param_inits, lstm_bias, orthogonal_blocks
from lstm_jax.nn.spec import CELLS, LSTMSpec, lstm_config
from lstm_jax.ops.cell import LSTMCarry

__all__ = [
  "CELLS",
  "LSTM",
  "LSTMLayer",
  "LSTMSpec",
  "lstm_bias",
  "lstm_config",
  "lstm_from_config",
  "orthogonal_blocks",
  "zero_carries",
]

Array = jax.Array


def options_of(module: Any, names: Sequence[str]) -> dict[str, Any]:
  """A module's values of the options `names`, by name."""
  return {name: getattr(module, name) for name in names}


def zero_carries(
  batch: int, hidden_size: int, proj_size: int, count: int
) -> tuple[LSTMCarry, ...]:
  """`count` zero states `LSTMCarry(c [batch, H], h [batch, P or H])`, float32."""
  zero = LSTMCarry(
    jnp.zeros((batch, hidden_size), jnp.float32),
    jnp.zeros((batch, proj_size or hidden_size), jnp.float32),
  )
  return (zero,) * count


class LSTMLayer(spec.LayerOptions, nn.Module):
  """One LSTM layer in one direction over `[batch, time, features]`.

  Attributes:
    hidden_size, proj_size, cell, ...: the layer options, documented in
      `spec.LayerOptions` (inherited: `LSTMLayer(64, cell="peephole")`).
    reverse: run from the last real step back to the first.
    param_dtype: dtype of the parameters.
    kernel_init: init of `w_ih` and `w_proj`.
    recurrent_init: init of `w_hh`.
    model_axis: the size of the mesh axis "model" the module is traced under
      (from the config's `parallel.mesh_shape`, `lstm_jax.training.build`);
      > 1 runs the tensor-parallel scan (`lstm_jax.ops.tensor_parallel`).

  The regularisers among the options act only when `deterministic=False`.
  """

  reverse: bool = False
  param_dtype: Any = jnp.float32
  kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()
  recurrent_init: nn.initializers.Initializer = orthogonal_blocks()
  model_axis: int = 1

  @nn.compact
  def __call__(
    self,
    x: Array,
    mask: Array | None = None,
    segment_ids: Array | None = None,
    initial_carry: LSTMCarry | None = None,
    deterministic: bool = True,
    h_probe: Array | None = None,
  ) -> tuple[Array, LSTMCarry]:
    """Runs the layer.

    Args:
      x: <float>[batch, time, in_features].
      mask: <bool>[batch, time], true on real steps.
      segment_ids: <int>[batch, time], 0 on padding; carry resets between ids.
      initial_carry: `LSTMCarry(c [batch, H], h [batch, P or H])`.
      deterministic: disables the regularisers; otherwise (when a rate is
        set) needs a 'dropout' rng.
      h_probe: <float32>[batch, time, P or H] added to h after each step
        (gradient-flow diagnostics; takes the reference path, see
        `lstm_jax.ops.recurrent.lstm_scan_reference`).

    Returns:
      (outputs <dtype>[batch, time, P or H], final `LSTMCarry` in float32).
    """
    stack.check_input(x)
    inits = layer_param_inits(x.shape[-1], self, self.kernel_init, self.recurrent_init)
    params = {
      name: self.param(name, init, shape, self.param_dtype)
      for name, (init, shape) in inits.items()
    }
    masks = {}
    if not deterministic:
      params = self._drop_weights(params)
      masks = self._masks(*x.shape[:2])
    inputs = stack.Inputs(x, mask, segment_ids, initial_carry, h_probe)
    dtype = compute_dtype(self.dtype)
    return stack.layer_forward(
      self, params, inputs, masks, dtype, self.param_dtype, self.model_axis
    )

  def _next_key(self) -> Array:
    return self.make_rng("dropout")

  def _drop_weights(self, params: dict[str, Array]) -> dict[str, Array]:
    """`stack.drop_weights` (a method, so that tests can intercept it)."""
    return stack.drop_weights(self, params, self._next_key)

  def _masks(self, batch: int, time: int) -> dict[str, Array]:
    """`stack.step_masks` (a method, so that tests can intercept it)."""
    hid, out = self.hidden_size, self.proj_size or self.hidden_size
    return stack.step_masks(self, batch, time, hid, out, self._next_key)


class LSTM(spec.StackOptions, nn.Module):
  """A multi-layer, optionally bidirectional LSTM, like `torch.nn.LSTM`.

  Attributes:
    hidden_size, num_layers, bidirectional, dropout, ...: the options,
      documented in `spec.LayerOptions` (given to each `LSTMLayer`) and
      `spec.StackOptions` (inherited: `LSTM(384, num_layers=2)`).
    param_dtype: dtype of the parameters.
    kernel_init: init of `w_ih` and `w_proj`.
    recurrent_init: init of `w_hh`.
    model_axis: the size of the mesh axis "model" (see `LSTMLayer`).

  The regularisers act only when `deterministic=False`; the AR/TAR penalties
  are sown in the "penalties" collection (the train step adds them to the
  loss).
  """

  param_dtype: Any = jnp.float32
  kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()
  recurrent_init: nn.initializers.Initializer = orthogonal_blocks()
  model_axis: int = 1

  @classmethod
  def from_spec(cls, lstm_spec: LSTMSpec, **kwargs: Any) -> LSTM:
    """The module of a spec; `kwargs` sets the other attributes (e.g. `name`)."""
    return cls(**lstm_spec.options(), **kwargs)

  @property
  def num_directions(self) -> int:
    return 2 if self.bidirectional else 1

  def initialize_carry(self, batch: int) -> tuple[LSTMCarry, ...]:
    """Zero state: one `LSTMCarry` per (layer, direction), PyTorch's order."""
    count = self.num_layers * self.num_directions
    return zero_carries(batch, self.hidden_size, self.proj_size, count)

  @nn.compact
  def __call__(
    self,
    x: Array,
    mask: Array | None = None,
    segment_ids: Array | None = None,
    initial_carry: Sequence[LSTMCarry] | None = None,
    deterministic: bool = True,
    h_probe: Sequence[Array] | None = None,
  ) -> tuple[Array, tuple[LSTMCarry, ...]]:
    """Runs the stack.

    Args:
      x: <float>[batch, time, in_features].
      mask: <bool>[batch, time], true on real steps (padding anywhere).
      segment_ids: <int>[batch, time], 0 on padding; the carry resets at each
        new id, so several sequences can be packed in one row.
      initial_carry: one `LSTMCarry` per (layer, direction) in PyTorch's order
        (layer 0 forward, layer 0 backward, layer 1 forward, ...); zeros if None.
      deterministic: disables dropout; otherwise needs a 'dropout' rng.
      h_probe: one <float32>[batch, time, P or H] per (layer, direction), in
        the order of `initial_carry`, added to that layer's h after each step
        (see `LSTMLayer`); for gradient-flow diagnostics.

    Returns:
      outputs: <dtype>[batch, time, D * (P or H)], zero on padded steps.
      final carry: tuple of `LSTMCarry`, one per (layer, direction).
    """
    layer_options = options_of(self, spec.LAYER_OPTIONS)

    def layer(i: int, d: int, x: Array, carry: Any, probe: Any):
      return LSTMLayer(
        **layer_options,
        reverse=d == 1,
        param_dtype=self.param_dtype,
        kernel_init=self.kernel_init,
        recurrent_init=self.recurrent_init,
        model_axis=self.model_axis,
        name=stack.layer_name(i, d),
      )(x, mask, segment_ids, carry, deterministic=deterministic, h_probe=probe)

    x, finals, penalties = stack.stack_forward(
      self,
      layer,
      stack.Inputs(x, mask, segment_ids, initial_carry, h_probe),
      train=not deterministic,
      next_key=lambda: self.make_rng("dropout"),
      dropout=lambda y: nn.Dropout(self.dropout)(y, deterministic=False),
    )
    for name, value in penalties.items():
      self.sow("penalties", name, value)
    return x, finals


def lstm_from_config(cfg: Any, prefix: str = "model.lstm") -> LSTM:
  """The `LSTM` module of a config section from `lstm_config`, validated.

  Args:
    cfg: the section (a ConfigDict or a plain dict, e.g. from config.json).
    prefix: the section's path, used to name keys in errors.

  Raises:
    ConfigError: a key missing or unknown, a value out of range, of the wrong
      type or not one of the choices; the message names the key
      (`model.lstm.hidden_size must be >= 1, got 0`).
  """
  return LSTM.from_spec(LSTMSpec.from_config(cfg, prefix))
