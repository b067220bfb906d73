"""The LSTM cell and what every scan over it shares: carry, step, masks, resets.

A leaf module: it imports nothing of ours, so the reference scan
(`recurrent.py`) and the fast paths (`fused.py`, ...) build on one definition
of the step and of which steps are real and which reset the carry.

Parameters are a plain dict of arrays; which keys are present selects the cell
variant, so the variants compose (a layer-normalised peephole LSTM with a
projection is one dict). Gate order is PyTorch's: input `i`, forget `f`, cell
candidate `g`, output `o`, packed along the last axis of `w_ih`, `w_hh` and
`bias` as `[i | f | g | o]`::

  gates = x_t @ w_ih + h_{t-1} @ w_hh + bias          # [batch, 4 * hidden]
  i, f, o = sigmoid(.), g = tanh(.)
  c_t = f * c_{t-1} + i * g
  h_t = o * tanh(c_t)                                 # then h_t @ w_proj if present

Parameter dict (`H` hidden size, `P` projection size, `I` input features):
  w_ih:     [I, 4H]   input weights (transposed PyTorch `weight_ih_l*`).
  w_hh:     [H or P, 4H] recurrent weights.
  bias:     [4H]      one bias (PyTorch's `bias_ih + bias_hh`).
  w_proj:   [H, P]    optional LSTMP projection of `h` (PyTorch `proj_size`).
  peephole: [3, H]    optional peephole weights for i, f (on c_{t-1}) and o (on c_t).
  ln_ih_scale, ln_hh_scale: [4H], ln_c_scale, ln_c_bias: [H]
            optional layer normalisation (Ba et al., 2016): each of the two
            projections is normalised over its 4H features before the sum, and
            c_t is normalised before the output tanh. The LN of the input
            projection has no bias because `bias` plays that role.

The step is split in two so that a scan may hoist the input half out of the
loop: `input_projection` (`x_t @ w_ih`, one large matmul over all steps if
wanted) and `lstm_step` (the recurrent half and the gate math).

Real steps and resets, per row `b` of `[batch, time]` arrays:
  real[b, t]  = mask[b, t] and segment_ids[b, t] != 0      (`real_steps`)
  reset[b, t] = real[b, t] and the previous real step of the row in scan
                order exists and has a different id         (`segment_resets`)
A scan holds the carry unchanged on a non-real step (its output is zero), and
on a reset step replaces the carry by zeros before the step. The first real
step of a row never resets: it starts from the initial carry, which is what
truncated BPTT over consecutive windows needs. Resets depend on the mask and
the ids only, never on the carry, so they are computed for all steps before
the loop (no integer state in the scan).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array
Params = Mapping[str, Array]

_LN_EPS = 1e-5


class LSTMCarry(NamedTuple):
  """The recurrent state of one LSTM layer and direction.

  Attributes:
    c: <float32>[batch, hidden] cell state.
    h: <float32>[batch, hidden or proj] hidden state (projected if LSTMP).
  """

  c: Array
  h: Array


def _hidden(params: Params) -> int:
  """H of stored `[.., 4H]` weights or of their `[.., 4, H]` gate view."""
  w = params["w_ih"]
  return w.shape[-1] if w.ndim == 3 else w.shape[-1] // 4


def zero_carry(params: Params, batch: int, dtype: Any = jnp.float32) -> LSTMCarry:
  """Zero initial state for `params`, shapes `[batch, hidden]`/`[batch, proj]`."""
  hidden = _hidden(params)
  out = params["w_hh"].shape[0]
  return LSTMCarry(jnp.zeros((batch, hidden), dtype), jnp.zeros((batch, out), dtype))


def real_steps(mask: Array | None, segment_ids: Array | None) -> Array | None:
  """<bool>[batch, time] true on real steps: `mask` and `segment_ids != 0`.

  None when neither is given (every step is real).
  """
  if segment_ids is None:
    return mask
  seg_mask = segment_ids != 0
  return seg_mask if mask is None else jnp.logical_and(mask, seg_mask)


def segment_resets(mask: Array, segment_ids: Array, reverse: bool) -> Array:
  """Where a real step starts a new segment: the carry is zeroed before it.

  A real step resets the carry when the previous real step in scan order (the
  one before it, or after it if `reverse`) has a different, non-zero id; the
  first real step of a row never resets (it starts from the initial carry).
  Padding between two steps of one id does not split the segment.

  Args:
    mask: <bool>[batch, time] real steps, as `real_steps` (so that
      `segment_ids` is non-zero wherever `mask` is true).
    segment_ids: <int32>[batch, time], 0 on padding.
    reverse: the scan runs from the last step to the first.

  Returns:
    <bool>[batch, time], true on the real steps that reset the carry.
  """
  t = mask.shape[1]
  pos = jnp.arange(t, dtype=jnp.int32)[None, :]
  # `prev[b, t]`: the position of the previous real step in scan order, found
  # with a running max (min when reversed) over the positions of real steps.
  if reverse:
    idx = jnp.where(mask, pos, t)
    last = jax.lax.cummin(idx, axis=1, reverse=True)  # next real step at/after
    prev = jnp.concatenate([last[:, 1:], jnp.full_like(last[:, :1], t)], axis=1)
    has_prev = prev < t
  else:
    idx = jnp.where(mask, pos, -1)
    last = jax.lax.cummax(idx, axis=1)  # last real step at/before
    prev = jnp.concatenate([jnp.full_like(last[:, :1], -1), last[:, :-1]], axis=1)
    has_prev = prev >= 0
  prev_seg = jnp.take_along_axis(segment_ids, jnp.clip(prev, 0, t - 1), axis=1)
  prev_seg = jnp.where(has_prev, prev_seg, 0)
  return mask & (prev_seg != 0) & (segment_ids != prev_seg)


def dot(x: Array, w: Array, dtype: Any) -> Array:
  """`x @ w` computed in `dtype` with a float32 result (bf16 in, f32 out).

  Args:
    x: <float>[..., k].
    w: <float>[k, n], or the gate view <float>[k, 4, H] (tensor parallelism).
    dtype: operand dtype (e.g. jnp.bfloat16); None keeps the inputs' dtypes.

  Returns:
    <float32>[..., n] (or [..., 4, H]).
  """
  if dtype is not None:
    x, w = x.astype(dtype), w.astype(dtype)
  if w.ndim == 3:  # the [in, 4, H] gate view (tensor parallelism)
    return jnp.einsum("...i,igh->...gh", x, w, preferred_element_type=jnp.float32)
  return jnp.dot(x, w, preferred_element_type=jnp.float32)


def layer_norm(
  x: Array, scale: Array, bias: Array | None = None, axes: Any = -1
) -> Array:
  """Layer normalisation over `axes` (eps 1e-5), then scale and bias."""
  mean = jnp.mean(x, axis=axes, keepdims=True)
  var = jnp.mean(jnp.square(x - mean), axis=axes, keepdims=True)
  y = (x - mean) * jax.lax.rsqrt(var + _LN_EPS) * scale
  return y if bias is None else y + bias


def _gate_axes(gates: Array) -> Any:
  """The feature axes of gate pre-activations: 4H, or (4, H) in the view."""
  return -1 if gates.ndim == 2 else (-2, -1)


def input_projection(params: Params, x: Array, dtype: Any = None) -> Array:
  """The input half of the gates, `x @ w_ih` (+ bias unless layer-normalised).

  Args:
    params: layer parameters.
    x: <float>[..., in_features].
    dtype: matmul compute dtype (None keeps the inputs' dtype).

  Returns:
    <float32>[..., 4 * hidden].
  """
  gx = dot(x, params["w_ih"], dtype)
  if "ln_ih_scale" in params:
    return layer_norm(gx, params["ln_ih_scale"], axes=_gate_axes(gx))
  return gx + params["bias"].astype(jnp.float32)


def lstm_step(
  params: Params, carry: LSTMCarry, gates_x: Array, dtype: Any = None
) -> tuple[LSTMCarry, Array]:
  """One LSTM step on pre-projected inputs.

  Args:
    params: layer parameters (see module docstring).
    carry: previous state, `c` <float32>[batch, hidden], `h` [batch, out].
    gates_x: <float32>[batch, 4 * hidden], `input_projection(params, x_t)`.
    dtype: matmul compute dtype; the state and gate math stay float32.

  Returns:
    (new carry, output h_t <float32>[batch, out]).
  """
  c, h = carry
  gh = dot(h, params["w_hh"], dtype)
  if "ln_hh_scale" in params:
    ln = layer_norm(gh, params["ln_hh_scale"], axes=_gate_axes(gh))
    gates = gates_x + ln + params["bias"]
  else:
    gates = gates_x + gh
  gates = gates.astype(jnp.float32)
  if params["w_hh"].ndim == 3:  # [batch, 4, H]: each gate's H is local
    i, f, g, o = (gates[..., k, :] for k in range(4))
  else:
    i, f, g, o = jnp.split(gates, 4, axis=-1)
  if "peephole" in params:
    peep = params["peephole"].astype(jnp.float32)
    i = i + peep[0] * c
    f = f + peep[1] * c
  c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
  if "peephole" in params:
    o = o + peep[2] * c
  c_out = c
  if "ln_c_scale" in params:
    c_out = layer_norm(c, params["ln_c_scale"], params["ln_c_bias"])
  h = jax.nn.sigmoid(o) * jnp.tanh(c_out)
  if "w_proj" in params:
    h = dot(h, params["w_proj"], dtype)
  return LSTMCarry(c, h), h
