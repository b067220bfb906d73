"""The Pallas LSTM kernel equals the reference scan (JAX autodiff).

On CPU the kernel runs in Pallas interpret mode, both layouts: "tpu" (the
Mosaic one, whole-tile steps, time blocks) and "gpu" (the Triton one, with tiny
tiles here so that its column and contraction loops take several tiles).
Outputs and carries within 1e-5, gradients of weights, bias, inputs and the
initial carry within 1e-4 (relative to the largest value, float32), bf16
matmuls within 2e-2, the fused scan's bf16 bound. Exports for "cuda" and "tpu" are checked to
hold the Triton / Mosaic custom calls (lowering only, no device).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import export

import lstm_jax
from lstm_jax.kernels.pallas import scan as pallas_scan
from lstm_jax.ops import recurrent
from lstm_jax.ops.recurrent import LSTMCarry
from tests.support import tolerances

B, T, IN, H = 3, 6, 5, 8
# The kernel and autodiff sum in different orders (tests/support/
# tolerances.py): float32 at the LSTM's bound for these sizes (outputs and
# gradients alike, 2.5e-5), bfloat16 at one bfloat16 rounding per step.
OUT_TOL = GRAD_TOL = tolerances.lstm_tol(B, T, IN, H)
BF16_TOL = tolerances.bf16_recurrence_tol(T)
# Row 0: right padding; row 1: left and middle padding; row 2: zero length.
MASK = np.array([[1, 1, 1, 1, 0, 0], [0, 1, 1, 0, 1, 1], [0, 0, 0, 0, 0, 0]], bool)
# Two segments with padding between; an id that comes back; an empty row.
SEGS = np.array([[1, 1, 2, 2, 0, 0], [0, 5, 5, 0, 1, 5], [0, 0, 0, 0, 0, 0]], np.int32)
TPU = {"cpu_variant": "tpu", "blocks": {"bt": 4}}  # two time blocks, one padded
GPU = {"cpu_variant": "gpu", "blocks": {"bb": 2, "bh": 4, "bk": 4}}  # 2x2 tiles


def _inputs(key, hidden=H):
  k = jax.random.split(key, 6)
  params = {
    "w_ih": 0.5 * jax.random.normal(k[0], (IN, 4 * hidden)),
    "w_hh": 0.5 * jax.random.normal(k[1], (hidden, 4 * hidden)),
    "bias": 0.5 * jax.random.normal(k[2], (4 * hidden,)),
  }
  xs = jax.random.normal(k[3], (B, T, IN))
  carry = LSTMCarry(
    jax.random.normal(k[4], (B, hidden)), jax.random.normal(k[5], (B, hidden))
  )
  return params, xs, carry


def _value_and_grads(fn, params, xs, carry0, **kwargs):
  """Outputs, carry and the gradients of a random linear function of them."""
  k = jax.random.split(jax.random.key(7), 3)
  gy = jax.random.normal(k[0], xs.shape[:2] + (carry0.h.shape[-1],))
  gc, gh = (
    jax.random.normal(k[1], carry0.c.shape),
    jax.random.normal(k[2], carry0.h.shape),
  )

  def loss(params, xs, carry0):
    ys, carry = fn(params, xs, initial_carry=carry0, **kwargs)
    return jnp.sum(ys * gy) + jnp.sum(carry.c * gc) + jnp.sum(carry.h * gh), (ys, carry)

  grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True))
  (_, aux), grads = grad(params, xs, carry0)
  return aux, grads


def _assert_close(actual, expected, tol):
  def check(path, a, e):
    a, e = np.asarray(a, np.float32), np.asarray(e, np.float32)
    err = float(np.max(np.abs(a - e))) / max(1.0, float(np.max(np.abs(e))))
    assert err <= tol, f"{jax.tree_util.keystr(path)}: {err:.2e} > {tol}"

  jax.tree_util.tree_map_with_path(check, actual, expected)


def _check(key, layout, out_tol=OUT_TOL, grad_tol=GRAD_TOL, **kwargs):
  params, xs, carry0 = _inputs(key)
  ref = _value_and_grads(recurrent.lstm_scan_reference, params, xs, carry0, **kwargs)
  fn = functools.partial(pallas_scan.lstm_scan_pallas, **layout)
  got = _value_and_grads(fn, params, xs, carry0, **kwargs)
  _assert_close(got[0], ref[0], out_tol)
  _assert_close(got[1], ref[1], grad_tol)


CASES = {
  "plain": {},
  "mask": {"mask": MASK},
  "mask_reverse": {"mask": MASK, "reverse": True},
  "segments": {"segment_ids": SEGS},
  "segments_reverse": {"segment_ids": SEGS, "reverse": True},
}
LAYOUTS = {"tpu": TPU, "gpu": GPU, "gpu_default_blocks": {"cpu_variant": "gpu"}}
# Each case costs ~8 s of interpret-mode compilation: a few run by default.
FAST = {("tpu", "mask"), ("tpu", "segments_reverse"), ("gpu", "mask_reverse")}


@pytest.mark.parametrize(
  "layout, case",
  [
    pytest.param(
      name,
      case,
      marks=() if (name, case) in FAST else pytest.mark.slow,
      id=f"{name}-{case}",
    )
    for name in LAYOUTS
    for case in CASES
  ],
)
def test_matches_reference(key, layout, case):
  _check(key, LAYOUTS[layout], **CASES[case])


@pytest.mark.parametrize("layout", ["tpu", pytest.param("gpu", marks=pytest.mark.slow)])
def test_matches_reference_bf16(key, layout):
  layout = {"tpu": TPU, "gpu": GPU}[layout]
  _check(key, layout, BF16_TOL, BF16_TOL, mask=MASK, dtype=jnp.bfloat16)


def test_lstm_module_bidirectional_two_layers(key):
  """`lstm_jax.LSTM(impl="pallas")`: 2 layers, both directions, lengths."""
  x = jax.random.normal(key, (B, T, IN))

  def run(impl, params):
    model = lstm_jax.LSTM(H, num_layers=2, bidirectional=True, impl=impl)

    def loss(params):
      ys, carries = model.apply(params, x, mask=MASK)
      return jnp.sum(ys**2) + sum(jnp.sum(c.c) for c in carries), (ys, carries)

    return jax.jit(jax.value_and_grad(loss, has_aux=True))(params)

  params = lstm_jax.LSTM(H, num_layers=2, bidirectional=True).init(key, x, mask=MASK)
  (_, ref), gref = run("reference", params)
  (_, got), ggot = run("pallas", params)
  # Two stacked layers: the second's inputs carry the first's rounding, so
  # the errors of the two add.
  _assert_close(got, ref, 2 * OUT_TOL)
  _assert_close(ggot, gref, 2 * GRAD_TOL)


@pytest.mark.skipif(
  jax.default_backend() not in ("gpu", "tpu"),
  reason="needs a GPU or TPU (the compiled kernel)",
)
@pytest.mark.parametrize("case", ["mask", "segments_reverse"])
def test_compiled_kernel_matches_reference(key, case):
  """On a device: the Triton / Mosaic kernel itself (f32 at full precision)."""
  with jax.default_matmul_precision("highest"):
    _check(key, {}, **CASES[case])


def test_refuses_other_cells(key):
  params, xs, _ = _inputs(key)
  with pytest.raises(ValueError, match="standard cell.*peephole"):
    pallas_scan.lstm_scan_pallas(dict(params, peephole=jnp.zeros((3, H))), xs)


# --------------------------------------------------------------- export

_TARGETS = {"cuda": "__gpu$xla.gpu.triton", "tpu": "tpu_custom_call"}


def _export(platform, batch, time, feat, hidden, dtype):
  def train_step(params, xs, mask):
    def loss(params, xs):
      ys, carry = pallas_scan.lstm_scan_pallas(params, xs, mask=mask, dtype=dtype)
      return jnp.sum(ys) + jnp.sum(carry.c)

    return jax.value_and_grad(loss, argnums=(0, 1))(params, xs)

  f32 = functools.partial(jax.ShapeDtypeStruct, dtype=jnp.float32)
  params = {
    "w_ih": f32((feat, 4 * hidden)),
    "w_hh": f32((hidden, 4 * hidden)),
    "bias": f32((4 * hidden,)),
  }
  args = (params, f32((batch, time, feat)), jax.ShapeDtypeStruct((batch, time), bool))
  # The Triton call has no export compatibility guarantee; allowed explicitly.
  checks = [export.DisabledSafetyCheck.custom_call(_TARGETS["cuda"])]
  return export.export(
    jax.jit(train_step), platforms=[platform], disabled_checks=checks
  )(*args)


@pytest.mark.parametrize("platform", ["cuda", "tpu"])
@pytest.mark.parametrize(
  "shape, dtype",
  [
    ((4, 6, 5, 16), None),
    ((64, 512, 512, 1024), None),
    ((64, 512, 512, 1024), jnp.bfloat16),
    ((16, 1024, 256, 256), None),
    ((16, 1024, 256, 256), jnp.bfloat16),
    ((64, 128, 64, 384), jnp.bfloat16),  # the char-LM default layer
  ],
  ids=lambda v: "x".join(map(str, v)) if isinstance(v, tuple) else str(v),
)
def test_export_holds_the_kernel(platform, shape, dtype):
  """Forward and backward lower to the platform's kernel, not the interpreter."""
  text = _export(platform, *shape, dtype).mlir_module()
  assert text.count(_TARGETS[platform]) == 2, (
    "expected the forward and backward kernels"
  )
  other = _TARGETS["tpu" if platform == "cuda" else "cuda"]
  assert other not in text
  # Interpret mode lowers the kernel body to a plain while loop over the grid
  # with dynamic-slice reads of the refs; the accelerator modules hold none.
  assert "stablehlo.while" not in text
