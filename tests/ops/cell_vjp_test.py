"""The one cell and its one gradient (`lstm_jax.ops.cell`).

`cell_pointwise` is checked against the LSTM equations written out in NumPy
(float64), and `cell_pointwise_vjp` against `jax.vjp` of `cell_pointwise` and
against central finite differences of a NumPy forward, in float64, for both
gate layouts (packed [B, 4H] and four [B, H]) and both ways of evaluating the
sigmoid. Every path (reference, fused, Pallas) runs these two functions; their
own tests compare the paths with each other.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lstm_jax.ops.cell import CellSaved, cell_pointwise, cell_pointwise_vjp

B, H = 3, 5


def _sig(x):
  return 1.0 / (1.0 + np.exp(-x))


def _numpy_cell(a, c_prev, peephole=None, ln_c=None):
  """The equations of `cell_pointwise`'s docstring, in float64 NumPy."""
  a_i, a_f, a_g, a_o = np.split(a, 4, axis=-1)
  p = np.zeros((3, a.shape[-1] // 4)) if peephole is None else peephole
  i, f, g = _sig(a_i + p[0] * c_prev), _sig(a_f + p[1] * c_prev), np.tanh(a_g)
  c = f * c_prev + i * g
  o = _sig(a_o + p[2] * c)
  c_out = c
  if ln_c is not None:
    mean = c.mean(-1, keepdims=True)
    var = np.square(c - mean).mean(-1, keepdims=True)
    c_out = (c - mean) / np.sqrt(var + 1e-5) * ln_c[0] + ln_c[1]
  return c, o * np.tanh(c_out)


def _inputs(seed):
  rng = np.random.default_rng(seed)
  gates = 1.5 * rng.standard_normal((B, 4 * H))
  c_prev = rng.standard_normal((B, H))
  dc, dh = rng.standard_normal((B, H)), rng.standard_normal((B, H))
  return gates, c_prev, dc, dh


def _as_layout(gates, layout):
  return tuple(jnp.split(gates, 4, axis=-1)) if layout == "split" else gates


def _packed(d_gates):
  return np.concatenate(d_gates, -1) if isinstance(d_gates, tuple) else d_gates


@pytest.mark.parametrize("sigmoid", ["logistic", "tanh"])
@pytest.mark.parametrize("variant", ["standard", "peephole", "ln_c"])
def test_forward_is_the_equations(sigmoid, variant):
  gates, c_prev, _, _ = _inputs(0)
  rng = np.random.default_rng(1)
  kw = {}
  if variant == "peephole":
    kw["peephole"] = rng.standard_normal((3, H))
  if variant == "ln_c":
    kw["ln_c"] = (1 + 0.2 * rng.standard_normal(H), 0.2 * rng.standard_normal(H))
  want_c, want_h = _numpy_cell(gates, c_prev, **kw)
  with jax.enable_x64(True):
    jkw = {k: jax.tree.map(jnp.asarray, v) for k, v in kw.items()}
    c, h, _ = cell_pointwise(
      jnp.asarray(gates), jnp.asarray(c_prev), sigmoid=sigmoid, **jkw
    )
  # float64 both sides, the same formulas: jax's and numpy's tanh/exp differ by
  # a few float64 ulps (2.2e-16 each); 1e-12 leaves three orders of margin.
  np.testing.assert_allclose(c, want_c, rtol=1e-12, atol=1e-12)
  np.testing.assert_allclose(h, want_h, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("sigmoid", ["logistic", "tanh"])
@pytest.mark.parametrize("layout", ["packed", "split"])
def test_vjp_matches_autodiff(sigmoid, layout):
  gates, c_prev, dc, dh = _inputs(2)
  with jax.enable_x64(True):
    g, cp = _as_layout(jnp.asarray(gates), layout), jnp.asarray(c_prev)

    def fwd(g, cp):
      c, h, _ = cell_pointwise(g, cp, sigmoid=sigmoid)
      return c, h

    _, pullback = jax.vjp(fwd, g, cp)
    want_dg, want_dcp = pullback((jnp.asarray(dc), jnp.asarray(dh)))
    _, _, saved = cell_pointwise(g, cp, sigmoid=sigmoid)
    dg, dcp = cell_pointwise_vjp(saved, jnp.asarray(dc), jnp.asarray(dh))
  assert type(dg) is type(want_dg)  # the layout of the gates given
  # float64, the derivation vs autodiff's chain rule: the same products in
  # another order, a few float64 ulps of values of order one.
  np.testing.assert_allclose(_packed(dg), _packed(want_dg), rtol=1e-12, atol=1e-13)
  np.testing.assert_allclose(dcp, want_dcp, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("layout", ["packed", "split"])
def test_vjp_matches_finite_differences(layout):
  """Central differences of the NumPy cell, one input element at a time."""
  gates, c_prev, dc, dh = _inputs(3)

  def loss(a, cp):
    c, h = _numpy_cell(a, cp)
    return np.sum(dc * c) + np.sum(dh * h)

  eps = 1e-6
  want = []
  for x in (gates, c_prev):
    grad = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
      plus, minus = x.copy(), x.copy()
      plus[idx] += eps
      minus[idx] -= eps
      args_p = (plus, c_prev) if x is gates else (gates, plus)
      args_m = (minus, c_prev) if x is gates else (gates, minus)
      grad[idx] = (loss(*args_p) - loss(*args_m)) / (2 * eps)
    want.append(grad)
  with jax.enable_x64(True):
    g = _as_layout(jnp.asarray(gates), layout)
    _, _, saved = cell_pointwise(g, jnp.asarray(c_prev), sigmoid="tanh")
    assert isinstance(saved, CellSaved)
    dg, dcp = cell_pointwise_vjp(saved, jnp.asarray(dc), jnp.asarray(dh))
  # Central differences with step 1e-6 in float64: truncation ~ eps^2 |f'''| =
  # 1e-12 and cancellation ~ 2.2e-16 / 1e-6 = 2e-10 of the loss's scale (~10).
  np.testing.assert_allclose(_packed(dg), want[0], rtol=1e-7, atol=1e-8)
  np.testing.assert_allclose(dcp, want[1], rtol=1e-7, atol=1e-8)


def test_float32_layouts_and_sigmoids_agree():
  """The fused scan (packed, one tanh) and the Pallas kernels (four gates)
  compute the same float32 numbers; the logistic form agrees to rounding."""
  gates, c_prev, dc, dh = (jnp.asarray(a, jnp.float32) for a in _inputs(4))
  c1, h1, s1 = cell_pointwise(gates, c_prev, sigmoid="tanh")
  c2, h2, s2 = cell_pointwise(_as_layout(gates, "split"), c_prev, sigmoid="tanh")
  np.testing.assert_array_equal(c1, c2)
  np.testing.assert_array_equal(h1, h2)
  np.testing.assert_array_equal(s1.acts, _packed(s2.acts))
  d1, dcp1 = cell_pointwise_vjp(s1, dc, dh)
  d2, dcp2 = cell_pointwise_vjp(s2, dc, dh)
  # float32: the same expressions per gate in another association order (a
  # few float32 ulps, 1.2e-7 each); the logistic form below is the tanh form
  # rewritten, sigmoid(x) = (1 + tanh(x / 2)) / 2, rounding differently.
  np.testing.assert_allclose(d1, _packed(d2), rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(dcp1, dcp2, rtol=1e-6, atol=1e-7)
  c3, h3, _ = cell_pointwise(gates, c_prev, sigmoid="logistic")
  np.testing.assert_allclose(c3, c1, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(h3, h1, rtol=1e-6, atol=1e-6)


def test_rejects_unknown_sigmoid():
  gates, c_prev, _, _ = _inputs(5)
  with pytest.raises(ValueError, match="sigmoid must be one of"):
    cell_pointwise(jnp.asarray(gates), jnp.asarray(c_prev), sigmoid="hard")
