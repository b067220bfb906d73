"""The standard LSTM layer with a hand-written backward pass (`jax.custom_vjp`).

Same semantics as `recurrent.lstm_scan_reference` (masks, segment resets,
initial carry, reverse, bf16 matmuls, remat) for the standard cell
(`w_ih`, `w_hh`, `bias`); `recurrent.lstm_scan` routes the other variants to
the reference path.

Why a hand-written backward is faster than autodiff of the scan: JAX's
transpose of the scan accumulates `dW_hh`, `dW_ih` and `dbias` inside the
reverse loop (one small `[H, B] x [B, 4H]` matmul and a read-modify-write of
the whole weight gradient per step). Here the reverse loop only propagates
`dh`/`dc` and emits the gate gradients `dgates [T, B, 4H]`; the weight, bias
and input gradients are then three large matmuls (and a sum) after the loop,
which is what the hardware is good at.

The scan carries, per step in scan order::

  (c, h) = reset ? 0 : (c, h)                # a new segment starts
  gates  = x_t @ w_ih + h @ w_hh + bias
  c'     = f * c + i * g;  h' = o * tanh(c')
  (c, h) = mask ? (c', h') : (c, h);  y_t = mask ? h' : 0

The `reset` flags do not depend on the carry, so they are computed for all
steps before the loop from `segment_ids` and `mask` (no integer carry).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lstm_jax.recurrent import LSTMCarry

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
  dtype: Any  # np.dtype or None
  hoist: bool  # x @ w_ih for all steps before the loop, vs inside each step
  has_mask: bool
  has_reset: bool


def _cast(a: Array, dtype: Any) -> Array:
  return a if dtype is None else a.astype(dtype)


def _mm(a: Array, b: Array, dtype: Any) -> Array:
  """`a @ b` with inputs in `dtype` (None: as given) and a float32 result."""
  return jnp.dot(_cast(a, dtype), _cast(b, dtype), preferred_element_type=jnp.float32)


def _gate_acts(gates: Array) -> tuple[Array, Array, Array, Array]:
  """Gate activations from pre-activations `[B, 4H]` in order i, f, g, o."""
  i, f, g, o = jnp.split(gates, 4, axis=-1)
  return jax.nn.sigmoid(i), jax.nn.sigmoid(f), jnp.tanh(g), jax.nn.sigmoid(o)


def _shift(seq: Array, first: Array, reverse: bool) -> Array:
  """`seq` delayed by one step in scan order, with `first` at the start."""
  if reverse:
    return jnp.concatenate([seq[1:], first[None]], axis=0)
  return jnp.concatenate([first[None], seq[:-1]], axis=0)


def segment_resets(mask: Array, segment_ids: Array, reverse: bool) -> Array:
  """<bool>[T, B]: true where a real step starts a new segment (time-major).

  A real step resets the carry when the previous real step in scan order has a
  different, non-zero id; the first real step of a row never resets (it starts
  from the initial carry).
  """
  t = mask.shape[0]
  pos = jnp.arange(t, dtype=jnp.int32)[:, None]
  if reverse:
    idx = jnp.where(mask, pos, t)
    last = jax.lax.cummin(idx, axis=0, reverse=True)  # next real step at/after
    prev = jnp.concatenate([last[1:], jnp.full_like(last[:1], t)], axis=0)
    has_prev = prev < t
  else:
    idx = jnp.where(mask, pos, -1)
    last = jax.lax.cummax(idx, axis=0)  # last real step at/before
    prev = jnp.concatenate([jnp.full_like(last[:1], -1), last[:-1]], axis=0)
    has_prev = prev >= 0
  prev_seg = jnp.take_along_axis(segment_ids, jnp.clip(prev, 0, t - 1), axis=0)
  prev_seg = jnp.where(has_prev, prev_seg, 0)
  return mask & (prev_seg != 0) & (segment_ids != prev_seg)


def _forward(cfg: _Config, w_ih, w_hh, bias, xs, c0, h0, mask, reset, save: bool):
  """The forward scan. Returns (ys, (c, h), residual sequences or None)."""
  dt = cfg.dtype
  wih, whh = _cast(w_ih, dt), _cast(w_hh, dt)
  b = bias.astype(jnp.float32)
  t, batch = xs.shape[:2]
  inp = {}
  if cfg.hoist:
    gx = _mm(xs.reshape(t * batch, -1), wih, dt) + b
    inp["gx"] = gx.reshape(t, batch, -1)
  else:
    inp["x"] = xs
  if cfg.has_mask:
    inp["m"] = mask
  if cfg.has_reset:
    inp["r"] = reset

  def step(carry, s):
    c, h = carry
    if cfg.has_reset:
      r = s["r"][:, None]
      c_in, h_in = jnp.where(r, 0.0, c), jnp.where(r, 0.0, h)
    else:
      c_in, h_in = c, h
    gx = s["gx"] if cfg.hoist else _mm(s["x"], wih, dt) + b
    gates = gx + _mm(h_in, whh, dt)
    i, f, g, o = _gate_acts(gates)
    c_new = f * c_in + i * g
    h_new = o * jnp.tanh(c_new)
    if cfg.has_mask:
      m = s["m"][:, None]
      c_out, h_out = jnp.where(m, c_new, c), jnp.where(m, h_new, h)
      y = jnp.where(m, h_new, 0.0)
    else:
      c_out, h_out, y = c_new, h_new, h_new
    res = None
    if save:
      res = (c_in, h_in)
      if not cfg.remat:
        res = res + (jnp.concatenate([i, f, g, o], axis=-1),)
    return (c_out, h_out), (y, res)

  (c, h), (ys, res) = jax.lax.scan(
    step, (c0, h0), inp, reverse=cfg.reverse, unroll=cfg.unroll
  )
  return ys, (c, h), res


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _fused(cfg: _Config, w_ih, w_hh, bias, xs, c0, h0, mask, reset):
  ys, carry, _ = _forward(cfg, w_ih, w_hh, bias, xs, c0, h0, mask, reset, save=False)
  return ys, carry


def _fused_fwd(cfg, w_ih, w_hh, bias, xs, c0, h0, mask, reset):
  ys, carry, res = _forward(cfg, w_ih, w_hh, bias, xs, c0, h0, mask, reset, save=True)
  return (ys, carry), (w_ih, w_hh, bias, xs, mask, reset, res)


def _fused_bwd(cfg, saved, cts):
  w_ih, w_hh, bias, xs, mask, reset, res = saved
  dys, (dc_t, dh_t) = cts
  dt = cfg.dtype
  t, batch = xs.shape[:2]
  hid = w_hh.shape[0]
  wih, whh = _cast(w_ih, dt), _cast(w_hh, dt)
  whh_t = whh.T
  b = bias.astype(jnp.float32)
  c_ins, h_ins = res[0], res[1]
  inp = {"dy": dys, "c_in": c_ins}
  if cfg.remat:
    inp["x"], inp["h_in"] = xs, h_ins
  else:
    inp["acts"] = res[2]
  if cfg.has_mask:
    inp["m"] = mask
  if cfg.has_reset:
    inp["r"] = reset

  def step(carry, s):
    dc, dh = carry
    c_in = s["c_in"]
    if cfg.remat:
      gates = _mm(s["x"], wih, dt) + b + _mm(s["h_in"], whh, dt)
      i, f, g, o = _gate_acts(gates)
    else:
      i, f, g, o = jnp.split(s["acts"], 4, axis=-1)
    c_new = f * c_in + i * g
    tc = jnp.tanh(c_new)
    dhn = dh + s["dy"]
    dcn = dc
    if cfg.has_mask:
      m = s["m"][:, None]
      dhn = jnp.where(m, dhn, 0.0)
      dcn = jnp.where(m, dcn, 0.0)
    dcn = dcn + dhn * o * (1.0 - tc * tc)
    d_o = dhn * tc * o * (1.0 - o)
    d_i = dcn * g * i * (1.0 - i)
    d_f = dcn * c_in * f * (1.0 - f)
    d_g = dcn * i * (1.0 - g * g)
    dgates = jnp.concatenate([d_i, d_f, d_g, d_o], axis=-1)
    dc_in = dcn * f
    dh_in = _mm(dgates, whh_t, dt)
    if cfg.has_reset:
      r = s["r"][:, None]
      dc_in, dh_in = jnp.where(r, 0.0, dc_in), jnp.where(r, 0.0, dh_in)
    if cfg.has_mask:
      dc_in, dh_in = jnp.where(m, dc_in, dc), jnp.where(m, dh_in, dh)
    return (dc_in, dh_in), dgates

  (dc0, dh0), dgates = jax.lax.scan(
    step,
    (dc_t.astype(jnp.float32), dh_t.astype(jnp.float32)),
    inp,
    reverse=not cfg.reverse,
    unroll=cfg.unroll,
  )
  dg2 = dgates.reshape(t * batch, -1)
  x2 = xs.reshape(t * batch, -1)
  dw_ih = _mm(x2.T, dg2, dt).astype(w_ih.dtype)
  dw_hh = _mm(h_ins.reshape(t * batch, hid).T, dg2, dt).astype(w_hh.dtype)
  dbias = jnp.sum(dg2, axis=0).astype(bias.dtype)
  dxs = _mm(dg2, wih.T, dt).reshape(xs.shape).astype(xs.dtype)
  return (dw_ih, dw_hh, dbias, dxs, dc0, dh0, None, None)


_fused.defvjp(_fused_fwd, _fused_bwd)


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
  hoist: bool = False,
):
  """One standard LSTM layer over a sequence with the hand-written backward.

  Arguments and results as `recurrent.lstm_scan_reference` (standard cell only).
  """
  if not supports(params):
    raise ValueError(
      f"the fused path implements the standard cell {sorted(SUPPORTED_KEYS)}, "
      f"got keys {sorted(params)}"
    )
  batch = xs.shape[0]
  hid = params["w_hh"].shape[0]
  if segment_ids is not None:
    seg_mask = segment_ids != 0
    mask = seg_mask if mask is None else jnp.logical_and(mask, seg_mask)
  if initial_carry is None:
    c0 = jnp.zeros((batch, hid), jnp.float32)
    h0 = jnp.zeros((batch, hid), jnp.float32)
  else:
    c0, h0 = (jnp.asarray(a, jnp.float32) for a in initial_carry)
  xs_tm = jnp.swapaxes(xs, 0, 1)
  mask_tm = None if mask is None else jnp.swapaxes(mask, 0, 1).astype(bool)
  reset_tm = None
  if segment_ids is not None:
    seg_tm = jnp.swapaxes(segment_ids, 0, 1).astype(jnp.int32)
    reset_tm = segment_resets(mask_tm, seg_tm, reverse)
  cfg = _Config(
    reverse=bool(reverse),
    unroll=int(unroll),
    remat=bool(remat),
    dtype=None if dtype is None else np.dtype(dtype),
    hoist=bool(hoist),
    has_mask=mask_tm is not None,
    has_reset=reset_tm is not None,
  )
  ys, (c, h) = _fused(
    cfg,
    params["w_ih"],
    params["w_hh"],
    params["bias"],
    xs_tm,
    c0,
    h0,
    mask_tm,
    reset_tm,
  )
  return jnp.swapaxes(ys, 0, 1), LSTMCarry(c, h)
