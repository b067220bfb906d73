"""The fused LSTM (hand-written backward) equals the reference (JAX autodiff).

Outputs, final carries and the gradients of all inputs (weights, bias, inputs,
initial carry) are compared over combinations of mask / segment_ids / reverse /
remat / hoist / unroll, in float32 (within 1e-5, relative to the largest value)
and with bfloat16 matmuls (within 2e-2: the two paths round the backward
matmuls' operands to bfloat16 at different points).
"""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lstm_jax.kernels import dispatch
from lstm_jax.kernels.fused import scan as fused_scan
from lstm_jax.kernels.fused.layout import auto_layout
from lstm_jax.ops import cell, recurrent
from lstm_jax.ops.cell import LSTMCarry
from tests.support import tolerances

B, T, IN, H = 3, 7, 5, 4
# The fused kernel and autodiff sum in different orders (tests/support/
# tolerances.py): float32 at the LSTM's bound for these sizes (1.6e-5), and
# bfloat16 at one bfloat16 rounding per step (5.5e-2).
F32_TOL = tolerances.lstm_tol(B, T, IN, H)
BF16_TOL = tolerances.bf16_recurrence_tol(T)


def _params(key, hidden=H, inputs=IN):
  k = jax.random.split(key, 3)
  return {
    "w_ih": 0.5 * jax.random.normal(k[0], (inputs, 4 * hidden)),
    "w_hh": 0.5 * jax.random.normal(k[1], (hidden, 4 * hidden)),
    "bias": 0.5 * jax.random.normal(k[2], (4 * hidden,)),
  }


# Row 0: right padding; row 1: left and middle padding; row 2: zero length.
MASK = np.array(
  [[1, 1, 1, 1, 1, 0, 0], [0, 0, 1, 1, 0, 1, 1], [0, 0, 0, 0, 0, 0, 0]], bool
)
# Packed segments with padding between them, an id that comes back (5 .. 1 ..
# 5 is two segments), and an empty row.
SEGS = np.array(
  [[1, 1, 2, 2, 2, 0, 0], [0, 0, 5, 5, 0, 1, 5], [0, 0, 0, 0, 0, 0, 0]], np.int32
)
# No padding; a new id at every step in row 2.
SEGS_DENSE = np.array(
  [[1, 1, 2, 2, 2, 3, 3], [5, 5, 1, 1, 1, 1, 3], [1, 2, 3, 4, 5, 6, 7]], np.int32
)
INPUTS = {
  "plain": {},
  "mask": {"mask": MASK},
  "segments": {"segment_ids": SEGS},
  "segments_dense": {"segment_ids": SEGS_DENSE},
  "mask_and_segments": {"mask": MASK | (np.arange(T) == 3), "segment_ids": SEGS_DENSE},
}


def _loss_and_grads(fn, params, xs, carry0, **kwargs):
  k = jax.random.split(jax.random.key(7), 3)
  out = params["w_hh"].shape[0]
  gy = jax.random.normal(k[0], xs.shape[:2] + (out,))
  gc = jax.random.normal(k[1], (B, H))
  gh = jax.random.normal(k[2], (B, out))

  def loss(params, xs, carry0):
    ys, carry = fn(params, xs, initial_carry=carry0, **kwargs)
    value = jnp.sum(ys * gy) + jnp.sum(carry.c * gc) + jnp.sum(carry.h * gh)
    return value, (ys, carry)

  grad_fn = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True))
  (_, aux), grads = grad_fn(params, xs, carry0)
  return aux, grads


def _assert_close(actual, expected, tol):
  def check(path, a, e):
    a, e = np.asarray(a, np.float32), np.asarray(e, np.float32)
    scale = max(1.0, float(np.max(np.abs(e))))
    err = float(np.max(np.abs(a - e))) / scale
    assert err <= tol, f"{jax.tree_util.keystr(path)}: error {err:.2e} > {tol:.0e}"

  jax.tree_util.tree_map_with_path(check, actual, expected)


def _setup():
  k = jax.random.split(jax.random.key(0), 4)
  params = _params(k[0])
  xs = jax.random.normal(k[1], (B, T, IN))
  carry0 = LSTMCarry(jax.random.normal(k[2], (B, H)), jax.random.normal(k[3], (B, H)))
  return params, xs, carry0


@functools.cache
def _reference(inputs, reverse, dtype=None):
  return _loss_and_grads(
    recurrent.lstm_scan_reference,
    *_setup(),
    **INPUTS[inputs],
    reverse=reverse,
    dtype=dtype,
  )


def _compare(inputs, reverse, tol=F32_TOL, dtype=None, **kwargs):
  expected = _reference(inputs, reverse, dtype)
  actual = _loss_and_grads(
    fused_scan.lstm_scan_fused,
    *_setup(),
    **INPUTS[inputs],
    reverse=reverse,
    dtype=dtype,
    **kwargs,
  )
  _assert_close(actual, expected, tol)


# Every input kind in both directions; the default suite runs one direction
# of each (alternating, each a compile of ~2 s), `-m slow` the other too.
_F32 = [(i, flag, flag) for i, flag in itertools.product(INPUTS, (False, True))] + [
  ("mask_and_segments", False, True),
  ("segments", True, False),
]
_F32_DEFAULT = {(i, n % 2 == 1, n % 2 == 1) for n, i in enumerate(INPUTS)} | set(
  _F32[-2:]
)


@pytest.mark.parametrize(
  "inputs,reverse,remat",
  [c if c in _F32_DEFAULT else pytest.param(*c, marks=pytest.mark.slow) for c in _F32],
)
def test_matches_reference_f32(inputs, reverse, remat):
  _compare(inputs, reverse, remat=remat)


@pytest.mark.parametrize(
  "inputs,reverse,layout",
  [
    ("plain", False, {"proj": "hoist", "wleft": True}),
    ("mask", True, {"proj": "concat", "wleft": True, "unroll": 3}),
    ("segments", False, {"proj": "step", "wleft": False, "unroll": 2}),
    ("mask_and_segments", True, {"proj": "hoist", "wleft": False, "remat": True}),
    ("mask_and_segments", False, {"proj": "concat", "wleft": True, "remat": True}),
  ],
)
def test_layouts_and_unroll(inputs, reverse, layout):
  _compare(inputs, reverse, **layout)


@pytest.mark.parametrize(
  "inputs,reverse,remat",
  [("plain", False, False), ("mask", True, True), ("mask_and_segments", False, False)],
)
def test_matches_reference_bf16(inputs, reverse, remat):
  _compare(
    inputs, reverse, tol=BF16_TOL, dtype=jnp.bfloat16, remat=remat, wleft=not remat
  )


def test_zero_length_rows_return_initial_carry():
  params = _params(jax.random.key(1))
  xs = jnp.ones((2, 5, IN))
  carry0 = LSTMCarry(jnp.full((2, H), 0.3), jnp.full((2, H), -0.2))
  ys, carry = fused_scan.lstm_scan_fused(
    params, xs, mask=jnp.zeros((2, 5), bool), initial_carry=carry0
  )
  np.testing.assert_array_equal(ys, 0.0)
  np.testing.assert_array_equal(carry.c, carry0.c)
  np.testing.assert_array_equal(carry.h, carry0.h)


def test_segment_resets():
  seg = jnp.asarray(SEGS)
  reset = cell.segment_resets(seg != 0, seg, reverse=False)
  expected = np.zeros_like(SEGS, bool)
  expected[0, 2] = True  # 1 -> 2
  expected[1, 5] = True  # 5 -> (pad) -> 1
  expected[1, 6] = True  # 1 -> 5
  np.testing.assert_array_equal(reset, expected)
  reset = cell.segment_resets(seg != 0, seg, reverse=True)
  expected = np.zeros_like(SEGS, bool)
  expected[0, 1] = True  # scanning backwards: 2 -> 1
  expected[1, 3] = True  # 1 -> (pad) -> 5
  expected[1, 5] = True  # 5 -> 1
  np.testing.assert_array_equal(reset, expected)


def test_lstm_scan_dispatch():
  params = _params(jax.random.key(2))
  xs = jax.random.normal(jax.random.key(3), (B, T, IN))
  scan = jax.jit(dispatch.lstm_scan, static_argnames="impl")
  ref, _ = jax.jit(recurrent.lstm_scan_reference)(params, xs)
  # Forward only, |h| < 1: the float32 bound of the forward recurrence.
  atol = tolerances.recurrence_tol(T, IN + H)
  for impl in dispatch.IMPLS:
    np.testing.assert_allclose(scan(params, xs, impl=impl)[0], ref, atol=atol)
  # Cells the fused path does not implement run the reference under any impl.
  peep = {**params, "peephole": 0.1 * jnp.ones((3, H))}
  ref, _ = jax.jit(recurrent.lstm_scan_reference)(peep, xs)
  for impl in dispatch.IMPLS:
    np.testing.assert_allclose(scan(peep, xs, impl=impl)[0], ref, atol=atol)
  with pytest.raises(ValueError, match="impl"):
    dispatch.lstm_scan(params, xs, impl="cuda")  # not an impl (cudnn is)
  with pytest.raises(ValueError, match="standard cell"):
    fused_scan.lstm_scan_fused(peep, xs)
  with pytest.raises(ValueError, match="proj"):
    fused_scan.lstm_scan_fused(params, xs, proj="bogus")


def test_auto_layout():
  assert auto_layout(16, 32, 64, "cpu") == ("concat", False)
  assert auto_layout(32, 128, 256, "cpu") == ("step", False)
  assert auto_layout(64, 256, 512, "cpu") == ("step", True)
  assert auto_layout(64, 256, 512, "gpu") == ("hoist", False)


def _grad_temp_bytes(remat):
  params = _params(jax.random.key(4), hidden=64, inputs=32)
  xs = jnp.ones((16, 256, 32))

  def loss(params, xs):
    ys, _ = fused_scan.lstm_scan_fused(params, xs, remat=remat)
    return jnp.sum(ys)

  compiled = jax.jit(jax.grad(loss)).lower(params, xs).compile()
  return compiled.memory_analysis().temp_size_in_bytes


def test_remat_uses_less_memory():
  full, remat = _grad_temp_bytes(False), _grad_temp_bytes(True)
  assert remat < 0.8 * full, (remat, full)
