"""The LSTM math: pure functions on `jax.lax.scan`.

Nothing here knows about Flax, configs or tasks. Parameters are a plain dict of
arrays; which keys are present selects the cell variant, so the variants
compose (a layer-normalised peephole LSTM with a projection is one dict).

Gate order is PyTorch's: input `i`, forget `f`, cell candidate `g`, output `o`,
packed along the last axis of `w_ih`, `w_hh` and `bias` as `[i | f | g | o]`::

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

Masking: `mask[b, t]` is true on real steps. On a padded step the carry is held
unchanged and the output is zero, so padding may sit anywhere (left, right, in
the middle) and a row of length zero returns zeros and its initial carry.
`segment_ids[b, t]` (0 = padding) packs several sequences in one row: when a
real step's id differs from the id of the previous real step of the row, the
carry is reset to zeros first. The first segment of a row starts from
`initial_carry`, which is what truncated BPTT over consecutive windows needs.

Arrays are batch-major `[batch, time, features]` at the boundary; the scan runs
time-major inside.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from lstm_jax import sharding

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


def _dot(x: Array, w: Array, dtype: Any) -> Array:
  """`x @ w` computed in `dtype` with a float32 result (bf16 in, f32 out)."""
  if dtype is not None:
    x, w = x.astype(dtype), w.astype(dtype)
  if w.ndim == 3:  # the [in, 4, H] gate view (tensor parallelism)
    return jnp.einsum("...i,igh->...gh", x, w, preferred_element_type=jnp.float32)
  return jnp.dot(x, w, preferred_element_type=jnp.float32)


def _layer_norm(
  x: Array, scale: Array, bias: Array | None = None, axes: Any = -1
) -> Array:
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
  gx = _dot(x, params["w_ih"], dtype)
  if "ln_ih_scale" in params:
    return _layer_norm(gx, params["ln_ih_scale"], axes=_gate_axes(gx))
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
  gh = _dot(h, params["w_hh"], dtype)
  if "ln_hh_scale" in params:
    ln = _layer_norm(gh, params["ln_hh_scale"], axes=_gate_axes(gh))
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
    c_out = _layer_norm(c, params["ln_c_scale"], params["ln_c_bias"])
  h = jax.nn.sigmoid(o) * jnp.tanh(c_out)
  if "w_proj" in params:
    h = _dot(h, params["w_proj"], dtype)
  return LSTMCarry(c, h), h


def _time_major(x: Array | None) -> Array | None:
  return None if x is None else jnp.swapaxes(x, 0, 1)


def lstm_scan_reference(
  params: Params,
  xs: Array,
  *,
  mask: Array | None = None,
  segment_ids: Array | None = None,
  initial_carry: LSTMCarry | None = None,
  reverse: bool = False,
  unroll: int = 1,
  remat: bool = False,
  dtype: Any = None,
  hoist: bool = False,
) -> tuple[Array, LSTMCarry]:
  """One LSTM layer over a sequence, differentiated by JAX's autodiff.

  This is the readable definition every faster path is tested against, and the
  path used for the cell variants (peephole, layer norm, projection).

  Args:
    params: layer parameters (see module docstring).
    xs: <float>[batch, time, in_features] inputs.
    mask: <bool>[batch, time], true on real steps; None means all real.
    segment_ids: <int>[batch, time], 0 on padding; a change of id between two
      real steps resets the carry to zeros. Implies `mask = segment_ids != 0`.
    initial_carry: state before the first real step; zeros if None.
    reverse: run from the last step to the first (outputs stay aligned with
      their inputs). Padded steps are skipped, so a right-padded row starts at
      its last real step.
    unroll: `lax.scan` unroll factor.
    remat: recompute each step's activations in the backward pass instead of
      storing them; only the carry is saved per step.
    dtype: matmul compute dtype (e.g. jnp.bfloat16); the carry stays float32.
    hoist: compute `xs @ w_ih` for all steps before the scan (one big matmul)
      instead of inside each step.

  Returns:
    ys: <float32>[batch, time, out] outputs, zero on padded steps.
    carry: the final state (after the last real step in scan order).
  """
  batch = xs.shape[0]
  mask = real_steps(mask, segment_ids)
  if initial_carry is None:
    initial_carry = zero_carry(params, batch)
  carry0 = LSTMCarry(*(jnp.asarray(a, jnp.float32) for a in initial_carry))

  inputs = {"x": input_projection(params, xs, dtype) if hoist else xs}
  if mask is not None:
    inputs["mask"] = mask
  if segment_ids is not None:
    inputs["seg"] = segment_ids.astype(jnp.int32)
  inputs = jax.tree.map(_time_major, inputs)

  def step(state, inp):
    carry, prev_seg = state
    if "seg" in inp:
      # A real step whose id differs from the previous real step's starts a new
      # sequence. prev_seg == 0 means no real step yet: keep the initial carry.
      reset = (prev_seg != 0) & (inp["seg"] != prev_seg) & inp["mask"]
      carry = jax.tree.map(lambda a: jnp.where(reset[:, None], 0.0, a), carry)
      prev_seg = jnp.where(inp["mask"], inp["seg"], prev_seg)
    gates_x = inp["x"] if hoist else input_projection(params, inp["x"], dtype)
    new_carry, y = lstm_step(params, carry, gates_x, dtype)
    if params["w_hh"].ndim == 3 and "w_proj" not in params:
      # Keep the state split by hidden unit, as the gates are: the one
      # collective per step is then the all-gather of h for `h @ w_hh`.
      new_carry = LSTMCarry(*map(sharding.hidden_split, new_carry))
      y = new_carry.h
    if "mask" in inp:
      keep = inp["mask"][:, None]
      new_carry = jax.tree.map(lambda n, o: jnp.where(keep, n, o), new_carry, carry)
      y = jnp.where(keep, y, 0.0)
    return (new_carry, prev_seg), y

  if remat:
    step = jax.checkpoint(step, prevent_cse=False)
  prev_seg0 = jnp.zeros((batch,), jnp.int32)
  (carry, _), ys = jax.lax.scan(
    step, (carry0, prev_seg0), inputs, reverse=reverse, unroll=unroll
  )
  return jnp.swapaxes(ys, 0, 1), carry


IMPLS = ("auto", "fused", "reference")
# The parameters of width 4H, which the tensor-parallel path views as [.., 4, H].
_GATE_KEYS = ("w_ih", "w_hh", "bias", "ln_ih_scale", "ln_hh_scale")


def _gate_views(params: Params) -> dict[str, Array]:
  hidden, model = _hidden(params), sharding.model_axis_size()
  if hidden % model:
    raise ValueError(
      f"hidden size {hidden} is not divisible by the model axis ({model})"
    )
  return {k: sharding.gate_view(v) if k in _GATE_KEYS else v for k, v in params.items()}


def lstm_scan(
  params: Params, xs: Array, *, impl: str = "auto", **kwargs: Any
) -> tuple[Array, LSTMCarry]:
  """One LSTM layer over a sequence: the fastest correct path for the inputs.

  Args:
    params: layer parameters (see module docstring).
    xs: <float>[batch, time, in_features].
    impl: "reference" is `lstm_scan_reference` (JAX autodiff); "fused" is the
      hand-written-backward path; "auto" picks the fastest correct one.
    **kwargs: as `lstm_scan_reference`.

  Returns:
    (ys <float32>[batch, time, out], final `LSTMCarry`).
  """
  from lstm_jax import fused  # noqa: PLC0415 (fused imports this module)

  if impl not in IMPLS:
    raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
  # Padded steps never reach the outputs, but their inputs do reach the weight
  # gradients multiplied by zero, and NaN * 0 = NaN: zero them first so that
  # garbage in padding (NaN, inf) cannot poison a training step.
  real = real_steps(kwargs.get("mask"), kwargs.get("segment_ids"))
  if real is not None:
    xs = jnp.where(real[..., None], xs, jnp.zeros((), xs.dtype))
  # The fused path implements the standard cell; projection, peephole and
  # layer-norm cells always take the reference path (also under "fused").
  if sharding.model_axis_size() > 1:
    # Tensor parallelism: the reference path on the gate view, so that each
    # device owns H/model units of every gate (see `lstm_jax.sharding`).
    return lstm_scan_reference(_gate_views(params), xs, **kwargs)
  if impl == "reference" or not fused.supports(params):
    return lstm_scan_reference(params, xs, **kwargs)
  return fused.lstm_scan_fused(params, xs, **kwargs)
