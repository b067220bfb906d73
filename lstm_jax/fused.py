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
steps before the loop from `segment_ids` and `mask` (no integer carry).

What makes it fast (measurements in `auto_layout` and benchmarks/README.md):

* Weight gradients after the loop. JAX's transpose of the scan accumulates
  `dW_ih`, `dW_hh` and `dbias` inside the reverse loop (small `[K, B] x [B, 4H]`
  matmuls and a read-modify-write of the weight gradients at every step). Here
  the reverse loop only propagates `dh`/`dc` (one `[B, 4H] x [4H, H]` matmul per
  step) and leaves the gate gradients `dgates [B, T, 4H]`; `dW_ih = x^T dgates`,
  `dW_hh = h_in^T dgates`, `dbias` and `dx = dgates w_ih^T` are large matmuls.
* Little temporary memory. XLA:CPU allocates the temporaries of a computation
  afresh on every call, and above glibc's 32 MiB mmap threshold every page of
  them is faulted in again (~0.5 ms/MiB on the project's VM: with an earlier
  version of this module, the B32 I128 H256 gradient ran at 64K tokens/s at
  T=80 (31.7 MiB of temporaries) but 47K at T=96 (37.7 MiB)). So: sequences stay batch-major (no time-major copies of inputs,
  outputs or cotangents), the forward saves the activations `[B, T, 4H]`,
  `c_in` and `h_in` only (tanh(c') is recomputed), and the reverse loop writes
  `dgates` over the activations in place.
* XLA:CPU details: in-loop weight operands are prepared once outside the loops
  (a transposed operand is re-packed by the dot on every call), large weight
  matrices go on the left of the dot (`wleft`), and one tanh computes all four
  gate activations.

`remat=True` saves only `c_in` and `h_in` per step: the reverse loop recomputes
the gates and accumulates the weight gradients inside the loop (about the
speed of autodiff, less than half the memory of remat=False).

On CPU keep `unroll=1`: an unrolled reverse loop makes XLA copy the whole
in-place gradient buffer at every step (3x slower at B32 T128 I128 H256).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lstm_jax.recurrent import LSTMCarry, real_steps, zero_carry

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
  proj: str  # "step": x_t @ w_ih + h @ w_hh; "concat": [x_t, h] @ [w_ih; w_hh];
  # "hoist": x @ w_ih for all steps before the loop.
  wleft: bool  # in-loop matmuls as W^T a^T (see `_step_mm`)
  has_mask: bool
  has_reset: bool


def _cast(a: Array, dtype: Any) -> Array:
  return a if dtype is None else a.astype(dtype)


def _mm(a: Array, b: Array, dtype: Any) -> Array:
  """`a @ b` with inputs in `dtype` (None: as given) and a float32 result."""
  return jnp.dot(_cast(a, dtype), _cast(b, dtype), preferred_element_type=jnp.float32)


def _gate_consts(hid: int):
  """Per-column scale and offset: sigmoid(x) = .5 tanh(.5 x) + .5, g: tanh."""
  scale = np.full((4, hid), 0.5, np.float32)
  scale[2] = 1.0
  offset = np.full((4, hid), 0.5, np.float32)
  offset[2] = 0.0
  return jnp.asarray(scale.reshape(-1)), jnp.asarray(offset.reshape(-1))


def _activate(gates: Array) -> Array:
  """Gate activations `[B, 4H]` (i, f, g, o) from pre-activations.

  One tanh over all four gates, sigmoid(x) = 0.5 tanh(0.5 x) + 0.5: a single
  elementwise loop instead of one per gate (as fast as separate sigmoid/tanh
  on CPU in our measurements, and it saves a concatenation).
  """
  scale, offset = _gate_consts(gates.shape[-1] // 4)
  return scale * jnp.tanh(scale * gates) + offset


def segment_resets(mask: Array, segment_ids: Array, reverse: bool) -> Array:
  """<bool>[B, T]: true where a real step starts a new segment.

  A real step resets the carry when the previous real step in scan order has a
  different, non-zero id; the first real step of a row never resets (it starts
  from the initial carry).
  """
  t = mask.shape[1]
  pos = jnp.arange(t, dtype=jnp.int32)[None, :]
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


def _at(seq: Array, k) -> Array:
  """Step `k` of a batch-major sequence `[B, T, ...]` -> `[B, ...]`."""
  return jax.lax.dynamic_index_in_dim(seq, k, axis=1, keepdims=False)


def _put(seq: Array, value: Array, k) -> Array:
  """`seq[:, k] = value` (in place inside a loop)."""
  return jax.lax.dynamic_update_index_in_dim(seq, value[:, None], k, axis=1)


def _step_mm(a: Array, w: Array, wleft: bool, dtype: Any) -> Array:
  """`a @ W` inside the loop, `w` as prepared by `_weights`.

  wleft: `w` holds W^T and the product is computed as `(W^T a^T)^T`: the CPU
  dot then packs the small activation operand instead of re-packing the weight
  matrix at every step (the barrier keeps XLA from folding the transposes
  back).
  """
  if not wleft:
    return _mm(a, w, dtype)
  return jax.lax.optimization_barrier(_mm(w, a.T, dtype)).T


def _prepare(w: Array, wleft: bool, dtype: Any) -> Array:
  """A loop-invariant weight operand, cast and (wleft) transposed once."""
  w = _cast(w, dtype)
  # The barrier materialises the transpose outside the loop.
  return jax.lax.optimization_barrier(w.T) if wleft else w


def _weights(cfg: _Config, w_ih, w_hh):
  """The loop-invariant matmul operands of the forward step."""
  if cfg.proj == "concat":
    return {"w": _prepare(jnp.concatenate([w_ih, w_hh], axis=0), cfg.wleft, cfg.dtype)}
  return {
    "w_ih": _prepare(w_ih, cfg.wleft, cfg.dtype),
    "w_hh": _prepare(w_hh, cfg.wleft, cfg.dtype),
  }


def _gates(cfg: _Config, w, b, x, h_in):
  """Gate pre-activations; returns (gates, the matmul's LHS to save or None)."""
  dt, wl = cfg.dtype, cfg.wleft
  if cfg.proj == "concat":
    xh = _cast(jnp.concatenate([_cast(x, dt), _cast(h_in, dt)], axis=-1), dt)
    return _step_mm(xh, w["w"], wl, dt) + b, xh
  gh = _step_mm(h_in, w["w_hh"], wl, dt)
  if cfg.proj == "hoist":  # x is the hoisted x @ w_ih
    return x + b + gh, None
  return _step_mm(x, w["w_ih"], wl, dt) + b + gh, None


def _forward(cfg: _Config, w_ih, w_hh, bias, xs, c0, h0, mask, reset, save: bool):
  """The forward loop. Returns (ys, (c, h), residuals or None).

  Sequences are batch-major `[B, T, ...]`; each step reads and writes its
  slice in place, so no time-major copies of the inputs or outputs are made.
  """
  dt = cfg.dtype
  w = _weights(cfg, w_ih, w_hh)
  b = bias.astype(jnp.float32)
  batch, t = xs.shape[:2]
  hid = w_hh.shape[0]
  if cfg.proj == "hoist":
    # [B, T, 4H], one large matmul; the bias is added per step (as a separate
    # op here it would need a second [B, T, 4H] buffer).
    xs = _mm(xs, _cast(w_ih, dt), dt)
  # Hoisted and saving activations: each step overwrites its slice of the
  # projection with the activations, so the two share one buffer (and it
  # needs no zero-filling).
  in_place = cfg.proj == "hoist" and save and not cfg.remat
  zeros = functools.partial(jnp.zeros, dtype=jnp.float32)
  bufs = {"ys": zeros((batch, t, hid))}
  if save:
    bufs["c_in"] = zeros((batch, t, hid))
    bufs["h_in"] = zeros((batch, t, hid))
    if not cfg.remat:
      bufs["acts"] = xs if in_place else zeros((batch, t, 4 * hid))
  first = t - 1 if cfg.reverse else 0

  def body(j, carry):
    c, h, bufs, nxt = carry
    k = t - 1 - j if cfg.reverse else j
    if cfg.has_reset:
      r = _at(reset, k)[:, None]
      c_in, h_in = jnp.where(r, 0.0, c), jnp.where(r, 0.0, h)
    else:
      c_in, h_in = c, h
    gates, _ = _gates(cfg, w, b, nxt if in_place else _at(xs, k), h_in)
    acts = _activate(gates)
    i, f, g, o = jnp.split(acts, 4, axis=-1)
    c_new = f * c_in + i * g
    h_new = o * jnp.tanh(c_new)
    if cfg.has_mask:
      m = _at(mask, k)[:, None]
      c_out, h_out = jnp.where(m, c_new, c), jnp.where(m, h_new, h)
      y = jnp.where(m, h_new, 0.0)
    else:
      c_out, h_out, y = c_new, h_new, h_new
    bufs = dict(bufs, ys=_put(bufs["ys"], y, k))
    if save:
      bufs["c_in"] = _put(bufs["c_in"], c_in, k)
      bufs["h_in"] = _put(bufs["h_in"], h_in, k)
      if not cfg.remat:
        bufs["acts"] = _put(bufs["acts"], acts, k)
    if in_place:  # read the next step's slice after this step's write
      nxt = _at(bufs["acts"], k - 1 if cfg.reverse else k + 1)
    return c_out, h_out, bufs, nxt

  nxt = _at(xs, first) if in_place else None
  c, h, bufs, _ = jax.lax.fori_loop(0, t, body, (c0, h0, bufs, nxt), unroll=cfg.unroll)
  ys = bufs.pop("ys")
  return ys, (c, h), (bufs if save else None)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _fused(cfg: _Config, w_ih, w_hh, bias, xs, c0, h0, mask, reset):
  ys, carry, _ = _forward(cfg, w_ih, w_hh, bias, xs, c0, h0, mask, reset, save=False)
  return ys, carry


def _fused_fwd(cfg, w_ih, w_hh, bias, xs, c0, h0, mask, reset):
  ys, carry, res = _forward(cfg, w_ih, w_hh, bias, xs, c0, h0, mask, reset, save=True)
  return (ys, carry), (w_ih, w_hh, bias, xs, mask, reset, res)


def _gate_grads(acts, c_in, tc, dc, dh):
  """d gates `[B, 4H]` and d c_in from the step's activations, c_in, tanh(c').

  `dc`, `dh` are the gradients w.r.t. the step's new c and h. The four gate
  gradients are one [B, 4, H] product so that XLA emits a single loop for them.
  """
  batch, hid4 = acts.shape
  hid = hid4 // 4
  i, f, g, o = jnp.split(acts, 4, axis=-1)
  dc = dc + dh * o * (1.0 - tc * tc)
  partner = jnp.stack([dc * g, dc * c_in, dc * i, dh * tc], axis=1)
  a = acts.reshape(batch, 4, hid)
  k = jax.lax.broadcasted_iota(jnp.int32, (1, 4, 1), 1)
  deriv = jnp.where(k == 2, 1.0 - a * a, a * (1.0 - a))
  return (deriv * partner).reshape(batch, hid4), dc * f


def _fused_bwd(cfg, saved, cts):
  w_ih, w_hh, bias, xs, mask, reset, res = saved
  dys, (dc_t, dh_t) = cts
  dt = cfg.dtype
  batch, t = xs.shape[:2]
  hid = w_hh.shape[0]
  w = _weights(cfg, w_ih, w_hh) if cfg.remat else None
  # dh_in = d_gates @ w_hh^T; prepared once (a transposed operand would be
  # re-packed by the CPU dot at every step).
  whh_t = _prepare(w_hh.T, cfg.wleft, dt)
  b = bias.astype(jnp.float32)
  c_ins, h_ins = res["c_in"], res["h_in"]
  if cfg.remat:
    # Only c_in and h_in were saved: recompute the gates at each step and
    # accumulate the weight gradients inside the loop (no [B, T, 4H] buffer).
    wih = _cast(w_ih, dt)
    acc = (
      jnp.zeros(w_ih.shape, jnp.float32),
      jnp.zeros(w_hh.shape, jnp.float32),
      jnp.zeros(bias.shape, jnp.float32),
      jnp.zeros(xs.shape, jnp.float32),  # dxs (dropped by XLA when unused)
    )
  else:
    # The gate gradients overwrite the saved activations step by step.
    acc = res["acts"]

  def body(j, carry):
    dc, dh, acc, nxt = carry
    k = j if cfg.reverse else t - 1 - j
    c_in = _at(c_ins, k)
    if cfg.remat:
      x, h_in = _at(xs, k), _at(h_ins, k)
      gx = _mm(x, wih, dt) if cfg.proj == "hoist" else x
      acts = _activate(_gates(cfg, w, b, gx, h_in)[0])
    else:
      acts = nxt
    i, f, g, _ = jnp.split(acts, 4, axis=-1)
    tc = jnp.tanh(f * c_in + i * g)
    dhn = dh + _at(dys, k).astype(jnp.float32)
    dcn = dc
    if cfg.has_mask:
      m = _at(mask, k)[:, None]
      dhn = jnp.where(m, dhn, 0.0)
      dcn = jnp.where(m, dcn, 0.0)
    dgates, dc_in = _gate_grads(acts, c_in, tc, dcn, dhn)
    dh_in = _step_mm(dgates, whh_t, cfg.wleft, dt)
    if cfg.has_reset:
      r = _at(reset, k)[:, None]
      dc_in, dh_in = jnp.where(r, 0.0, dc_in), jnp.where(r, 0.0, dh_in)
    if cfg.has_mask:
      dc_in, dh_in = jnp.where(m, dc_in, dc), jnp.where(m, dh_in, dh)
    if cfg.remat:
      d_wih, d_whh, d_b, d_xs = acc
      acc = (
        d_wih + _mm(x.T, dgates, dt),
        d_whh + _mm(h_in.T, dgates, dt),
        d_b + jnp.sum(dgates, axis=0),
        _put(d_xs, _mm(dgates, wih.T, dt), k),
      )
    else:
      # In place: the only other reader of the buffer is the read of the next
      # step's activations, after this write. (When the loop ops read the
      # buffer directly, XLA copies the whole buffer at every step.)
      acc = _put(acc, dgates, k)
      nxt = _at(acc, k + 1 if cfg.reverse else k - 1)  # clamped on the last step
    return dc_in, dh_in, acc, nxt

  first = 0 if cfg.reverse else t - 1
  nxt = None if cfg.remat else _at(acc, first)
  dc0, dh0, acc, _ = jax.lax.fori_loop(
    0,
    t,
    body,
    (dc_t.astype(jnp.float32), dh_t.astype(jnp.float32), acc, nxt),
    unroll=cfg.unroll,
  )
  if cfg.remat:
    dw_ih, dw_hh, dbias, dxs = acc
  else:
    dg2 = acc.reshape(batch * t, -1)
    # The weight gradients contract over B * T rows: XLA:CPU runs that
    # (transposed-operand) dot faster in float32 than in bfloat16 (209 vs 155
    # GFLOP/s, one core), and float32 is the more accurate; so no `dt` here.
    dw_ih = _mm(xs.reshape(batch * t, -1).T, dg2, None)
    dw_hh = _mm(h_ins.reshape(batch * t, hid).T, dg2, None)
    dbias = jnp.sum(dg2, axis=0)
    dxs = _mm(dg2, _cast(w_ih, dt).T, dt).reshape(xs.shape)
  return (
    dw_ih.astype(w_ih.dtype),
    dw_hh.astype(w_hh.dtype),
    dbias.astype(bias.dtype),
    dxs.astype(xs.dtype),
    dc0,
    dh0,
    None,
    None,
  )


_fused.defvjp(_fused_fwd, _fused_bwd)


PROJS = ("step", "concat", "hoist")

# CPU thresholds of `auto_layout`: weight matrices at least this large
# (elements of [I + H, 4H]) are multiplied "weights on the left"; steps with at
# least this many multiply-adds use two dots.
_WLEFT_MIN_ELEMENTS = 1_500_000
_STEP_MIN_MACS = 2_000_000


def auto_layout(batch: int, in_features: int, hidden: int, backend: str | None = None):
  """The (proj, wleft) choice of `lstm_scan_fused` for a shape and backend.

  CPU (measured on this project's 2-core AMD EPYC, XLA:CPU with YNNPACK dots;
  forward+backward tokens/s, B16 T64 I32 H64 / B32 T128 I128 H256 / B64 T256
  I256 H512):

  * proj="step" (x_t @ w_ih and h @ w_hh as two dots in the loop). On one core
    it ties with one dot on [x_t, h] ("concat": 951K/79.8K/20.0K vs step
    919K/78.4K/19.7K); on two cores the two independent dots run in parallel
    and "step" wins (B32 T128: 106K vs 95K, quiet machine). Below
    `_STEP_MIN_MACS` multiply-adds per step the loop is overhead-bound and the
    single dot wins on two cores too (B16 T64: 504K vs 483K, busy machine).
    Hoisting x @ w_ih out of the loop ("hoist": 926K/77.8K/19.2K on one core,
    101K at B32 T128 on two) gains nothing on CPU.
  * wleft (compute `(W^T a^T)^T`): XLA's CPU dot re-packs its right-hand
    operand on every call, which for a large weight matrix costs more than the
    two small transposes: one core, B64 T256 I256 H512 +4% (19.9K vs 19.1K),
    B16 T256 I512 H1024 +27%, but B32 T128 I128 H256 -7% and B16 T64 I32 H64
    -25%; hence the threshold on the weight size.

  GPU/TPU: not measured in this project (no accelerator was available). The
  default follows cuDNN's layout: the input projection as one large matmul
  before the loop, weights as the right operand.
  """
  backend = backend or jax.default_backend()
  if backend == "cpu":
    weights = (in_features + hidden) * 4 * hidden
    proj = "step" if batch * weights >= _STEP_MIN_MACS else "concat"
    return proj, weights >= _WLEFT_MIN_ELEMENTS
  return "hoist", False


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
  cfg = _Config(
    reverse=bool(reverse),
    unroll=int(unroll),
    remat=bool(remat),
    dtype=None if dtype is None else np.dtype(dtype),
    proj=proj,
    # With bfloat16 operands XLA:CPU turns the weights-left dot (transposed
    # activation operand) back into a float32 dot: B64 T256 I256 H512 forward
    # 55K tokens/s with it, 93K without.
    wleft=(auto_wleft and dtype is None) if wleft is None else bool(wleft),
    has_mask=mask is not None,
    has_reset=reset is not None,
  )
  ys, (c, h) = _fused(
    cfg, params["w_ih"], params["w_hh"], params["bias"], xs, c0, h0, mask, reset
  )
  return ys, LSTMCarry(c, h)
