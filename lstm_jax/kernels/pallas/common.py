"""Shared pieces of the Pallas LSTM kernels: block shapes, VMEM budget, dot.

Both kernels take the input projection `gx = x @ w_ih + bias` precomputed
(one large matmul outside, as the fused scan does with proj="hoist") and leave the
weight gradients to matmuls outside: the forward produces the outputs, the
final carry and the residuals (gate activations, `c_in`, `h_in`); the backward
runs the reverse recurrence and produces `d_gates` and the initial-carry
gradient. Arrays are time-major `[T, B, ...]` here; `mask` and `reset` are
<float32>[T, B, 1] (1.0 = real step / carry reset before the step, as
`cell.segment_resets`).

The cell's equations and their gradient are `ops/cell.py`'s (`cell_pointwise`,
`cell_pointwise_vjp`, sigmoid evaluated as tanh), traced inside the kernel
bodies on the four gates of a tile as separate arrays.

Layouts, one module each (their docstrings give the design and its cost):

* `tpu.py` (Mosaic TPU; also the interpret-mode default on CPU): W_hh
  resident in VMEM, a time-blocked sequential grid, one MXU matmul a step.
* `gpu.py` (Triton): a batch-block grid, W_hh tiles streamed from L2
  every step, a CTA barrier between steps.

Padded hidden units have zero weights and zero gate inputs, so they stay at
c = h = 0; padded batch rows and time steps are masked; both are sliced off.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

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


def round_up(n: int, m: int) -> int:
  return -(-n // m) * m


def _pow2(n: int) -> int:
  return 1 << max(0, math.ceil(math.log2(max(n, 1))))


def choose_blocks(variant: str, batch: int, time: int, hidden: int, **over) -> Blocks:
  """Block shapes for a variant and shape; `over` overrides any field."""
  if variant == "tpu":
    hp = round_up(hidden, 128)
    bp = round_up(batch, 8)
    bb = over.get("bb") or (bp if bp <= 256 else 256)
    bp = round_up(bp, bb)
    bt = over.get("bt") or max(1, min(time, _TPU_GX_BLOCK_BYTES // (bb * 16 * hp)))
    return Blocks("tpu", bp, hp, round_up(time, bt), bb, bt, hp, hp)
  if variant == "gpu":
    hp = _pow2(max(hidden, 16))
    bb = over.get("bb") or 16
    bh = over.get("bh") or min(hp, 64)
    bk = over.get("bk") or min(hp, 64)
    return Blocks("gpu", round_up(batch, bb), hp, time, bb, time, bh, bk)
  raise ValueError(f"variant must be 'tpu' or 'gpu', got {variant!r}")


def tpu_vmem_bytes(blk: Blocks, w_itemsize: int, save: bool = True) -> int:
  """VMEM the TPU forward or backward kernel needs (the larger of the two)."""
  w = blk.hp * 4 * blk.hp * w_itemsize  # resident, single-buffered
  rows = blk.bt * blk.bb * 4
  fwd = rows * (4 * blk.hp + blk.hp + (6 * blk.hp if save else 0))
  bwd = rows * (4 * blk.hp + 2 * blk.hp + 4 * blk.hp)
  return w + 2 * max(fwd, bwd) + 8 * blk.bb * blk.hp * 4


def dot(a, b, dt):
  """a @ b in `dt` (None: float32 at full precision) with a float32 result."""
  if dt is None:
    prec = jax.lax.Precision.HIGHEST
    return jnp.dot(a.astype(F32), b, precision=prec, preferred_element_type=F32)
  return jnp.dot(a.astype(dt), b, preferred_element_type=F32)


def time_index(j, nsteps: int, ascending: bool):
  """The time index of loop iteration `j` when the loop runs up or down in time."""
  return j if ascending else nsteps - 1 - j


def bind(fn, *static):
  def kernel(*refs):
    return fn(*static, *refs)

  return kernel
