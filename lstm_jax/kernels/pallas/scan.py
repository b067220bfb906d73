"""The standard LSTM layer on a Pallas recurrence kernel (TPU, GPU; CPU interprets).

Same semantics as `recurrent.lstm_scan_reference` for the standard cell
(`w_ih`, `w_hh`, `bias`): masks anywhere, zero-length rows, packed
`segment_ids`, initial carry, reverse, bf16 matmuls with a float32 carry.
Gradients (`jax.custom_vjp`) flow to the weights, bias, inputs and the initial
carry.

Split of the work (as the fused scan's with proj="hoist"):

  gx = x @ w_ih + bias                   one [B*T, I] x [I, 4H] matmul (autodiff)
  kernel forward:  the recurrence, W_hh resident (`tpu.py`, `gpu.py`)
  kernel backward: the reverse recurrence -> d_gates [T, B, 4H], dc0, dh0
  dW_hh = h_in^T d_gates                 one large matmul after the kernel
  dW_ih, dx, dbias                       autodiff of the gx matmul

Which kernel runs is decided by the platform the computation is lowered for
(`jax.lax.platform_dependent`), not by `jax.default_backend()`, so that
`jax.export` for "cuda" or "tpu" on a CPU-only machine holds the Triton or
Mosaic kernel: "tpu" -> the Mosaic TPU layout, "cuda" -> the Triton layout,
anything else (CPU) -> Pallas interpret mode (slow: for tests and debugging)
of the `cpu_variant` layout.

Residuals are kept unpadded between the two kernels, because every platform
branch must return the same shapes and each layout pads differently; the
padding copies are part of the measured cost on an accelerator.

`unroll`, `remat` and `hoist` are accepted for API compatibility and ignored:
the kernel always hoists the input projection and saves the activations.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lstm_jax.kernels.pallas import common, gpu, tpu
from lstm_jax.ops.cell import LSTMCarry, real_steps, segment_resets, zero_carry

Array = jax.Array
F32 = jnp.float32
SUPPORTED_KEYS = frozenset({"w_ih", "w_hh", "bias"})


_KERNELS = {
  "tpu": (tpu.tpu_forward, tpu.tpu_backward),
  "gpu": (gpu.gpu_forward, gpu.gpu_backward),
}


class _Static(NamedTuple):
  reverse: bool
  dtype: Any  # np.dtype or None (float32)
  cpu_variant: str
  blocks: tuple  # sorted (name, value) overrides of `common.choose_blocks`


def unsupported_reason(params, xs_shape, dtype=None, backend: str | None = None):
  """Why the kernel cannot take this call on `backend`, or None if it can."""
  if set(params) != SUPPORTED_KEYS:
    extra = sorted(set(params) - SUPPORTED_KEYS)
    return f"the Pallas kernel implements the standard cell; got the keys {extra}"
  backend = backend or jax.default_backend()
  if backend == "tpu":
    batch, time = xs_shape[:2]
    hid = params["w_hh"].shape[0]
    blk = common.choose_blocks("tpu", batch, time, hid)
    itemsize = np.dtype(dtype or np.float32).itemsize
    need = common.tpu_vmem_bytes(blk, itemsize)
    if need > common.TPU_VMEM_BUDGET:
      return (
        f"H={hid} needs {need / 2**20:.1f} MiB of VMEM (W_hh resident + blocks), "
        f"over the {common.TPU_VMEM_BUDGET / 2**20:.0f} MiB budget"
      )
  return None


def _pad_to(a: Array, shape) -> Array:
  return jnp.pad(a, [(0, n - m) for m, n in zip(a.shape, shape, strict=True)])


def _pad_gates(a: Array, lead, hp: int) -> Array:
  """[..., 4H] -> [*lead, 4 * hp], each gate padded separately."""
  h = a.shape[-1] // 4
  a = a.reshape(a.shape[:-1] + (4, h))
  return _pad_to(a, tuple(lead) + (4, hp)).reshape(tuple(lead) + (4 * hp,))


def _unpad_gates(a: Array, lead, h: int) -> Array:
  a = a.reshape(a.shape[:-1] + (4, -1))
  idx = tuple(slice(0, n) for n in lead)
  return a[idx + (slice(None), slice(0, h))].reshape(tuple(lead) + (4 * h,))


def _padded_weight(w_hh: Array, blk: common.Blocks, dt) -> Array:
  return _pad_gates(w_hh, (blk.hp,), blk.hp).astype(dt or F32)


def _forward_branch(st: _Static, variant: str, interpret: bool, save: bool):
  """One platform's forward on unpadded time-major arrays."""

  def run(gx, w_hh, c0, h0, mask, reset):
    t, b, h4 = gx.shape
    h = h4 // 4
    blk = common.choose_blocks(variant, b, t, h, **dict(st.blocks))
    lead = (blk.tp, blk.bp)
    fwd, _ = _KERNELS[variant]
    outs = fwd(
      blk,
      st.reverse,
      save,
      st.dtype,
      interpret,
      _pad_gates(gx, lead, blk.hp),
      _padded_weight(w_hh, blk, st.dtype),
      _pad_to(c0, (blk.bp, blk.hp)),
      _pad_to(h0, (blk.bp, blk.hp)),
      _pad_to(mask, lead + (1,)),
      _pad_to(reset, lead + (1,)),
    )
    ys, *res, c, h_t = outs
    out = [ys[:t, :b, :h]]
    if save:
      acts, cin, hin = res
      out += [_unpad_gates(acts, (t, b), h), cin[:t, :b, :h], hin[:t, :b, :h]]
    return (*out, c[:b, :h], h_t[:b, :h])

  return run


def _backward_branch(st: _Static, variant: str, interpret: bool):
  def run(acts, cin, dys, w_hh, mask, reset, dc, dh):
    t, b, h4 = acts.shape
    h = h4 // 4
    blk = common.choose_blocks(variant, b, t, h, **dict(st.blocks))
    lead = (blk.tp, blk.bp)
    _, bwd = _KERNELS[variant]
    dg, dc0, dh0 = bwd(
      blk,
      st.reverse,
      st.dtype,
      interpret,
      _pad_gates(acts, lead, blk.hp),
      _pad_to(cin, lead + (blk.hp,)),
      _pad_to(dys, lead + (blk.hp,)),
      _padded_weight(w_hh, blk, st.dtype).T,
      _pad_to(mask, lead + (1,)),
      _pad_to(reset, lead + (1,)),
      _pad_to(dc, (blk.bp, blk.hp)),
      _pad_to(dh, (blk.bp, blk.hp)),
    )
    return _unpad_gates(dg, (t, b), h), dc0[:b, :h], dh0[:b, :h]

  return run


def _on_platform(make, st: _Static, *args):
  """`make(variant, interpret)(*args)` for the platform being lowered for."""
  interp = make(st.cpu_variant, True)
  return jax.lax.platform_dependent(
    *args, cpu=interp, cuda=make("gpu", False), tpu=make("tpu", False), default=interp
  )


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _core(st: _Static, gx, w_hh, c0, h0, mask, reset):
  make = functools.partial(_forward_branch, st, save=False)
  return tuple(_on_platform(make, st, gx, w_hh, c0, h0, mask, reset))


def _core_fwd(st, gx, w_hh, c0, h0, mask, reset):
  make = functools.partial(_forward_branch, st, save=True)
  ys, acts, cin, hin, c, h = _on_platform(make, st, gx, w_hh, c0, h0, mask, reset)
  return (ys, c, h), (w_hh, mask, reset, acts, cin, hin)


def _core_bwd(st, res, cts):
  w_hh, mask, reset, acts, cin, hin = res
  dys, dc, dh = cts
  make = functools.partial(_backward_branch, st)
  dg, dc0, dh0 = _on_platform(make, st, acts, cin, dys, w_hh, mask, reset, dc, dh)
  # One [H, T*B] x [T*B, 4H] matmul, in float32 like the fused scan's.
  dw_hh = jnp.einsum("tbh,tbg->hg", hin, dg, precision=jax.lax.Precision.HIGHEST)
  return (
    dg,
    dw_hh.astype(w_hh.dtype),
    dc0,
    dh0,
    jnp.zeros_like(mask),
    jnp.zeros_like(reset),
  )


_core.defvjp(_core_fwd, _core_bwd)


def lstm_scan_pallas(
  params,
  xs: Array,
  *,
  mask: Array | None = None,
  segment_ids: Array | None = None,
  initial_carry: LSTMCarry | None = None,
  reverse: bool = False,
  dtype: Any = None,
  unroll: int = 1,
  remat: bool = False,
  hoist: bool | None = None,
  cpu_variant: str = "tpu",
  blocks: dict[str, int] | None = None,
) -> tuple[Array, LSTMCarry]:
  """One standard LSTM layer over a sequence on the Pallas kernel.

  Arguments and results as `recurrent.lstm_scan_reference` (standard cell
  only), plus:

  Args:
    cpu_variant: the kernel layout interpreted on CPU ("tpu" or "gpu"); on a
      TPU or GPU the platform's own layout runs.
    blocks: overrides of the block sizes (`common.Blocks` fields `bb`,
      `bt`, `bh`, `bk`), e.g. tiny tiles to test the tiling in interpret mode.

  Returns:
    (ys <float32>[batch, time, hidden], final `LSTMCarry`).
  """
  del unroll, remat, hoist  # see the module docstring
  reason = unsupported_reason(params, xs.shape, dtype, backend="cpu")
  if reason:
    raise ValueError(reason)
  batch, time = xs.shape[:2]
  real = real_steps(mask, segment_ids)
  if initial_carry is None:
    initial_carry = zero_carry(params, batch)
  c0, h0 = (jnp.asarray(a, F32) for a in initial_carry)
  if real is None:
    mask_f = jnp.ones((batch, time), F32)
  else:
    mask_f = jnp.asarray(real).astype(F32)
  reset = jnp.zeros((batch, time), F32)
  if segment_ids is not None:
    seg = jnp.asarray(segment_ids).astype(jnp.int32)
    reset = segment_resets(mask_f > 0, seg, reverse).astype(F32)
  dt = None if dtype is None or np.dtype(dtype) == np.float32 else np.dtype(dtype)
  w_ih = params["w_ih"] if dt is None else params["w_ih"].astype(dt)
  x = xs if dt is None else xs.astype(dt)
  gx = jnp.dot(x, w_ih, preferred_element_type=F32) + params["bias"].astype(F32)
  st = _Static(bool(reverse), dt, cpu_variant, tuple(sorted((blocks or {}).items())))
  tm = functools.partial(jnp.swapaxes, axis1=0, axis2=1)
  ys, c, h = _core(
    st,
    tm(gx),
    params["w_hh"],
    c0,
    h0,
    tm(mask_f)[..., None],
    tm(reset)[..., None],
  )
  return tm(ys), LSTMCarry(c, h)
