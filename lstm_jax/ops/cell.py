"""The LSTM cell, written once: its equations, their gradient, carry and masks.

A leaf module (it imports nothing of ours): the reference scan
(`ops/recurrent.py`) and the fast paths (`kernels/fused`, `kernels/pallas`)
build on this one definition of the step, of its gradient, and of which steps
are real and which reset the carry; the cuDNN wrapper's tests check its
weight packing against `cell_pointwise` and the reference scan.

Parameters are a plain dict of arrays; which keys are present selects the cell
variant, so the variants compose (a layer-normalised peephole LSTM with a
projection is one dict). Gate order is PyTorch's (and cuDNN's): input `i`,
forget `f`, cell candidate `g`, output `o`, packed along the last axis of
`w_ih`, `w_hh` and `bias` as `[i | f | g | o]`.

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

One step is three functions, so that each path takes the parts it runs its
own way:
  `input_projection`    x_t @ w_ih (+ bias): a scan may hoist it out of the
                        loop as one large matmul over all steps.
  `lstm_step`           h_{t-1} @ w_hh, the gate layer norms, `cell_pointwise`,
                        the projection: the reference scan's step.
  `cell_pointwise`      the elementwise equations from the gate pre-activations
                        to (c_t, h_t); `cell_pointwise_vjp` is their gradient,
                        which the hand-written backward passes use.

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
import numpy as np

Array = jax.Array
Params = Mapping[str, Array]
# Gate pre-activations or activations: packed [..., 4H] in gate order, or the
# four gates [..., H] as separate arrays (i, f, g, o).
Gates = Array | tuple[Array, Array, Array, Array]

SIGMOIDS = ("logistic", "tanh")

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


class CellSaved(NamedTuple):
  """What `cell_pointwise` keeps for `cell_pointwise_vjp`.

  Attributes:
    acts: <float32> gate activations (i, f, g, o after their nonlinearities),
      in the layout of the pre-activations given: [B, 4H] or four [B, H].
    c_prev: <float32>[B, H] the cell state entering the step.
  """

  acts: Gates
  c_prev: Array


def split_gates(gates: Gates) -> tuple[Array, Array, Array, Array]:
  """(i, f, g, o) of packed `[..., 4H]` gates, or the four arrays as given."""
  if isinstance(gates, (tuple, list)):
    i, f, g, o = gates
    return i, f, g, o
  i, f, g, o = jnp.split(gates, 4, axis=-1)
  return i, f, g, o


def _tanh_gate_consts(hid: int) -> tuple[Array, Array]:
  """Per-column scale and offset of the packed activations: 0.5, 0.5 on i, f,
  o (sigmoid) and 1, 0 on g (tanh)."""
  scale = np.full((4, hid), 0.5, np.float32)
  scale[2] = 1.0
  offset = np.full((4, hid), 0.5, np.float32)
  offset[2] = 0.0
  return jnp.asarray(scale.reshape(-1)), jnp.asarray(offset.reshape(-1))


def _sigmoid(x: Array, how: str) -> Array:
  """sigmoid(x), evaluated as `how` says (`cell_pointwise`)."""
  if how == "tanh":
    return 0.5 * jnp.tanh(0.5 * x) + 0.5
  return jax.nn.sigmoid(x)


def cell_pointwise(
  gates: Gates,
  c_prev: Array,
  *,
  sigmoid: str = "logistic",
  peephole: Array | None = None,
  ln_c: tuple[Array, Array] | None = None,
) -> tuple[Array, Array, CellSaved]:
  """The cell's elementwise equations: gate pre-activations -> (c_t, h_t).

  With a = [a_i | a_f | a_g | a_o] the pre-activations of one step
  (x_t W_ih + h_{t-1} W_hh + b, layer-normalised parts included) and p the
  optional peephole weights::

    i = sigmoid(a_i + p_i c_{t-1})    f = sigmoid(a_f + p_f c_{t-1})
    g = tanh(a_g)
    c_t = f c_{t-1} + i g
    o = sigmoid(a_o + p_o c_t)
    h_t = o tanh(LN(c_t))             (LN: the identity without `ln_c`)

  all products elementwise. The fused scan, the Pallas kernels and cuDNN
  implement the standard cell (no `peephole`, no `ln_c`); the variants run on
  the reference scan.

  `sigmoid` chooses how sigmoid is evaluated, never what it is:
  "logistic" is `jax.nn.sigmoid` (the reference scan, differentiated by JAX);
  "tanh" is sigmoid(x) = 0.5 tanh(0.5 x) + 0.5 (the fast paths). With packed
  gates and no peephole, "tanh" computes all four activations as one tanh,
  `scale * tanh(scale * a) + offset` with (scale, offset) = (0.5, 0.5) on i, f,
  o and (1, 0) on g: one elementwise loop on XLA:CPU instead of one per gate,
  and a native instruction on TPU and GPU. The two agree up to float rounding;
  each path keeps its own so that its results do not move.

  The function is plain `jnp` elementwise code, so it also traces inside the
  Pallas kernel bodies (which pass the four gates of a tile as separate
  arrays).

  Args:
    gates: <float32> pre-activations, packed [B, 4H] or four [B, H].
    c_prev: <float32>[B, H] the cell state entering the step (after any reset).
    sigmoid: "logistic" or "tanh" (above).
    peephole: <float32>[3, H] peephole weights for i, f, o, or None.
    ln_c: (scale, bias) <float32>[H] of the layer norm of c_t before the
      output tanh, or None.

  Returns:
    (c_t <float32>[B, H], h_t <float32>[B, H], `CellSaved`): the activations and
    c_{t-1}, which is all `cell_pointwise_vjp` reads (tanh(c_t) is recomputed
    there: saving it would add a [B, H] residual per step to the fused scan,
    whose speed on CPU follows its temporary memory).
  """
  if sigmoid not in SIGMOIDS:
    raise ValueError(f"sigmoid must be one of {SIGMOIDS}, got {sigmoid!r}")
  packed = not isinstance(gates, (tuple, list))
  one_tanh = sigmoid == "tanh" and packed and peephole is None
  if one_tanh:
    scale, offset = _tanh_gate_consts(gates.shape[-1] // 4)
    acts = scale * jnp.tanh(scale * gates) + offset
    i, f, g, o = split_gates(acts)
  else:
    a_i, a_f, a_g, a_o = split_gates(gates)
    if peephole is not None:
      a_i = a_i + peephole[0] * c_prev
      a_f = a_f + peephole[1] * c_prev
    i, f, g = _sigmoid(a_i, sigmoid), _sigmoid(a_f, sigmoid), jnp.tanh(a_g)
  c = f * c_prev + i * g
  if not one_tanh:
    if peephole is not None:  # the output gate looks at the new c
      a_o = a_o + peephole[2] * c
    o = _sigmoid(a_o, sigmoid)
    acts = jnp.concatenate((i, f, g, o), axis=-1) if packed else (i, f, g, o)
  c_out = c if ln_c is None else layer_norm(c, *ln_c)
  h = o * jnp.tanh(c_out)
  return c, h, CellSaved(acts, c_prev)


def cell_pointwise_vjp(saved: CellSaved, dc: Array, dh: Array) -> tuple[Gates, Array]:
  """The gradient of `cell_pointwise` (standard cell) w.r.t. a and c_{t-1}.

  With dc = dL/dc_t and dh = dL/dh_t the gradients reaching the step's outputs
  (in a scan: dc from c_{t+1} = f_{t+1} c_t + ..., dh from the output y_t and
  from a_{t+1} = ... + h_t W_hh), and the activation derivatives written
  through the activations (sigmoid' = s (1 - s), tanh' = 1 - tanh^2)::

    dc~  = dc + dh o (1 - tanh^2 c_t)     c_t reaches L also through h_t
    da_i = dc~ g       i (1 - i)          c_t = f c_{t-1} + i g
    da_f = dc~ c_{t-1} f (1 - f)
    da_g = dc~ i       (1 - g^2)
    da_o = dh tanh(c_t) o (1 - o)         h_t = o tanh(c_t)
    dc_{t-1} = dc~ f

  Each da is `deriv * partner` (the activation's derivative times the rest);
  for packed gates the four are one [B, 4, H] product, so that XLA emits a
  single loop for them. tanh(c_t) is recomputed from the saved activations.
  The peephole and layer-norm variants have no hand-written gradient: they run
  on the reference scan, differentiated by JAX.

  Args:
    saved: `cell_pointwise`'s `CellSaved` (activations [B, 4H] or four [B, H],
      and c_{t-1} [B, H]).
    dc: <float32>[B, H] dL/dc_t.
    dh: <float32>[B, H] dL/dh_t.

  Returns:
    (da in the layout of `saved.acts`, dL/dc_{t-1} <float32>[B, H]).
  """
  acts, c_prev = saved
  i, f, g, o = split_gates(acts)
  tc = jnp.tanh(f * c_prev + i * g)
  dc = dc + dh * o * (1.0 - tc * tc)
  partner = (dc * g, dc * c_prev, dc * i, dh * tc)
  if isinstance(acts, (tuple, list)):
    deriv = (i * (1.0 - i), f * (1.0 - f), 1.0 - g * g, o * (1.0 - o))
    return tuple(d * p for d, p in zip(deriv, partner, strict=True)), dc * f
  lead, hid = acts.shape[:-1], acts.shape[-1] // 4
  a = acts.reshape(*lead, 4, hid)
  k = jax.lax.broadcasted_iota(jnp.int32, (1,) * len(lead) + (4, 1), len(lead))
  deriv = jnp.where(k == 2, 1.0 - a * a, a * (1.0 - a))
  d_gates = deriv * jnp.stack(partner, axis=-2)
  return d_gates.reshape(acts.shape), dc * f


def lstm_step(
  params: Params, carry: LSTMCarry, gates_x: Array, dtype: Any = None
) -> tuple[LSTMCarry, Array]:
  """One LSTM step on pre-projected inputs (the reference scan's step).

  Args:
    params: layer parameters (see module docstring).
    carry: previous state, `c` <float32>[batch, hidden], `h` [batch, out].
    gates_x: <float32>[batch, 4 * hidden], `input_projection(params, x_t)`.
    dtype: matmul compute dtype; the state and gate math stay float32.

  Returns:
    (new carry, output h_t <float32>[batch, out]).
  """
  gh = dot(carry.h, params["w_hh"], dtype)
  if "ln_hh_scale" in params:
    ln = layer_norm(gh, params["ln_hh_scale"], axes=_gate_axes(gh))
    gates = gates_x + ln + params["bias"]
  else:
    gates = gates_x + gh
  gates = gates.astype(jnp.float32)
  if params["w_hh"].ndim == 3:  # [batch, 4, H]: each gate's H is local
    gates = tuple(gates[..., k, :] for k in range(4))
  peephole = params.get("peephole")
  ln_c = None
  if "ln_c_scale" in params:
    ln_c = (params["ln_c_scale"], params["ln_c_bias"])
  c, h, _ = cell_pointwise(
    gates,
    carry.c,
    peephole=None if peephole is None else peephole.astype(jnp.float32),
    ln_c=ln_c,
  )
  if "w_proj" in params:
    h = dot(h, params["w_proj"], dtype)
  return LSTMCarry(c, h), h
