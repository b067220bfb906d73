"""NNX modules over the same pure functions as the Linen ones (`nn/stack.py`).

`LSTMLayer` and `LSTM` hold their parameters as `nnx.Param`s at the paths of
the Linen modules' parameter tree (`layer_{l}_{fwd,bwd}/w_ih`, ...), have the
options of `spec.LayerOptions` / `spec.StackOptions` as their attributes
(inherited, like the Linen modules'), and run `stack.layer_forward`
/ `stack.stack_forward`, hence `lstm_jax.lstm_scan` and every kernel it
dispatches to. `LSTMCell` is one step, for `nnx.RNN`.

Training mode: the regularisers (dropout, zoneout, ...) act when the module's
`deterministic` attribute is False (the NNX default), which `model.train()`
sets and `model.eval()` clears (a call may override it), with keys drawn from
the 'dropout' stream of the `nnx.Rngs` given at construction. The AR/TAR
penalties of a training call are sown as `Penalty` variables "ar" and "tar":
`(ys, carries), penalties = nnx.capture(model, Penalty)(x)`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from lstm_jax.nn import layers, spec, stack
from lstm_jax.nn.dtypes import compute_dtype
from lstm_jax.nn.initializers import layer_param_inits
from lstm_jax.ops.cell import LSTMCarry, input_projection, lstm_step

Array = jax.Array


class Penalty(nnx.Intermediate):
  """A training penalty sown by `LSTM` (AR, TAR), to add to the loss."""


def _set_options(
  module: nnx.Module, fields: type, hidden_size: int, options: dict[str, Any]
) -> None:
  """Sets (and checks) the options of `fields` (a `spec` options class that
  `module` inherits), defaults filled in.

  Raises:
    spec.LSTMOptionError (a ValueError): an option that the module does not
      take, or a bad value, named (`LSTM.cell must be one of [...], got 'gru'`).
  """
  names = [f.name for f in dataclasses.fields(fields)]
  unknown = sorted(set(options) - set(names))
  if unknown:
    raise spec.LSTMOptionError(
      f"{type(module).__name__} takes no option(s) {unknown}; options: "
      f"{sorted(set(names) - {'hidden_size'})}"
    )
  fields.__init__(module, hidden_size, **options)


def _dropout_stream(rngs: nnx.Rngs | None) -> nnx.RngStream | None:
  """A fork of the 'dropout' stream (or of 'default'), or None if neither."""
  if rngs is None:
    return None
  try:
    return rngs.dropout.fork()
  except (AttributeError, KeyError):
    return None


class _Params(nnx.Module):
  """The parameters of one layer or step (`LSTMLayer`, `LSTMCell`), made from
  its cell options (names and shapes as in the Linen `layers.LSTMLayer`)."""

  def _make_params(
    self,
    in_features: int,
    rngs: nnx.Rngs,
    param_dtype: Any,
    kernel_init: Callable | None,
    recurrent_init: Callable | None,
  ) -> None:
    inits = layer_param_inits(in_features, self, kernel_init, recurrent_init)
    for name, (init, shape) in inits.items():
      setattr(self, name, nnx.Param(init(rngs.params(), shape, param_dtype)))
    self.in_features = in_features
    self.param_dtype = param_dtype
    self.param_names = tuple(inits)

  def params(self) -> dict[str, Array]:
    """The parameters as the plain dict `lstm_jax.lstm_scan` takes."""
    return {name: getattr(self, name)[...] for name in self.param_names}


class LSTMLayer(spec.LayerOptions, _Params):
  """One LSTM layer in one direction over `[batch, time, features]` (NNX).

  Attributes:
    hidden_size, proj_size, cell, ...: the layer options, documented in
      `spec.LayerOptions` (inherited), as in the Linen `layers.LSTMLayer`.
    in_features: I, the input's last axis.
    reverse: run from the last real step back to the first.
    param_dtype: dtype of the parameters.
    deterministic: eval mode (True) or training mode (False, the NNX
      default); `train()` / `eval()` switch it.

  Args:
    in_features, hidden_size, reverse, param_dtype, deterministic: the
      attributes.
    rngs: 'params' initialises the weights; 'dropout' (or 'default') draws
      the regularisers' masks in training mode.
    kernel_init: init of `w_ih` and `w_proj` (default LeCun normal).
    recurrent_init: init of `w_hh` (default `orthogonal_blocks()`).
    **options: the other layer options (`spec.LayerOptions`).
  """

  def __init__(
    self,
    in_features: int,
    hidden_size: int,
    *,
    rngs: nnx.Rngs,
    reverse: bool = False,
    deterministic: bool = False,
    param_dtype: Any = jnp.float32,
    kernel_init: Callable | None = None,
    recurrent_init: Callable | None = None,
    **options: Any,
  ):
    _set_options(self, spec.LayerOptions, hidden_size, options)
    self._make_params(in_features, rngs, param_dtype, kernel_init, recurrent_init)
    self.reverse = reverse
    self.deterministic = deterministic
    self.rngs = _dropout_stream(rngs)

  def __call__(
    self,
    x: Array,
    mask: Array | None = None,
    segment_ids: Array | None = None,
    initial_carry: LSTMCarry | None = None,
    *,
    deterministic: bool | None = None,
    h_probe: Array | None = None,
  ) -> tuple[Array, LSTMCarry]:
    """Runs the layer; arguments and returns as the Linen
    `layers.LSTMLayer.__call__` (`deterministic` None: the module's mode)."""
    train = not (self.deterministic if deterministic is None else deterministic)
    params, masks = self.params(), {}
    if train:  # in the order of the Linen layer's draws
      next_key = _key_source(self.rngs, type(self).__name__)
      params = stack.drop_weights(self, params, next_key)
      hid, out = self.hidden_size, self.proj_size or self.hidden_size
      masks = stack.step_masks(self, *x.shape[:2], hid, out, next_key)
    inputs = stack.Inputs(x, mask, segment_ids, initial_carry, h_probe)
    dtype = compute_dtype(self.dtype)
    return stack.layer_forward(self, params, inputs, masks, dtype, self.param_dtype)


def _key_source(stream: nnx.RngStream | None, owner: str) -> Callable[[], Array]:
  def next_key() -> Array:
    if stream is None:
      raise ValueError(
        f"{owner} in training mode with a dropout rate > 0 needs a 'dropout' "
        "stream: pass rngs=nnx.Rngs(params=..., dropout=...), or call eval()"
      )
    return stream()

  return next_key


def _dropout(key: Array, rate: float, x: Array) -> Array:
  """Dropout as `flax.linen.Dropout`: zero with probability `rate`, else scale."""
  keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
  return jax.lax.select(keep, x / (1.0 - rate), jnp.zeros_like(x))


class LSTM(spec.StackOptions, nnx.Module):
  """A multi-layer, optionally bidirectional LSTM, like `torch.nn.LSTM` (NNX).

  The layers are attributes `layer_{l}_{fwd,bwd}` (`LSTMLayer`), so that the
  parameter state has the paths of the Linen `layers.LSTM`'s parameters
  (`linen_variables` / `load_linen_variables` convert).

  Attributes:
    hidden_size, num_layers, bidirectional, dropout, ...: the options,
      documented in `spec.LayerOptions` and `spec.StackOptions` (inherited),
      as in the Linen `layers.LSTM`.
    deterministic: eval mode (True) or training mode (False, the NNX
      default); `train()` / `eval()` switch it.

  Args:
    in_features: I, the input's last axis.
    hidden_size, deterministic: the attributes.
    rngs: 'params' initialises the weights; 'dropout' (or 'default') draws
      the regularisers' masks in training mode.
    param_dtype, kernel_init, recurrent_init: passed to each `LSTMLayer`.
    **options: the other options (`spec.StackOptions`).
  """

  def __init__(
    self,
    in_features: int,
    hidden_size: int,
    *,
    rngs: nnx.Rngs,
    deterministic: bool = False,
    param_dtype: Any = jnp.float32,
    kernel_init: Callable | None = None,
    recurrent_init: Callable | None = None,
    **options: Any,
  ):
    _set_options(self, spec.StackOptions, hidden_size, options)
    self.deterministic = deterministic
    self.rngs = _dropout_stream(rngs)
    layer_options = layers.options_of(self, spec.LAYER_OPTIONS[1:])
    directions = 2 if self.bidirectional else 1
    features = in_features
    for i in range(self.num_layers):
      for d in range(directions):
        layer = LSTMLayer(
          features, hidden_size, rngs=rngs, reverse=d == 1, param_dtype=param_dtype,
          kernel_init=kernel_init, recurrent_init=recurrent_init,
          deterministic=deterministic, **layer_options,
        )  # fmt: skip
        setattr(self, stack.layer_name(i, d), layer)
      features = directions * (self.proj_size or hidden_size)

  @classmethod
  def from_spec(cls, lstm_spec: spec.LSTMSpec, in_features: int, **kwargs) -> LSTM:
    """The module of a spec (e.g. `LSTMSpec.from_config(config.model.lstm)`);
    `kwargs` are the other arguments (`rngs`, ...)."""
    return cls(in_features, **lstm_spec.options(), **kwargs)

  @classmethod
  def from_linen(cls, module: layers.LSTM, in_features: int, **kwargs) -> LSTM:
    """The NNX twin of a Linen `layers.LSTM` (same options and initializers;
    load its variables with `load_linen_variables`)."""
    options = layers.options_of(module, spec.STACK_OPTIONS)
    inits = {
      "param_dtype": module.param_dtype,
      "kernel_init": module.kernel_init,
      "recurrent_init": module.recurrent_init,
    }
    return cls(in_features, **options, **{**inits, **kwargs})

  def initialize_carry(self, batch: int) -> tuple[LSTMCarry, ...]:
    """Zero state: one `LSTMCarry` per (layer, direction), PyTorch's order."""
    count = self.num_layers * (2 if self.bidirectional else 1)
    return layers.zero_carries(batch, self.hidden_size, self.proj_size, count)

  def __call__(
    self,
    x: Array,
    mask: Array | None = None,
    segment_ids: Array | None = None,
    initial_carry: Sequence[LSTMCarry] | None = None,
    *,
    deterministic: bool | None = None,
    h_probe: Sequence[Array] | None = None,
  ) -> tuple[Array, tuple[LSTMCarry, ...]]:
    """Runs the stack; arguments and returns as the Linen `layers.LSTM.__call__`
    (`deterministic` None: the module's mode).

    Returns:
      outputs: <dtype>[batch, time, D * (P or H)], zero on padded steps.
      final carry: tuple of `LSTMCarry`, one per (layer, direction).
    """
    if deterministic is None:
      deterministic = self.deterministic
    next_key = _key_source(self.rngs, type(self).__name__)

    def layer(i: int, d: int, x: Array, carry: Any, probe: Any):
      run = getattr(self, stack.layer_name(i, d))
      return run(
        x, mask, segment_ids, carry, deterministic=deterministic, h_probe=probe
      )

    x, finals, penalties = stack.stack_forward(
      self,
      layer,
      stack.Inputs(x, mask, segment_ids, initial_carry, h_probe),
      train=not deterministic,
      next_key=next_key,
      dropout=lambda y: _dropout(next_key(), self.dropout, y),
    )
    for name, value in penalties.items():
      self.sow(Penalty, name, value)
    return x, finals


class LSTMCell(spec.CellOptions, _Params, nnx.RNNCellBase):
  """One LSTM step, for `nnx.RNN` (`nnx.RNN(LSTMCell(16, 32, rngs=rngs))`).

  The same step as the scans (`ops.cell.lstm_step`) and the same parameters
  as `LSTMLayer` (names and shapes), but one time step per call; `nnx.RNN`
  loops it with `nnx.scan`. For whole sequences `LSTMLayer` is the faster path
  (fused backward, kernels) and handles padding, packing and regularisers.

  Attributes:
    hidden_size, proj_size, cell, forget_bias, chrono_max_len, dtype: the
      options of one step, documented in `spec.CellOptions` (inherited).
    in_features, param_dtype: as `LSTMLayer`.

  Args:
    in_features, hidden_size, param_dtype: the attributes.
    rngs, kernel_init, recurrent_init: as `LSTMLayer`.
    **options: the other cell options (`spec.CellOptions`).
  """

  def __init__(
    self,
    in_features: int,
    hidden_size: int,
    *,
    rngs: nnx.Rngs,
    param_dtype: Any = jnp.float32,
    kernel_init: Callable | None = None,
    recurrent_init: Callable | None = None,
    **options: Any,
  ):
    _set_options(self, spec.CellOptions, hidden_size, options)
    self._make_params(in_features, rngs, param_dtype, kernel_init, recurrent_init)

  def __call__(self, carry: LSTMCarry, x: Array) -> tuple[LSTMCarry, Array]:
    """One step: `carry` (c [*batch, H], h [*batch, P or H]), x [*batch, I]
    -> (new carry in float32, output h [*batch, P or H])."""
    params = self.params()
    dtype = compute_dtype(self.dtype)
    carry = LSTMCarry(*(jnp.asarray(a, jnp.float32) for a in carry))
    return lstm_step(params, carry, input_projection(params, x, dtype), dtype)

  def initialize_carry(
    self, input_shape: tuple[int, ...], rngs: Any = None
  ) -> LSTMCarry:
    """Zero state for inputs of shape `[*batch, I]` (`rngs` is unused)."""
    del rngs
    batch = tuple(input_shape[:-1])
    out = self.proj_size or self.hidden_size
    return LSTMCarry(
      jnp.zeros((*batch, self.hidden_size), jnp.float32),
      jnp.zeros((*batch, out), jnp.float32),
    )

  @property
  def num_feature_axes(self) -> int:
    return 1
