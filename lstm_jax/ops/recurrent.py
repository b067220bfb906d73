"""The reference LSTM scan on `jax.lax.scan`, and the parameter dict it takes.

Nothing here knows about Flax, configs or tasks. Parameters are a plain dict of
arrays; which keys are present selects the cell variant, so the variants
compose (a layer-normalised peephole LSTM with a projection is one dict).

The cell itself (gate order, equations, the parameter dict and its keys) is
defined once in `cell.py`.

Masking: `mask[b, t]` is true on real steps. On a padded step the carry is held
unchanged and the output is zero, so padding may sit anywhere (left, right, in
the middle) and a row of length zero returns zeros and its initial carry.
`segment_ids[b, t]` (0 = padding) packs several sequences in one row: when a
real step's id differs from the id of the previous real step of the row, the
carry is reset to zeros first. The first segment of a row starts from
`initial_carry`, which is what truncated BPTT over consecutive windows needs.

Arrays are batch-major `[batch, time, features]` at the boundary; the scan runs
time-major inside.

Where things live: the cell (carry, step, real steps, segment resets) is in
`cell.py`, which every scan imports; this module holds the reference scan,
differentiated by JAX, which every faster path (`lstm_jax.kernels`) is tested
against. The dispatcher `lstm_jax.kernels.dispatch.lstm_scan` (also
`lstm_jax.lstm_scan`) sits above both and picks the path. The cell names
stay importable from here.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from lstm_jax.ops import tensor_parallel
from lstm_jax.ops.cell import (
  Array,
  LSTMCarry,
  Params,
  input_projection,
  lstm_step,
  real_steps,
  segment_resets,
  zero_carry,
)

# Re-exported: code that imported the cell from here keeps working.
__all__ = [
  "PARAM_KEYS",
  "check_param_keys",
  "LSTMCarry",
  "input_projection",
  "lstm_scan_reference",
  "lstm_step",
  "real_steps",
  "zero_carry",
]


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
  recurrent_mask: Array | None = None,
  zoneout_c: Array | None = None,
  zoneout_h: Array | None = None,
  h_probe: Array | None = None,
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
    recurrent_mask: <float>[batch, out] recurrent dropout: the gates of every
      step read `(h_{t-1} * recurrent_mask) @ w_hh`; the carry is undropped.
    zoneout_c, zoneout_h: <bool>[batch, time, hidden / out] zoneout: where
      true, the step keeps the entering c (h) instead of the new one,
      `c_t = z c_{t-1} + (1 - z) c'_t`; the output is the zoned-out h_t.
    h_probe: <float32>[batch, time, out], added to h after each real step
      (to the output and to the carry the next step reads). Pass zeros and
      differentiate with respect to it: the gradient at t is the full
      dLoss/dh_t, through the recurrence and not only the output path
      (`lstm_jax.training.diagnostics`). Padded steps ignore it.

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
    seg = jnp.asarray(segment_ids).astype(jnp.int32)
    inputs["reset"] = segment_resets(mask, seg, reverse)
  if zoneout_c is not None:
    inputs["zc"] = jnp.asarray(zoneout_c).astype(bool)
  if zoneout_h is not None:
    inputs["zh"] = jnp.asarray(zoneout_h).astype(bool)
  if h_probe is not None:
    inputs["probe"] = h_probe
  inputs = jax.tree.map(_time_major, inputs)
  rmask = None if recurrent_mask is None else jnp.asarray(recurrent_mask, jnp.float32)
  gate_view = tensor_parallel.is_gate_view(params)

  def step(carry, inp):
    if "reset" in inp:  # a new segment starts from zeros
      carry = jax.tree.map(lambda a: jnp.where(inp["reset"][:, None], 0.0, a), carry)
    gates_x = inp["x"] if hoist else input_projection(params, inp["x"], dtype)
    step_carry = carry if rmask is None else carry._replace(h=carry.h * rmask)
    new_carry, y = lstm_step(params, step_carry, gates_x, dtype)
    if gate_view:
      # Keep the state split by hidden unit, as the gates are: the one
      # collective per step is then the all-gather of h for `h @ w_hh`.
      new_carry = LSTMCarry(*map(tensor_parallel.hidden_split, new_carry))
      y = new_carry.h
    if "zc" in inp:  # zoneout: these units keep the state that entered the step
      new_carry = new_carry._replace(c=jnp.where(inp["zc"], carry.c, new_carry.c))
    if "zh" in inp:
      y = jnp.where(inp["zh"], carry.h, y)
      new_carry = new_carry._replace(h=y)
    if "probe" in inp:
      y = y + inp["probe"]
      new_carry = LSTMCarry(new_carry.c, y)
    if "mask" in inp:
      keep = inp["mask"][:, None]
      new_carry = jax.tree.map(lambda n, o: jnp.where(keep, n, o), new_carry, carry)
      y = jnp.where(keep, y, 0.0)
    return new_carry, y

  if remat:
    step = jax.checkpoint(step, prevent_cse=False)
  carry, ys = jax.lax.scan(step, carry0, inputs, reverse=reverse, unroll=unroll)
  return jnp.swapaxes(ys, 0, 1), carry


# The parameter dict's keys (module docstring): always these three ...
REQUIRED_KEYS = ("w_ih", "w_hh", "bias")
# ... and any of these, each selecting a cell variant.
OPTIONAL_KEYS = (
  "w_proj",
  "peephole",
  "ln_ih_scale",
  "ln_hh_scale",
  "ln_c_scale",
  "ln_c_bias",
)
PARAM_KEYS = REQUIRED_KEYS + OPTIONAL_KEYS


def check_param_keys(params: Params) -> None:
  """Raises ValueError naming a missing or unknown key of a parameter dict.

  A key the scan does not read would otherwise be ignored silently: a typo
  (`"w_hh "`) or a PyTorch name (`weight_ih_l0`) would leave its variant
  off, or its weight at the default.
  """
  unknown = sorted(str(k) for k in params if k not in PARAM_KEYS)
  missing = [k for k in REQUIRED_KEYS if k not in params]
  if not unknown and not missing:
    return
  what = f"unknown key(s) {unknown}" if unknown else f"no key(s) {missing}"
  hint = ""
  if any(k.startswith(("weight_", "bias_")) for k in unknown):
    hint = " (PyTorch's names: lstm_jax.nn.convert.from_torch maps them)"
  raise ValueError(
    f"lstm_scan params has {what}{hint}; expected {list(REQUIRED_KEYS)} and "
    f"optionally {list(OPTIONAL_KEYS)}, got {sorted(map(str, params))}"
  )
