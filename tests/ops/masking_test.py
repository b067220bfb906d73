"""Masks, padding and packed segments: a sequence's result never depends on its row.

The outputs at real steps and the final carry of a sequence are the same
whether it runs alone, right-padded, left-padded, with holes, or packed with
other sequences through `segment_ids`; padded steps output zeros and hold the
carry; a zero-length row returns zeros and its initial carry. Every test runs
both implementations (`impl="reference"`, JAX autodiff, and `impl="fused"`,
the hand-written backward) and both directions.
"""

from __future__ import annotations

import functools

import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from lstm_jax import LSTM, LSTMCarry, LSTMLayer
from lstm_jax.kernels import dispatch
from tests.support import tolerances

IMPLS = ("reference", "fused")
F, H = 3, 4  # input features, hidden size
# Same math, different batch composition (XLA may block each batch's matmuls
# differently): two float32 summation orders of a recurrence of at most 8
# steps at width F + H (tests/support/tolerances.py), 6.7e-6.
ATOL = tolerances.recurrence_tol(8, F + H)


def normal(seed, *shape, scale=1.0):
  """float32 N(0, scale^2) test data from numpy (no per-shape XLA compile)."""
  return (scale * np.random.default_rng(seed).normal(size=shape)).astype(np.float32)


def make_params(seed=0, features=F, hidden=H):
  return {
    "w_ih": normal(seed, features, 4 * hidden, scale=0.6),
    "w_hh": normal(seed + 1000, hidden, 4 * hidden, scale=0.6),
    "bias": normal(seed + 2000, 4 * hidden, scale=0.3),
  }


def rand_carry(seed, batch, hidden=H):
  return LSTMCarry(normal(seed, batch, hidden), normal(seed + 1000, batch, hidden))


@functools.partial(jax.jit, static_argnames=("impl", "reverse"))
def run(params, xs, mask=None, segment_ids=None, initial_carry=None, *, impl, reverse):
  return dispatch.lstm_scan(
    params, xs, mask=mask, segment_ids=segment_ids, initial_carry=initial_carry,
    reverse=reverse, impl=impl,
  )  # fmt: skip


def _np(tree):
  return jax.tree.map(np.asarray, tree)


def _place(seq, positions, t, fill):
  """A [t, F] row with `seq` at `positions` and `fill` elsewhere."""
  row = np.full((t, seq.shape[-1]), fill, np.float32)
  row[positions] = seq
  return row


params_impl = pytest.mark.parametrize("impl", IMPLS)
params_reverse = pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])


@params_impl
@params_reverse
def test_padding_anywhere_equals_running_alone(impl, reverse):
  params = make_params()
  seq = normal(1, 4, F)
  t = 8
  layouts = {  # row -> positions of the 4 real steps
    "right": [0, 1, 2, 3],
    "left": [4, 5, 6, 7],
    "holes": [0, 2, 3, 6],
    "middle": [2, 3, 4, 5],
  }
  # Large garbage on padding: it must not leak into anything.
  xs = np.stack([_place(seq, pos, t, 1e3) for pos in layouts.values()])
  mask = np.zeros((len(layouts), t), bool)
  for b, pos in enumerate(layouts.values()):
    mask[b, pos] = True
  init = rand_carry(2, 1)
  init_b = jax.tree.map(lambda a: jnp.repeat(a, len(layouts), 0), init)
  ys, carry = _np(
    run(params, xs, mask, initial_carry=init_b, impl=impl, reverse=reverse)
  )
  ys1, carry1 = _np(
    run(params, seq[None], initial_carry=init, impl=impl, reverse=reverse)
  )
  for b, (name, pos) in enumerate(layouts.items()):
    np.testing.assert_allclose(ys[b, pos], ys1[0], atol=ATOL, err_msg=name)
    np.testing.assert_array_equal(ys[b, ~mask[b]], 0.0, err_msg=name)
    np.testing.assert_allclose(carry.c[b], carry1.c[0], atol=ATOL, err_msg=name)
    np.testing.assert_allclose(carry.h[b], carry1.h[0], atol=ATOL, err_msg=name)


@params_impl
def test_reverse_starts_at_last_real_step(impl):
  """Reverse over a right-padded row == forward over the flipped real steps."""
  params = make_params(3)
  length, t = 3, 6
  x = normal(4, 1, t, F)
  mask = np.arange(t)[None] < length
  ys_rev, c_rev = _np(run(params, x, mask, impl=impl, reverse=True))
  ys_fwd, c_fwd = _np(run(params, x[:, :length][:, ::-1], impl=impl, reverse=False))
  np.testing.assert_allclose(ys_rev[:, :length], ys_fwd[:, ::-1], atol=ATOL)
  np.testing.assert_array_equal(ys_rev[:, length:], 0.0)
  np.testing.assert_allclose(c_rev.c, c_fwd.c, atol=ATOL)
  np.testing.assert_allclose(c_rev.h, c_fwd.h, atol=ATOL)


@params_impl
@params_reverse
def test_packed_segments_equal_running_alone(impl, reverse):
  params = make_params(5)
  t = 8
  seg = np.array(
    [
      [1, 1, 1, 2, 2, 0, 3, 3],  # three sequences, padding between two
      [5, 5, 7, 7, 5, 5, 5, 0],  # an id reused later is a new sequence
      [4, 4, 0, 0, 4, 4, 0, 0],  # one sequence with a hole: carry held
      [0, 0, 0, 0, 0, 0, 0, 0],  # empty row
    ]
  )
  xs = normal(6, 4, t, F)
  init = _np(rand_carry(7, 4))
  ys, carry = _np(run(params, xs, segment_ids=seg, initial_carry=init, impl=impl,
                      reverse=reverse))  # fmt: skip
  # The sequences, each a run of equal non-zero ids separated only by padding.
  pieces = [(0, [0, 1, 2]), (0, [3, 4]), (0, [6, 7]), (1, [0, 1]), (1, [2, 3]),
            (1, [4, 5, 6]), (2, [0, 1, 4, 5])]  # fmt: skip
  # Each alone in its own row (right-padded: test_padding_anywhere... shows
  # that equals a batch of one); the first in scan order gets the row's carry.
  alone_x = np.zeros((len(pieces), 4, F), np.float32)
  alone_m = np.zeros((len(pieces), 4), bool)
  alone_init = rand_carry(0, len(pieces))
  alone_init = LSTMCarry(np.zeros_like(alone_init.c), np.zeros_like(alone_init.h))
  for k, (r, pos) in enumerate(pieces):
    alone_x[k, : len(pos)] = xs[r, pos]
    alone_m[k, : len(pos)] = True
    rows = [p for rr, p in pieces if rr == r]
    if pos is (rows[-1] if reverse else rows[0]):
      alone_init.c[k], alone_init.h[k] = init.c[r], init.h[r]
  y1, c1 = _np(run(params, alone_x, alone_m, initial_carry=alone_init, impl=impl,
                   reverse=reverse))  # fmt: skip
  for k, (r, pos) in enumerate(pieces):
    np.testing.assert_allclose(
      ys[r, pos], y1[k, : len(pos)], atol=ATOL, err_msg=str(pos)
    )
    rows = [p for rr, p in pieces if rr == r]
    if pos is (rows[0] if reverse else rows[-1]):  # the last in scan order
      np.testing.assert_allclose(carry.c[r], c1.c[k], atol=ATOL)
      np.testing.assert_allclose(carry.h[r], c1.h[k], atol=ATOL)
  np.testing.assert_array_equal(ys[seg == 0], 0.0)
  # The empty row: zeros and its initial carry.
  np.testing.assert_array_equal(carry.c[3], init.c[3])
  np.testing.assert_array_equal(carry.h[3], init.h[3])


# Both paths in both directions; two of the four are slow-only (the default run
# still covers each path and each direction once).
IMPL_DIRECTIONS = [
  pytest.param("reference", False, id="reference-fwd"),
  pytest.param("reference", True, id="reference-rev", marks=pytest.mark.slow),
  pytest.param("fused", False, id="fused-fwd", marks=pytest.mark.slow),
  pytest.param("fused", True, id="fused-rev"),
]


@pytest.mark.parametrize("impl,reverse", IMPL_DIRECTIONS)
def test_zero_length_rows(impl, reverse):
  """Zero outputs, the initial carry back, and gradients that pass straight through."""
  params = make_params(8)
  xs = normal(9, 3, 5, F)
  mask = np.array([[1, 1, 1, 0, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1]], bool)
  init = rand_carry(10, 3)

  def loss(params, xs, init):
    ys, carry = dispatch.lstm_scan(params, xs, mask=mask, initial_carry=init,
                                    reverse=reverse, impl=impl)  # fmt: skip
    return jnp.sum(ys) + jnp.sum(carry.c * 2.0) + jnp.sum(carry.h * 3.0), (ys, carry)

  (_, (ys, carry)), (_, g_xs, g_init) = _np(
    jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True))(params, xs, init)
  )
  np.testing.assert_array_equal(ys[1], 0.0)
  np.testing.assert_array_equal(carry.c[1], init.c[1])
  np.testing.assert_array_equal(carry.h[1], init.h[1])
  np.testing.assert_array_equal(g_xs[1], 0.0)
  np.testing.assert_array_equal(g_init.c[1], 2.0)
  np.testing.assert_array_equal(g_init.h[1], 3.0)
  np.testing.assert_array_equal(g_xs[0, 3:], 0.0)  # padded steps get no gradient


def _gradcheck_fn(impl, reverse, remat=False, hoist=False):
  t = 6
  mask = np.ones((2, t), bool)
  mask[0, 4:] = False  # right padding
  mask[1, 2] = False  # a hole
  seg = np.array([[1, 1, 2, 2, 0, 0], [3, 3, 0, 3, 4, 4]]) * mask
  cot = normal(11, 2, t, H)

  def f(params, xs, c0, h0):
    ys, carry = LSTMLayer(H, reverse=reverse, impl=impl, remat=remat).apply(
      {"params": params},
      xs,
      mask=mask,
      segment_ids=seg,
      initial_carry=LSTMCarry(c0, h0),
    )
    return jnp.sum(ys * cot) + jnp.sum(jnp.sin(carry.c)) + jnp.sum(carry.h**2)

  args = (make_params(12), *(np.asarray(a) for a in (
    normal(13, 2, t, F),
    *rand_carry(14, 2),
  )))  # fmt: skip
  return f, args


@pytest.mark.parametrize("impl,reverse", IMPL_DIRECTIONS)
def test_check_grads(impl, reverse):
  """Finite differences agree with the gradient (float32, so loose tolerances).

  The state is float32 by design (`lstm_step` casts the gates and carry), so
  float64 would not make finite differences sharper; eps=1e-2 balances the
  O(eps^2) truncation error against float32 rounding. The custom_vjp fast path
  has no forward mode, so "fused" checks reverse mode only.
  """
  f, args = _gradcheck_fn(impl, reverse)
  modes = ("fwd", "rev") if impl == "reference" else ("rev",)
  check_grads(jax.jit(f), args, order=1, modes=modes, eps=1e-2, atol=2e-2, rtol=2e-2)


@pytest.mark.parametrize(
  "reverse,remat",
  [
    pytest.param(False, False, id="fwd"),
    pytest.param(True, False, id="rev", marks=pytest.mark.slow),
    pytest.param(False, True, id="fwd-remat", marks=pytest.mark.slow),
    pytest.param(True, True, id="rev-remat"),
  ],
)
def test_fused_gradients_equal_reference(reverse, remat):
  """The hand-written backward == autodiff, with padding, holes, segments, carry."""
  f_ref, args = _gradcheck_fn("reference", reverse, remat)
  f_fused, _ = _gradcheck_fn("fused", reverse, remat)
  argnums = (0, 1, 2, 3)
  g_ref = jax.jit(jax.value_and_grad(f_ref, argnums))(*args)
  g_fused = jax.jit(jax.value_and_grad(f_fused, argnums))(*args)
  # Hand-written backward vs autodiff: two summation orders of the LSTM
  # (_gradcheck_fn: 2 rows, 6 steps), relative to max(1, |value|).
  tol = tolerances.lstm_tol(2, 6, F, H)
  for a, b in zip(jax.tree.leaves(g_ref), jax.tree.leaves(g_fused)):
    np.testing.assert_allclose(a, b, atol=tol * max(1.0, np.max(np.abs(a))), rtol=0)


# ----------------------------------------------------------------------------
# Property-based: random layouts at a few fixed shapes (JAX compiles per shape).

SHAPES = [(1, 1, 1), (3, 7, 3)]  # (batch, time, features); real lengths vary freely
settings = hypothesis.settings(
  max_examples=15, deadline=None, derandomize=True,
  suppress_health_check=[hypothesis.HealthCheck.too_slow],
)  # fmt: skip


@st.composite
def masks(draw):
  b, t, f = draw(st.sampled_from(SHAPES))
  bits = draw(st.lists(st.booleans(), min_size=b * t, max_size=b * t))
  return np.array(bits, bool).reshape(b, t), f


@st.composite
def segment_rows(draw):
  b, t, f = draw(st.sampled_from(SHAPES))
  ids = draw(st.lists(st.integers(0, 3), min_size=b * t, max_size=b * t))
  return np.array(ids, np.int32).reshape(b, t), f


def _compress_left(xs, mask):
  """Each row's real steps moved to the front, in order; the rest padding."""
  out, new_mask = np.zeros_like(xs), np.zeros_like(mask)
  for b in range(xs.shape[0]):
    n = mask[b].sum()
    out[b, :n] = xs[b, mask[b]]
    new_mask[b, :n] = True
  return out, new_mask


@functools.partial(jax.jit, static_argnums=(5, 6))
def _loss_and_grad(params, xs, mask, cot, init, impl, reverse):
  def loss(params):
    ys, carry = dispatch.lstm_scan(params, xs, mask=mask, initial_carry=init,
                                    impl=impl, reverse=reverse)  # fmt: skip
    return jnp.sum(ys * cot) + jnp.sum(carry.c) - jnp.sum(carry.h), (ys, carry)

  return jax.value_and_grad(loss, has_aux=True)(params)


@params_impl
@settings
@hypothesis.given(mask=masks(), reverse=st.booleans(), seed=st.integers(0, 2**16))
def test_property_holes_equal_compressed(impl, mask, reverse, seed):
  """Any mask: real steps give the same outputs, carries and weight gradients as
  the same steps packed at the start of the row."""
  mask, f = mask
  b, t = mask.shape
  params = make_params(seed % 7, features=f)
  xs = normal(seed, b, t, f)
  init = rand_carry(seed + 1, b)
  xs_c, mask_c = _compress_left(xs, mask)
  cot = normal(seed + 2, b, t, H)

  (_, (ys, carry)), g = _np(_loss_and_grad(params, xs, mask, cot, init, impl, reverse))
  cot_c, _ = _compress_left(cot, mask)
  (_, (ys_c, carry_c)), g_c = _np(
    _loss_and_grad(params, xs_c, mask_c, cot_c, init, impl, reverse)
  )
  for r in range(b):
    n = mask[r].sum()
    np.testing.assert_allclose(ys[r, mask[r]], ys_c[r, :n], atol=ATOL)
  np.testing.assert_array_equal(ys[~mask], 0.0)
  jax.tree.map(lambda a, c: np.testing.assert_allclose(a, c, atol=ATOL), carry, carry_c)
  # Weight gradients: the same terms summed over other (row, step) positions.
  tol = tolerances.lstm_tol(b, t, f, H)
  jax.tree.map(
    lambda a, c: np.testing.assert_allclose(
      a, c, atol=tol * max(1.0, np.max(np.abs(c)))
    ),
    g,
    g_c,
  )


@params_impl
@settings
@hypothesis.given(seg=segment_rows(), reverse=st.booleans(), seed=st.integers(0, 2**16))
def test_property_segments_equal_separate_rows(impl, seg, reverse, seed):
  """Any segment_ids: each sequence (a maximal run of one id, padding skipped)
  gives the outputs it gives alone in its own row."""
  seg, f = seg
  b, t = seg.shape
  params = make_params(seed % 5, features=f)
  xs = normal(seed, b, t, f)
  ys, _ = _np(run(params, xs, segment_ids=seg, impl=impl, reverse=reverse))
  # Split into sequences; lay each one out alone in a row of a [b * t, t] batch
  # (fixed shape: one compilation), at its original positions.
  rows_x = np.zeros((b * t, t, f), np.float32)
  rows_m = np.zeros((b * t, t), bool)
  where = []  # (row in seg, positions)
  for r in range(b):
    prev, cur = 0, []
    for p in range(t):
      if seg[r, p] == 0:
        continue
      if prev and seg[r, p] != prev and cur:
        where.append((r, cur))
        cur = []
      cur.append(p)
      prev = seg[r, p]
    if cur:
      where.append((r, cur))
  for k, (r, pos) in enumerate(where):
    rows_x[k, pos] = xs[r, pos]
    rows_m[k, pos] = True
  ys_alone, _ = _np(run(params, rows_x, rows_m, impl=impl, reverse=reverse))
  for k, (r, pos) in enumerate(where):
    np.testing.assert_allclose(ys[r, pos], ys_alone[k, pos], atol=ATOL)
  np.testing.assert_array_equal(ys[seg == 0], 0.0)


@pytest.mark.parametrize("impl", ["reference", "fused"])
def test_nonfinite_padding_does_not_reach_gradients(impl):
  """Garbage on padded steps (NaN, inf) leaves outputs and gradients as if the
  padding were clean; compared against the same batch with finite padding."""
  rng = np.random.default_rng(0)
  x = rng.normal(size=(3, 6, 4)).astype(np.float32)
  lengths = np.array([6, 2, 0])
  mask = jnp.asarray(np.arange(6)[None] < lengths[:, None])
  model = LSTM(5, bidirectional=True, impl=impl)
  params = model.init(jax.random.key(0), jnp.asarray(x))["params"]

  @jax.jit
  def value_and_grad(inputs):
    def loss(p):
      ys, carries = model.apply({"params": p}, inputs, mask=mask)
      return jnp.sum(ys**2) + sum(jnp.sum(c.h) for c in carries)

    return jax.value_and_grad(loss)(params)

  clean_val, clean_grad = value_and_grad(jnp.asarray(x))
  for bad in (np.nan, np.inf):
    dirty = np.where(np.asarray(mask)[..., None], x, np.float32(bad))
    val, grad = value_and_grad(jnp.asarray(dirty))
    # The same program on the same inputs but the padded values, which are
    # selected away (never multiplied by a zero mask): bitwise equal.
    np.testing.assert_array_equal(val, clean_val)
    for g, cg in zip(jax.tree.leaves(grad), jax.tree.leaves(clean_grad), strict=True):
      assert np.all(np.isfinite(g)), bad
      np.testing.assert_array_equal(g, cg)
