"""Pallas kernels of the LSTM recurrence (forward and backward), two layouts.

Both kernels take the input projection `gx = x @ w_ih + bias` precomputed
(one large matmul outside, as `fused.py` does with proj="hoist") and leave the
weight gradients to matmuls outside: the forward produces the outputs, the
final carry and the residuals (gate activations, `c_in`, `h_in`); the backward
runs the reverse recurrence and produces `d_gates` and the initial-carry
gradient. Arrays are time-major `[T, B, ...]` here; `mask` and `reset` are
<float32>[T, B, 1] (1.0 = real step / carry reset before the step, as
`fused.segment_resets`).

"tpu" (Mosaic TPU; also the interpret-mode default on CPU):
  grid (batch blocks, time blocks), time "arbitrary" (sequential). W_hh (and
  W_hh^T in the backward) has a constant block index, so it is copied into
  VMEM once per batch block and stays resident for all time steps (single
  buffered: `pl.Buffered(1)`); the carry lives in VMEM scratch across time
  blocks; `gx` and the outputs stream through double-buffered time blocks of
  `block_t` steps. Each step is one [Bb, Hp] x [Hp, 4Hp] MXU matmul. Blocks are
  (8, 128)-aligned: H is padded to a multiple of 128, B to a multiple of 8.

"gpu" (Triton, selected by `pallas.triton.CompilerParams`: in jax 0.10.2 a
pallas_call without them lowers to Mosaic GPU (`mosaic_gpu_v2`), whose
warpgroup programming model this kernel does not use):
  A persistent recurrent kernel for one GPU SM is not possible for the
  benchmark shapes: W_hh of H=1024 is 8 MiB in bf16 (16 MiB in f32) and one
  SM has 228 KiB of shared memory. Spreading W_hh over all SMs (Baidu's
  persistent RNNs, FlashRNN) needs a grid-wide barrier at every step, which
  Triton does not offer (a barrier built from atomics deadlocks unless every
  program is co-resident, which Triton does not guarantee). So: a grid over
  batch blocks of `block_b` rows; each program runs the whole time loop and,
  at every step, multiplies its [Bb, Hp] state by W_hh in [block_h] column
  and [block_k] row tiles streamed from L2 (an 8 MiB W_hh stays in the H200's
  L2), with a CTA barrier (`debug_barrier`) between steps because the new
  state is exchanged through global memory. Expected cost: W_hh is read from
  L2 once per step per batch block, and only B / block_b SMs work (4 of 132 at
  B64); this wins over the scan at small H and B (no per-step launches) and is
  expected to lose to cuDNN at B64 H1024. Tensor shapes are powers of two: H
  is padded to a power of two (>= 16).

Padded hidden units have zero weights and zero gate inputs, so they stay at
c = h = 0; padded batch rows and time steps are masked; both are sliced off.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu
from jax.experimental.pallas import triton as pltriton

Array = jax.Array
F32 = jnp.float32

# Bytes of VMEM the TPU kernel may plan for. v5e/v6e have 128 MiB per core and
# v5p 95 MiB; v4 has 32 MiB, where the largest shapes here fail to compile.
TPU_VMEM_BUDGET = 64 * 2**20
# Bytes of one streamed gx time block on TPU (double-buffered).
_TPU_GX_BLOCK_BYTES = 2 * 2**20


class Blocks(NamedTuple):
  """Padded sizes and block shapes of one kernel call (static)."""

  variant: str  # "tpu" or "gpu"
  bp: int  # padded batch
  hp: int  # padded hidden
  tp: int  # padded time
  bb: int  # batch rows per program
  bt: int  # time steps per block ("tpu")
  bh: int  # hidden columns per tile ("gpu")
  bk: int  # contraction rows per tile ("gpu")


def _round_up(n: int, m: int) -> int:
  return -(-n // m) * m


def _pow2(n: int) -> int:
  return 1 << max(0, math.ceil(math.log2(max(n, 1))))


def choose_blocks(variant: str, batch: int, time: int, hidden: int, **over) -> Blocks:
  """Block shapes for a variant and shape; `over` overrides any field."""
  if variant == "tpu":
    hp = _round_up(hidden, 128)
    bp = _round_up(batch, 8)
    bb = over.get("bb") or (bp if bp <= 256 else 256)
    bp = _round_up(bp, bb)
    bt = over.get("bt") or max(1, min(time, _TPU_GX_BLOCK_BYTES // (bb * 16 * hp)))
    return Blocks("tpu", bp, hp, _round_up(time, bt), bb, bt, hp, hp)
  if variant == "gpu":
    hp = _pow2(max(hidden, 16))
    bb = over.get("bb") or 16
    bh = over.get("bh") or min(hp, 64)
    bk = over.get("bk") or min(hp, 64)
    return Blocks("gpu", _round_up(batch, bb), hp, time, bb, time, bh, bk)
  raise ValueError(f"variant must be 'tpu' or 'gpu', got {variant!r}")


def tpu_vmem_bytes(blk: Blocks, w_itemsize: int, save: bool = True) -> int:
  """VMEM the TPU forward or backward kernel needs (the larger of the two)."""
  w = blk.hp * 4 * blk.hp * w_itemsize  # resident, single-buffered
  rows = blk.bt * blk.bb * 4
  fwd = rows * (4 * blk.hp + blk.hp + (6 * blk.hp if save else 0))
  bwd = rows * (4 * blk.hp + 2 * blk.hp + 4 * blk.hp)
  return w + 2 * max(fwd, bwd) + 8 * blk.bb * blk.hp * 4


def _sigmoid(x):
  return 0.5 * jnp.tanh(0.5 * x) + 0.5


def _dot(a, b, dt):
  """a @ b in `dt` (None: float32 at full precision) with a float32 result."""
  if dt is None:
    prec = jax.lax.Precision.HIGHEST
    return jnp.dot(a.astype(F32), b, precision=prec, preferred_element_type=F32)
  return jnp.dot(a.astype(dt), b, preferred_element_type=F32)


def _cell(gi, gf, gg, go, c_in):
  """Gate activations and the new (c, h) from pre-activations."""
  i, f, g, o = _sigmoid(gi), _sigmoid(gf), jnp.tanh(gg), _sigmoid(go)
  c_new = f * c_in + i * g
  return (i, f, g, o), c_new, o * jnp.tanh(c_new)


def _cell_grads(i, f, g, o, c_in, dc, dh):
  """d pre-activations (i, f, g, o) and d c_in; dc, dh: grads of the new c, h."""
  tc = jnp.tanh(f * c_in + i * g)
  dc = dc + dh * o * (1.0 - tc * tc)
  dgs = (
    dc * g * i * (1.0 - i),
    dc * c_in * f * (1.0 - f),
    dc * i * (1.0 - g * g),
    dh * tc * o * (1.0 - o),
  )
  return dgs, dc * f


# --------------------------------------------------------------------- TPU


def _tpu_fwd_kernel(reverse, save, dt, gx, w, c0, h0, m_ref, r_ref, *refs):
  if save:
    ys, acts, cin, hin, c_t, h_t, c_sc, h_sc = refs
  else:
    ys, c_t, h_t, c_sc, h_sc = refs
  hp = c_sc.shape[-1]
  nsteps = gx.shape[0]

  @pl.when(pl.program_id(1) == 0)
  def _init():
    c_sc[...] = c0[...]
    h_sc[...] = h0[...]

  def body(j, carry):
    c, h = carry
    k = nsteps - 1 - j if reverse else j
    r = r_ref[k] > 0
    c_in, h_in = jnp.where(r, 0.0, c), jnp.where(r, 0.0, h)
    gates = gx[k] + _dot(h_in, w[...], dt)
    pre = [gates[:, n * hp : (n + 1) * hp] for n in range(4)]
    a, c_new, h_new = _cell(*pre, c_in)
    m = m_ref[k] > 0
    ys[k] = jnp.where(m, h_new, 0.0)
    if save:
      for n in range(4):
        acts[k, :, n * hp : (n + 1) * hp] = a[n]
      cin[k] = c_in
      hin[k] = h_in
    return jnp.where(m, c_new, c), jnp.where(m, h_new, h)

  c, h = jax.lax.fori_loop(0, nsteps, body, (c_sc[...], h_sc[...]))
  c_sc[...] = c
  h_sc[...] = h
  c_t[...] = c  # constant block index: written back once, after the last block
  h_t[...] = h


def _tpu_bwd_kernel(reverse, dt, acts, cin, dys, wt, m_ref, r_ref, dc_t, dh_t, *refs):
  dg, dc0, dh0, dc_sc, dh_sc = refs
  hp = dc_sc.shape[-1]
  nsteps = acts.shape[0]

  @pl.when(pl.program_id(1) == 0)
  def _init():
    dc_sc[...] = dc_t[...]
    dh_sc[...] = dh_t[...]

  def body(j, carry):
    dc, dh = carry
    k = j if reverse else nsteps - 1 - j
    a = acts[k]
    i, f, g, o = (a[:, n * hp : (n + 1) * hp] for n in range(4))
    m = m_ref[k] > 0
    dhn = jnp.where(m, dh + dys[k], 0.0)
    dcn = jnp.where(m, dc, 0.0)
    dgs, dc_in = _cell_grads(i, f, g, o, cin[k], dcn, dhn)
    dh_in = jnp.zeros_like(dh)
    for n in range(4):
      dg[k, :, n * hp : (n + 1) * hp] = dgs[n]
      dh_in = dh_in + _dot(dgs[n], wt[n * hp : (n + 1) * hp, :], dt)
    r = r_ref[k] > 0
    dc_in, dh_in = jnp.where(r, 0.0, dc_in), jnp.where(r, 0.0, dh_in)
    return jnp.where(m, dc_in, dc), jnp.where(m, dh_in, dh)

  dc, dh = jax.lax.fori_loop(0, nsteps, body, (dc_sc[...], dh_sc[...]))
  dc_sc[...] = dc
  dh_sc[...] = dh
  dc0[...] = dc
  dh0[...] = dh


def _tpu_specs(blk: Blocks, reverse_time: bool):
  nt = blk.tp // blk.bt

  def tmap(b, t):
    return (nt - 1 - t if reverse_time else t, b, 0)

  def seq(width):
    return pl.BlockSpec((blk.bt, blk.bb, width), tmap)

  state = pl.BlockSpec((blk.bb, blk.hp), lambda b, t: (b, 0))
  return seq, state, (blk.bp // blk.bb, nt)


def _weight_spec(shape):
  return pl.BlockSpec(shape, lambda b, t: (0, 0), pipeline_mode=pl.Buffered(1))


def _tpu_params(blk: Blocks, w_itemsize: int):
  vmem = tpu_vmem_bytes(blk, w_itemsize)
  return pltpu.CompilerParams(
    dimension_semantics=("parallel", "arbitrary"),
    vmem_limit_bytes=int(min(max(vmem * 5 // 4, 32 * 2**20), 120 * 2**20)),
  )


def tpu_forward(blk, reverse, save, dt, interpret, gx, w, c0, h0, mask, reset):
  """TPU kernel forward on padded time-major inputs; see module docstring."""
  seq, state, grid = _tpu_specs(blk, reverse)
  hp, shape = blk.hp, (blk.tp, blk.bp)
  outs = [jax.ShapeDtypeStruct(shape + (hp,), F32)]
  out_specs = [seq(hp)]
  if save:
    outs += [jax.ShapeDtypeStruct(shape + (n * hp,), F32) for n in (4, 1, 1)]
    out_specs += [seq(4 * hp), seq(hp), seq(hp)]
  outs += [jax.ShapeDtypeStruct((blk.bp, hp), F32)] * 2
  out_specs += [state, state]
  kernel = _bind(_tpu_fwd_kernel, reverse, save, dt)
  return pl.pallas_call(
    kernel,
    grid=grid,
    in_specs=[seq(4 * hp), _weight_spec((hp, 4 * hp)), state, state, seq(1), seq(1)],
    out_specs=out_specs,
    out_shape=outs,
    scratch_shapes=[pltpu.VMEM((blk.bb, hp), F32)] * 2,
    compiler_params=_tpu_params(blk, w.dtype.itemsize),
    interpret=interpret,
    name="lstm_fwd_tpu",
  )(gx, w, c0, h0, mask, reset)


def tpu_backward(
  blk, reverse, dt, interpret, acts, cin, dys, wt, mask, reset, dc_t, dh_t
):
  """TPU kernel backward: (d_gates [Tp, Bp, 4Hp], dc0, dh0)."""
  seq, state, grid = _tpu_specs(blk, not reverse)
  hp, shape = blk.hp, (blk.tp, blk.bp)
  return pl.pallas_call(
    _bind(_tpu_bwd_kernel, reverse, dt),
    grid=grid,
    in_specs=[
      seq(4 * hp),
      seq(hp),
      seq(hp),
      _weight_spec((4 * hp, hp)),
      seq(1),
      seq(1),
      state,
      state,
    ],
    out_specs=[seq(4 * hp), state, state],
    out_shape=[jax.ShapeDtypeStruct(shape + (4 * hp,), F32)]
    + [jax.ShapeDtypeStruct((blk.bp, hp), F32)] * 2,
    scratch_shapes=[pltpu.VMEM((blk.bb, hp), F32)] * 2,
    compiler_params=_tpu_params(blk, wt.dtype.itemsize),
    interpret=interpret,
    name="lstm_bwd_tpu",
  )(acts, cin, dys, wt, mask, reset, dc_t, dh_t)


def _bind(fn, *static):
  def kernel(*refs):
    return fn(*static, *refs)

  return kernel


# --------------------------------------------------------------------- GPU


def _barrier(interpret: bool):
  # The interpreter runs a program as one sequential thread: nothing to sync.
  if not interpret:
    pltriton.debug_barrier()


def _gpu_fwd_kernel(blk, reverse, save, dt, interpret, gx, w, m_ref, r_ref, *refs):
  # refs: the two aliased state inputs (unused: their outputs alias them),
  # ys, [acts, cin, hin], then the state outputs sc, sh [2, Bb, Hp].
  ys, *rest = refs[2:-2]
  sc, sh = refs[-2:]
  acts, cin, hin = rest if save else (None, None, None)
  hp, bh, bk, nsteps = blk.hp, blk.bh, blk.bk, gx.shape[0]

  def step(s, _):
    k = nsteps - 1 - s if reverse else s
    p = jax.lax.rem(s, 2)  # jnp.remainder does not lower to Triton
    q = 1 - p
    r = r_ref[k] > 0
    m = m_ref[k] > 0

    def tile(j, _):
      col = pl.multiple_of(j * bh, bh)

      def contract(kk, accs):
        row = pl.multiple_of(kk * bk, bk)
        hk = jnp.where(r, 0.0, sh[p, :, pl.ds(row, bk)])
        return tuple(
          acc + _dot(hk, w[pl.ds(row, bk), pl.ds(n * hp + col, bh)], dt)
          for n, acc in enumerate(accs)
        )

      accs = tuple(gx[k, :, pl.ds(n * hp + col, bh)] for n in range(4))
      pre = jax.lax.fori_loop(0, hp // bk, contract, accs)
      c_prev, h_prev = sc[p, :, pl.ds(col, bh)], sh[p, :, pl.ds(col, bh)]
      c_in = jnp.where(r, 0.0, c_prev)
      a, c_new, h_new = _cell(*pre, c_in)
      ys[k, :, pl.ds(col, bh)] = jnp.where(m, h_new, 0.0)
      if save:
        for n in range(4):
          acts[k, :, pl.ds(n * hp + col, bh)] = a[n]
        cin[k, :, pl.ds(col, bh)] = c_in
        hin[k, :, pl.ds(col, bh)] = jnp.where(r, 0.0, h_prev)
      sc[q, :, pl.ds(col, bh)] = jnp.where(m, c_new, c_prev)
      sh[q, :, pl.ds(col, bh)] = jnp.where(m, h_new, h_prev)
      return 0

    jax.lax.fori_loop(0, hp // bh, tile, 0)
    _barrier(interpret)  # the next step reads all of sh[q]
    return 0

  jax.lax.fori_loop(0, nsteps, step, 0)


def _gpu_bwd_kernel(
  blk, reverse, dt, interpret, acts, cin, dys, wt, m_ref, r_ref, *refs
):
  dg, sdc, sdh = refs[-3:]
  hp, bh, bk, nsteps = blk.hp, blk.bh, blk.bk, acts.shape[0]

  def step(s, _):
    k = s if reverse else nsteps - 1 - s
    p = jax.lax.rem(s, 2)  # jnp.remainder does not lower to Triton
    q = 1 - p
    r = r_ref[k] > 0
    m = m_ref[k] > 0

    def gates(j, _):
      col = pl.multiple_of(j * bh, bh)
      a = [acts[k, :, pl.ds(n * hp + col, bh)] for n in range(4)]
      dc, dh = sdc[p, :, pl.ds(col, bh)], sdh[p, :, pl.ds(col, bh)]
      dhn = jnp.where(m, dh + dys[k, :, pl.ds(col, bh)], 0.0)
      dgs, dc_in = _cell_grads(
        *a, cin[k, :, pl.ds(col, bh)], jnp.where(m, dc, 0.0), dhn
      )
      for n in range(4):
        dg[k, :, pl.ds(n * hp + col, bh)] = dgs[n]
      sdc[q, :, pl.ds(col, bh)] = jnp.where(m, jnp.where(r, 0.0, dc_in), dc)
      return 0

    def recur(j, _):
      col = pl.multiple_of(j * bh, bh)

      def contract(kk, acc):
        row = pl.multiple_of(kk * bk, bk)
        for n in range(4):
          d = dg[k, :, pl.ds(n * hp + row, bk)]
          acc = acc + _dot(d, wt[pl.ds(n * hp + row, bk), pl.ds(col, bh)], dt)
        return acc

      acc = jax.lax.fori_loop(0, hp // bk, contract, jnp.zeros((blk.bb, bh), F32))
      dh = sdh[p, :, pl.ds(col, bh)]
      sdh[q, :, pl.ds(col, bh)] = jnp.where(m, jnp.where(r, 0.0, acc), dh)
      return 0

    jax.lax.fori_loop(0, hp // bh, gates, 0)
    _barrier(interpret)  # recur reads all of dg[k]
    jax.lax.fori_loop(0, hp // bh, recur, 0)
    _barrier(interpret)  # the next step reads all of sdh[q]
    return 0

  jax.lax.fori_loop(0, nsteps, step, 0)


def _gpu_call(kernel, blk, interpret, name, in_specs, ins, outs, out_specs, aliases):
  return pl.pallas_call(
    kernel,
    grid=(blk.bp // blk.bb,),
    in_specs=in_specs,
    out_specs=out_specs,
    out_shape=outs,
    input_output_aliases=aliases,
    compiler_params=pltriton.CompilerParams(num_warps=4, num_stages=1),
    interpret=interpret,
    name=name,
  )(*ins)


def _gpu_specs(blk: Blocks):
  def seq(width):
    return pl.BlockSpec((blk.tp, blk.bb, width), lambda b: (0, b, 0))

  state = pl.BlockSpec((2, blk.bb, blk.hp), lambda b: (0, b, 0))
  return seq, state


def gpu_forward(blk, reverse, save, dt, interpret, gx, w, c0, h0, mask, reset):
  """GPU kernel forward; returns the same tuple as `tpu_forward`."""
  seq, state = _gpu_specs(blk)
  hp, shape = blk.hp, (blk.tp, blk.bp)
  full = pl.BlockSpec(w.shape, lambda b: (0, 0))
  sc0 = jnp.stack([c0, jnp.zeros_like(c0)])
  sh0 = jnp.stack([h0, jnp.zeros_like(h0)])
  outs = [jax.ShapeDtypeStruct(shape + (hp,), F32)]
  out_specs = [seq(hp)]
  if save:
    outs += [jax.ShapeDtypeStruct(shape + (n * hp,), F32) for n in (4, 1, 1)]
    out_specs += [seq(4 * hp), seq(hp), seq(hp)]
  n_out = len(outs)
  outs += [jax.ShapeDtypeStruct((2, blk.bp, hp), F32)] * 2
  out_specs += [state, state]
  res = _gpu_call(
    _bind(_gpu_fwd_kernel, blk, reverse, save, dt, interpret),
    blk,
    interpret,
    "lstm_fwd_gpu",
    [seq(4 * hp), full, seq(1), seq(1), state, state],
    (gx, w, mask, reset, sc0, sh0),
    outs,
    out_specs,
    {4: n_out, 5: n_out + 1},
  )
  last = blk.tp % 2
  return (*res[:n_out], res[n_out][last], res[n_out + 1][last])


def gpu_backward(
  blk, reverse, dt, interpret, acts, cin, dys, wt, mask, reset, dc_t, dh_t
):
  """GPU kernel backward; returns the same tuple as `tpu_backward`."""
  seq, state = _gpu_specs(blk)
  hp, shape = blk.hp, (blk.tp, blk.bp)
  full = pl.BlockSpec(wt.shape, lambda b: (0, 0))
  sdc0 = jnp.stack([dc_t, jnp.zeros_like(dc_t)])
  sdh0 = jnp.stack([dh_t, jnp.zeros_like(dh_t)])
  dg, sdc, sdh = _gpu_call(
    _bind(_gpu_bwd_kernel, blk, reverse, dt, interpret),
    blk,
    interpret,
    "lstm_bwd_gpu",
    [seq(4 * hp), seq(hp), seq(hp), full, seq(1), seq(1), state, state],
    (acts, cin, dys, wt, mask, reset, sdc0, sdh0),
    [jax.ShapeDtypeStruct(shape + (4 * hp,), F32)]
    + [jax.ShapeDtypeStruct((2, blk.bp, hp), F32)] * 2,
    [seq(4 * hp), state, state],
    {6: 1, 7: 2},
  )
  last = blk.tp % 2
  return dg, sdc[last], sdh[last]


def kernels(variant: str) -> tuple[Any, Any]:
  """(forward, backward) kernel callers of a variant."""
  return {"tpu": (tpu_forward, tpu_backward), "gpu": (gpu_forward, gpu_backward)}[
    variant
  ]
