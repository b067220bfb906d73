"""The standard LSTM layer with a hand-written backward pass (`jax.custom_vjp`).

Same semantics as `recurrent.lstm_scan_reference` (masks, segment resets,
initial carry, reverse, bf16 matmuls, remat) for the standard cell
(`w_ih`, `w_hh`, `bias`); `recurrent.lstm_scan` routes the other variants to
the reference path. Gradients flow to the weights, bias, inputs and the
initial carry.

The loop, per step in scan order::

  (c, h) = reset ? 0 : (c, h)                # a new segment starts
  gates  = x_t @ w_ih + h @ w_hh + bias
  c'     = f * c + i * g;  h' = o * tanh(c')
  (c, h) = mask ? (c', h') : (c, h);  y_t = mask ? h' : 0

The `reset` flags do not depend on the carry, so they are computed for all
steps before the loop (`cell.segment_resets`, as in the reference scan).

What makes it fast (measurements here, in `layout.auto_layout` and in
benchmarks/README.md):

* Weight gradients after the loop. JAX's transpose of the scan accumulates
  `dW_ih`, `dW_hh` and `dbias` inside the reverse loop (small `[K, B] x [B, 4H]`
  matmuls and a read-modify-write of the weight gradients at every step). Here
  the reverse loop only propagates `dh`/`dc` (one `[B, 4H] x [4H, H]` matmul per
  step) and leaves the gate gradients `dgates [B, T, 4H]`; `dW_ih = x^T dgates`,
  `dW_hh = h_in^T dgates`, `dbias` and `dx = dgates w_ih^T` are large matmuls.
* Little temporary memory. XLA:CPU allocates the temporaries of a computation
  afresh on every call, and above glibc's 32 MiB mmap threshold every page of
  them is faulted in again (~0.5 ms/MiB on the project's VM: a B32 I128 H256
  gradient with 31.7 MiB of temporaries (T=80) ran at 64K tokens/s, with
  37.7 MiB (T=96) at 47K). So: sequences
  stay batch-major (no time-major copies of inputs, outputs or cotangents),
  the forward saves the activations `[B, T, 4H]`, `c_in` and `h_in` only
  (tanh(c') is recomputed), and the reverse loop writes `dgates` over the
  activations in place.
* XLA:CPU tuning (`fused/layout.py`): where `x_t @ w_ih` is computed, whether
  the weights are the left operand of the in-loop dots, weight operands
  prepared once outside the loops; and one tanh for all four gate activations
  (`cell.cell_pointwise` with sigmoid="tanh").

`remat=True` saves only `c_in` and `h_in` per step: the reverse loop recomputes
the gates and accumulates the weight gradients inside the loop (about the
speed of autodiff, less than half the memory of remat=False). The backward's
math is derived in `backward.backward` (`fused/backward.py`), one step's gate
gradients in `cell.cell_pointwise_vjp`.

On CPU keep `unroll=1`: an unrolled reverse loop makes XLA copy the whole
in-place gradient buffer at every step (3x slower at B32 T128 I128 H256).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lstm_jax.kernels.fused import backward
from lstm_jax.kernels.fused.layout import (
  PROJS,
  Layout,
  at,
  auto_layout,
  cast,
  loop_weights,
  preactivations,
  put,
)
from lstm_jax.ops.cell import (
  LSTMCarry,
  cell_pointwise,
  dot,
  real_steps,
  segment_resets,
  zero_carry,
)

Array = jax.Array

# The parameter keys the fused path implements; anything else (projection,
# peephole, layer norm) goes to the reference path.
SUPPORTED_KEYS = frozenset({"w_ih", "w_hh", "bias"})


def supports(params) -> bool:
  """Whether `params` is a cell this module implements (the standard cell)."""
  return set(params) == SUPPORTED_KEYS


class _Config(NamedTuple):
  """Static (hashable) settings of one fused call."""

  reverse: bool
  unroll: int
  remat: bool
  layout: Layout  # proj, wleft and matmul dtype (`fused/layout.py`)
  has_mask: bool
  has_reset: bool
  has_rdrop: bool  # recurrent dropout mask [B, H]
  has_zc: bool  # zoneout of c, <bool>[B, T, H]
  has_zh: bool  # zoneout of h


def _forward(cfg: _Config, w_ih, w_hh, bias, xs, c0, h0, mask, reset, regs, save: bool):
  """The forward loop. Returns (ys, (c, h), residuals or None).

  `regs` is (recurrent mask [B, H] or None, zoneout_c, zoneout_h [B, T, H]
  or None). With a recurrent mask the saved `h_in` is the dropped h_in * m,
  which is what both the gates and dW_hh read.

  Sequences are batch-major `[B, T, ...]`; each step reads and writes its
  slice in place, so no time-major copies of the inputs or outputs are made.
  """
  lay = cfg.layout
  dt = lay.dtype
  w = loop_weights(lay, w_ih, w_hh)
  b = bias.astype(jnp.float32)
  batch, t = xs.shape[:2]
  hid = w_hh.shape[0]
  if lay.proj == "hoist":
    # [B, T, 4H], one large matmul; the bias is added per step (as a separate
    # op here it would need a second [B, T, 4H] buffer).
    xs = dot(xs, cast(w_ih, dt), dt)
  # Hoisted and saving activations: each step overwrites its slice of the
  # projection with the activations, so the two share one buffer (and it
  # needs no zero-filling).
  in_place = lay.proj == "hoist" and save and not cfg.remat
  zeros = functools.partial(jnp.zeros, dtype=jnp.float32)
  bufs = {"ys": zeros((batch, t, hid))}
  if save:
    bufs["c_in"] = zeros((batch, t, hid))
    bufs["h_in"] = zeros((batch, t, hid))
    if not cfg.remat:
      bufs["acts"] = xs if in_place else zeros((batch, t, 4 * hid))
  first = t - 1 if cfg.reverse else 0
  rmask, zcs, zhs = regs

  def body(j, carry):
    c, h, bufs, nxt = carry
    k = t - 1 - j if cfg.reverse else j
    if cfg.has_reset:
      r = at(reset, k)[:, None]
      c_in, h_in = jnp.where(r, 0.0, c), jnp.where(r, 0.0, h)
    else:
      c_in, h_in = c, h
    h_rec = h_in * rmask if cfg.has_rdrop else h_in  # what W_hh reads
    pre = preactivations(lay, w, b, nxt if in_place else at(xs, k), h_rec)
    c_new, h_new, saved = cell_pointwise(pre, c_in, sigmoid="tanh")
    if cfg.has_zc:  # zoneout: these units keep the state that entered
      c_new = jnp.where(at(zcs, k), c_in, c_new)
    if cfg.has_zh:
      h_new = jnp.where(at(zhs, k), h_in, h_new)
    if cfg.has_mask:
      m = at(mask, k)[:, None]
      c_out, h_out = jnp.where(m, c_new, c), jnp.where(m, h_new, h)
      y = jnp.where(m, h_new, 0.0)
    else:
      c_out, h_out, y = c_new, h_new, h_new
    bufs = dict(bufs, ys=put(bufs["ys"], y, k))
    if save:
      bufs["c_in"] = put(bufs["c_in"], c_in, k)
      bufs["h_in"] = put(bufs["h_in"], h_rec, k)
      if not cfg.remat:
        bufs["acts"] = put(bufs["acts"], saved.acts, k)
    if in_place:  # read the next step's slice after this step's write
      nxt = at(bufs["acts"], k - 1 if cfg.reverse else k + 1)
    return c_out, h_out, bufs, nxt

  nxt = at(xs, first) if in_place else None
  c, h, bufs, _ = jax.lax.fori_loop(0, t, body, (c0, h0, bufs, nxt), unroll=cfg.unroll)
  ys = bufs.pop("ys")
  return ys, (c, h), (bufs if save else None)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _fused(cfg: _Config, w_ih, w_hh, bias, xs, c0, h0, mask, reset, regs):
  args = (w_ih, w_hh, bias, xs, c0, h0, mask, reset, regs)
  ys, carry, _ = _forward(cfg, *args, save=False)
  return ys, carry


def _fused_fwd(cfg, w_ih, w_hh, bias, xs, c0, h0, mask, reset, regs):
  args = (w_ih, w_hh, bias, xs, c0, h0, mask, reset, regs)
  ys, carry, res = _forward(cfg, *args, save=True)
  return (ys, carry), (w_ih, w_hh, bias, xs, mask, reset, regs, res)


_fused.defvjp(_fused_fwd, backward.backward)


def lstm_scan_fused(
  params,
  xs: Array,
  *,
  mask: Array | None = None,
  segment_ids: Array | None = None,
  initial_carry=None,
  reverse: bool = False,
  unroll: int = 1,
  remat: bool = False,
  dtype: Any = None,
  hoist: bool | None = None,
  proj: str | None = None,
  wleft: bool | None = None,
  recurrent_mask: Array | None = None,
  zoneout_c: Array | None = None,
  zoneout_h: Array | None = None,
):
  """One standard LSTM layer over a sequence with the hand-written backward.

  Arguments and results as `recurrent.lstm_scan_reference` (standard cell
  only), plus layout choices that change speed, never results (beyond float
  rounding):

  Args:
    hoist: True computes `xs @ w_ih` for all steps before the loop
      (proj="hoist"), False inside it (proj="step"); None: `auto_layout`.
    proj: "step" (two dots per step), "concat" (one dot on [x_t, h]) or
      "hoist"; overrides `hoist`.
    wleft: multiply in-loop weights as the left operand; None: `auto_layout`.
  """
  if not supports(params):
    raise ValueError(
      f"the fused path implements the standard cell {sorted(SUPPORTED_KEYS)}, "
      f"got keys {sorted(params)}"
    )
  batch = xs.shape[0]
  hid = params["w_hh"].shape[0]
  auto_proj, auto_wleft = auto_layout(batch, xs.shape[-1], hid)
  if proj is None:
    proj = auto_proj if hoist is None else ("hoist" if hoist else "step")
  if proj not in PROJS:
    raise ValueError(f"proj must be one of {PROJS}, got {proj!r}")
  mask = real_steps(mask, segment_ids)
  if initial_carry is None:
    initial_carry = zero_carry(params, batch)
  c0, h0 = (jnp.asarray(a, jnp.float32) for a in initial_carry)
  if mask is not None:
    mask = jnp.asarray(mask).astype(bool)
  reset = None
  if segment_ids is not None:
    reset = segment_resets(mask, jnp.asarray(segment_ids).astype(jnp.int32), reverse)
  regs = (
    None if recurrent_mask is None else jnp.asarray(recurrent_mask, jnp.float32),
    None if zoneout_c is None else jnp.asarray(zoneout_c).astype(bool),
    None if zoneout_h is None else jnp.asarray(zoneout_h).astype(bool),
  )
  f32 = dtype is None or np.dtype(dtype) == np.float32
  cfg = _Config(
    reverse=bool(reverse),
    unroll=int(unroll),
    remat=bool(remat),
    layout=Layout(
      proj=proj,
      # With bfloat16 operands XLA:CPU turns the weights-left dot (transposed
      # activation operand) back into a float32 dot: B64 T256 I256 H512
      # forward 55K tokens/s with it, 93K without. float32 is None's layout.
      wleft=(auto_wleft and f32) if wleft is None else bool(wleft),
      dtype=None if dtype is None else np.dtype(dtype),
    ),
    has_mask=mask is not None,
    has_reset=reset is not None,
    has_rdrop=regs[0] is not None,
    has_zc=regs[1] is not None,
    has_zh=regs[2] is not None,
  )
  ys, (c, h) = _fused(
    cfg, params["w_ih"], params["w_hh"], params["bias"], xs, c0, h0, mask, reset, regs
  )
  return ys, LSTMCarry(c, h)
