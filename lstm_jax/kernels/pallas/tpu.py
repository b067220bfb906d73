"""The Mosaic TPU layout of the Pallas LSTM kernel (see `pallas/common.py`).

"tpu" (Mosaic TPU; also the interpret-mode default on CPU):
  grid (batch blocks, time blocks), time "arbitrary" (sequential). W_hh (and
  W_hh^T in the backward) has a constant block index, so it is copied into
  VMEM once per batch block and stays resident for all time steps (single
  buffered: `pl.Buffered(1)`); the carry lives in VMEM scratch across time
  blocks; `gx` and the outputs stream through double-buffered time blocks of
  `Blocks.bt` steps. Each step is one [Bb, Hp] x [Hp, 4Hp] MXU matmul. Blocks are
  (8, 128)-aligned: H is padded to a multiple of 128, B to a multiple of 8.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu

from lstm_jax.kernels.pallas.common import (
  F32,
  Blocks,
  bind,
  dot,
  time_index,
  tpu_vmem_bytes,
)
from lstm_jax.ops.cell import CellSaved, cell_pointwise, cell_pointwise_vjp


def _time_block(nsteps, body, scratch, initial, final):
  """Runs `body` over this time block's steps; the carry stays in VMEM
  `scratch` from one time block to the next, starting from `initial` and
  leaving through `final` (constant block index: written back once, after the
  last block)."""

  @pl.when(pl.program_id(1) == 0)
  def _init():
    for sc, x0 in zip(scratch, initial, strict=True):
      sc[...] = x0[...]

  carry = jax.lax.fori_loop(0, nsteps, body, tuple(sc[...] for sc in scratch))
  for sc, out, x in zip(scratch, final, carry, strict=True):
    sc[...] = x
    out[...] = x


def _tpu_fwd_kernel(reverse, save, dt, gx, w, c0, h0, m_ref, r_ref, *refs):
  if save:
    ys, acts, cin, hin, c_t, h_t, c_sc, h_sc = refs
  else:
    ys, c_t, h_t, c_sc, h_sc = refs
  hp = c_sc.shape[-1]
  nsteps = gx.shape[0]

  def body(j, carry):
    c, h = carry
    k = time_index(j, nsteps, not reverse)
    r = r_ref[k] > 0
    c_in, h_in = jnp.where(r, 0.0, c), jnp.where(r, 0.0, h)
    gates = gx[k] + dot(h_in, w[...], dt)
    pre = tuple(gates[:, n * hp : (n + 1) * hp] for n in range(4))
    c_new, h_new, saved = cell_pointwise(pre, c_in, sigmoid="tanh")
    m = m_ref[k] > 0
    ys[k] = jnp.where(m, h_new, 0.0)
    if save:
      for n in range(4):
        acts[k, :, n * hp : (n + 1) * hp] = saved.acts[n]
      cin[k] = c_in
      hin[k] = h_in
    return jnp.where(m, c_new, c), jnp.where(m, h_new, h)

  _time_block(nsteps, body, (c_sc, h_sc), (c0, h0), (c_t, h_t))


def _tpu_bwd_kernel(reverse, dt, acts, cin, dys, wt, m_ref, r_ref, dc_t, dh_t, *refs):
  dg, dc0, dh0, dc_sc, dh_sc = refs
  hp = dc_sc.shape[-1]
  nsteps = acts.shape[0]

  def body(j, carry):
    dc, dh = carry
    k = time_index(j, nsteps, reverse)
    a = acts[k]
    gate_acts = tuple(a[:, n * hp : (n + 1) * hp] for n in range(4))
    m = m_ref[k] > 0
    dhn = jnp.where(m, dh + dys[k], 0.0)
    dcn = jnp.where(m, dc, 0.0)
    dgs, dc_in = cell_pointwise_vjp(CellSaved(gate_acts, cin[k]), dcn, dhn)
    dh_in = jnp.zeros_like(dh)
    for n in range(4):
      dg[k, :, n * hp : (n + 1) * hp] = dgs[n]
      dh_in = dh_in + dot(dgs[n], wt[n * hp : (n + 1) * hp, :], dt)
    r = r_ref[k] > 0
    dc_in, dh_in = jnp.where(r, 0.0, dc_in), jnp.where(r, 0.0, dh_in)
    return jnp.where(m, dc_in, dc), jnp.where(m, dh_in, dh)

  _time_block(nsteps, body, (dc_sc, dh_sc), (dc_t, dh_t), (dc0, dh0))


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
  kernel = bind(_tpu_fwd_kernel, reverse, save, dt)
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
    bind(_tpu_bwd_kernel, reverse, dt),
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
