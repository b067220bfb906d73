"""The Triton GPU layout of the Pallas LSTM kernel (see `pallas/common.py`).

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
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as pltriton

from lstm_jax.kernels.pallas.common import F32, Blocks, bind, dot, time_index
from lstm_jax.ops.cell import CellSaved, cell_pointwise, cell_pointwise_vjp


def _barrier(interpret: bool):
  # The interpreter runs a program as one sequential thread: nothing to sync.
  if not interpret:
    pltriton.debug_barrier()


def _step_flags(s, nsteps, ascending, m_ref, r_ref):
  """Loop iteration `s`: its time index, the state buffers it reads (p) and
  writes (q), and its mask and reset flags."""
  k = time_index(s, nsteps, ascending)
  p = jax.lax.rem(s, 2)  # jnp.remainder does not lower to Triton
  return k, p, 1 - p, m_ref[k] > 0, r_ref[k] > 0


def _gpu_fwd_kernel(blk, reverse, save, dt, interpret, gx, w, m_ref, r_ref, *refs):
  # refs: the two aliased state inputs (unused: their outputs alias them),
  # ys, [acts, cin, hin], then the state outputs sc, sh [2, Bb, Hp].
  ys, *rest = refs[2:-2]
  sc, sh = refs[-2:]
  acts, cin, hin = rest if save else (None, None, None)
  hp, bh, bk, nsteps = blk.hp, blk.bh, blk.bk, gx.shape[0]

  def step(s, _):
    k, p, q, m, r = _step_flags(s, nsteps, not reverse, m_ref, r_ref)

    def tile(j, _):
      col = pl.multiple_of(j * bh, bh)

      def contract(kk, accs):
        row = pl.multiple_of(kk * bk, bk)
        hk = jnp.where(r, 0.0, sh[p, :, pl.ds(row, bk)])
        return tuple(
          acc + dot(hk, w[pl.ds(row, bk), pl.ds(n * hp + col, bh)], dt)
          for n, acc in enumerate(accs)
        )

      accs = tuple(gx[k, :, pl.ds(n * hp + col, bh)] for n in range(4))
      pre = jax.lax.fori_loop(0, hp // bk, contract, accs)
      c_prev, h_prev = sc[p, :, pl.ds(col, bh)], sh[p, :, pl.ds(col, bh)]
      c_in = jnp.where(r, 0.0, c_prev)
      c_new, h_new, saved = cell_pointwise(pre, c_in, sigmoid="tanh")
      ys[k, :, pl.ds(col, bh)] = jnp.where(m, h_new, 0.0)
      if save:
        for n in range(4):
          acts[k, :, pl.ds(n * hp + col, bh)] = saved.acts[n]
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
    k, p, q, m, r = _step_flags(s, nsteps, reverse, m_ref, r_ref)

    def gates(j, _):
      col = pl.multiple_of(j * bh, bh)
      a = tuple(acts[k, :, pl.ds(n * hp + col, bh)] for n in range(4))
      dc, dh = sdc[p, :, pl.ds(col, bh)], sdh[p, :, pl.ds(col, bh)]
      dhn = jnp.where(m, dh + dys[k, :, pl.ds(col, bh)], 0.0)
      saved = CellSaved(a, cin[k, :, pl.ds(col, bh)])
      dgs, dc_in = cell_pointwise_vjp(saved, jnp.where(m, dc, 0.0), dhn)
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
          acc = acc + dot(d, wt[pl.ds(n * hp + row, bk), pl.ds(col, bh)], dt)
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
    bind(_gpu_fwd_kernel, blk, reverse, save, dt, interpret),
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
    bind(_gpu_bwd_kernel, blk, reverse, dt, interpret),
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
