"""The forward pass of an LSTM layer and of a stack, free of any module system.

The Linen modules (`layers.py`) and the NNX modules (`lstm_jax.nnx`) differ in
how they hold parameters and draw random keys, and in nothing else: both call
these functions, which take the options (any object with the `spec.LSTMSpec`
attribute names, e.g. the module itself), the parameters and a `next_key()`
that returns a fresh 'dropout' key. A layer samples its training masks with
`drop_weights` and `step_masks` (in that order) and runs `layer_forward`; the
stack runs `stack_forward`. So the two front ends run the same code on every
path (`lstm_jax.kernels.dispatch.lstm_scan` and the kernels it picks)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from lstm_jax.kernels import dispatch
from lstm_jax.ops import regularisation as reg
from lstm_jax.ops.cell import LSTMCarry, real_steps

Array = jax.Array
# One layer in one direction: (layer, direction, x, initial carry, h_probe)
# -> (outputs, final carry).
LayerFn = Callable[[int, int, Array, Any, Any], tuple[Array, LSTMCarry]]


def check_input(x: Array) -> None:
  if x.ndim != 3:
    raise ValueError(f"x must be [batch, time, features], got shape {x.shape}")


def drop_weights(
  opts: Any, params: dict[str, Array], next_key: Callable[[], Array]
) -> dict[str, Array]:
  """Weight-drop of `w_hh` (training, `opts.weight_drop > 0`): the masked
  matrix is an ordinary input of the scan, so every path (and its backward)
  takes it unchanged."""
  if opts.weight_drop <= 0:
    return params
  return {
    **params,
    "w_hh": reg.weight_drop(next_key(), opts.weight_drop, params["w_hh"]),
  }


def step_masks(
  opts: Any, batch: int, time: int, hid: int, out: int, next_key: Callable[[], Array]
) -> dict[str, Array]:
  """The scan's mask inputs of a training call (recurrent dropout, zoneout of
  c and h, for the rates > 0), sampled once per call, never in the loop."""
  masks = {}
  if opts.recurrent_dropout > 0:
    rate = opts.recurrent_dropout
    masks["recurrent_mask"] = reg.recurrent_mask(next_key(), rate, batch, out)
  if opts.zoneout_cell > 0:
    rate = opts.zoneout_cell
    masks["zoneout_c"] = reg.zoneout_mask(next_key(), rate, batch, time, hid)
  if opts.zoneout_hidden > 0:
    rate = opts.zoneout_hidden
    masks["zoneout_h"] = reg.zoneout_mask(next_key(), rate, batch, time, out)
  return masks


class Inputs(NamedTuple):
  """The arguments of a module call (see `layers.LSTM.__call__`): `x`, and
  what goes with it (for a stack, `initial_carry` and `h_probe` hold one entry
  per (layer, direction))."""

  x: Array
  mask: Array | None
  segment_ids: Array | None
  initial_carry: Any
  h_probe: Any


def layer_forward(
  opts: Any,
  params: dict[str, Array],
  inputs: Inputs,
  step_masks: dict[str, Array],
  dtype: Any,
  param_dtype: Any,
  model_axis: int = 1,
) -> tuple[Array, LSTMCarry]:
  """One layer in one direction (see `layers.LSTMLayer.__call__`).

  Args:
    opts: has the layer options of `LSTMSpec` and `reverse`.
    params: the layer's parameters (`lstm_jax.ops.recurrent`), after
      `drop_weights` when training.
    inputs: x <float>[batch, time, in_features]; mask, segment_ids,
      initial_carry, h_probe as `dispatch.lstm_scan`.
    step_masks: from `step_masks` when training, else empty.
    dtype: the compute dtype (a JAX dtype or None).
    param_dtype: the parameters' dtype (sets the outputs' dtype when dtype is
      None).
    model_axis: the size of the mesh axis "model" (`dispatch.lstm_scan`).

  Returns:
    (outputs <dtype>[batch, time, P or H], final `LSTMCarry` in float32).
  """
  x = inputs.x
  check_input(x)
  probe = {} if inputs.h_probe is None else {"h_probe": inputs.h_probe}
  loop = {name: getattr(opts, name) for name in ("reverse", "unroll", "remat", "impl")}
  ys, carry = dispatch.lstm_scan(
    params,
    x,
    model_axis=model_axis,
    mask=inputs.mask,
    segment_ids=inputs.segment_ids,
    initial_carry=inputs.initial_carry,
    dtype=dtype,
    **probe,
    **loop,
    **step_masks,
  )
  out_dtype = dtype or jnp.result_type(x.dtype, param_dtype)
  return ys.astype(out_dtype), carry


def stack_forward(
  opts: Any,
  layer: LayerFn,
  inputs: Inputs,
  *,
  train: bool,
  next_key: Callable[[], Array],
  dropout: Callable[[Array], Array],
) -> tuple[Array, tuple[LSTMCarry, ...], dict[str, Array]]:
  """The stack (see `layers.LSTM.__call__`).

  Args:
    opts: has the options of `LSTMSpec`.
    layer: runs layer l in direction d (0 forward, 1 backward).
    inputs: the stack's call (`initial_carry`, `h_probe`: None or one
      entry per (layer, direction)).
    train: apply the stack's regularisers (locked input, hidden and output
      dropout, AR/TAR).
    next_key: returns a fresh 'dropout' key (once per locked-dropout rate > 0).
    dropout: the inter-layer dropout of rate `opts.dropout` (training only).

  Returns:
    (outputs <dtype>[batch, time, D * (P or H)], one final `LSTMCarry` per
    (layer, direction) in PyTorch's order, the penalties {"ar", "tar"} whose
    rate is > 0 (training only)).
  """
  x, mask, segment_ids, initial_carry, h_probe = inputs
  check_input(x)
  directions = 2 if opts.bidirectional else 1
  n_carry = opts.num_layers * directions
  if initial_carry is not None and len(initial_carry) != n_carry:
    raise ValueError(
      f"initial_carry needs {n_carry} LSTMCarry entries "
      f"(num_layers * directions), got {len(initial_carry)}"
    )
  if train and opts.input_dropout > 0:
    x = reg.locked_dropout(next_key(), opts.input_dropout, x)
  finals = []
  for i in range(opts.num_layers):
    outs = []
    for d in range(directions):
      k = i * directions + d
      y, carry = layer(
        i,
        d,
        x,
        None if initial_carry is None else initial_carry[k],
        None if h_probe is None else h_probe[k],
      )
      outs.append(y)
      finals.append(carry)
    x = outs[0] if len(outs) == 1 else jnp.concatenate(outs, axis=-1)
    if i < opts.num_layers - 1:
      if train and opts.dropout > 0:
        x = dropout(x)
      if train and opts.hidden_dropout > 0:
        x = reg.locked_dropout(next_key(), opts.hidden_dropout, x)
  penalties = {}
  if train:
    real = real_steps(mask, segment_ids)
    undropped = x
    if opts.output_dropout > 0:
      x = reg.locked_dropout(next_key(), opts.output_dropout, x)
    if opts.ar_alpha > 0:
      penalties["ar"] = opts.ar_alpha * reg.activation_penalty(x, real)
    if opts.tar_beta > 0:
      penalties["tar"] = opts.tar_beta * reg.temporal_penalty(undropped, real)
  return x, tuple(finals), penalties


def layer_name(layer: int, direction: int) -> str:
  """The parameter scope of a (layer, direction): `layer_0_fwd`, `layer_1_bwd`."""
  return f"layer_{layer}_{('fwd', 'bwd')[direction]}"
