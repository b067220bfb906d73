"""The NNX front end (`lstm_jax.nnx`): parity of outputs and gradients with the
Linen module given the same parameters, conversion both ways, train/eval
modes, and `LSTMCell` in `nnx.RNN` against a numpy step loop."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lstm_jax import nnx as lnnx
from lstm_jax.nn import layers
from lstm_jax.nn.spec import LSTMSpec
from lstm_jax.ops.cell import LSTMCarry
from tests.support import tolerances

B, T, IN, H = 3, 5, 4, 6
LENGTHS = np.array([T, 2, 0])  # right padding and a zero-length row
CASES = {
  "uni": {},
  "bi": {"bidirectional": True},
  "two_layers": {"num_layers": 2},
  "proj": {"proj_size": 3},
}


def _data(seed=0):
  """Inputs [B, T, IN], their mask, and a RandomState for the rest (numpy:
  no JAX computation, hence no compilation, outside the tested functions)."""
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(B, T, IN)).astype(np.float32)
  mask = np.arange(T)[None, :] < LENGTHS[:, None]
  return x, mask, rng


def _loss(outputs, carries, weights):
  """A weighted sum of outputs and final carries (every output counts)."""
  leaves = [outputs, *jax.tree.leaves(carries)]
  return sum(jnp.sum(a * w) for a, w in zip(leaves, weights, strict=True))


def _max_diff(a, b) -> float:
  return max(
    float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
  )


def _twins(case, impl):
  """The Linen module's and the NNX model's loss-and-gradient functions, and
  their arguments: the same random parameters (set from numpy, and the NNX
  model built abstractly, so nothing is computed before the comparison)."""
  x, mask, rng = _data()
  linen = layers.LSTM(H, impl=impl, **CASES[case])
  shapes = jax.eval_shape(linen.init, jax.random.key(0), x, mask=mask)
  variables = jax.tree.map(lambda s: 0.5 * rng.normal(size=s.shape), shapes)
  variables = jax.tree.map(lambda a: a.astype(np.float32), variables)
  model = nnx.eval_shape(lambda: lnnx.LSTM.from_linen(linen, IN, rngs=nnx.Rngs(0)))
  lnnx.load_linen_variables(model, variables)
  model.eval()
  carry0 = jax.tree.map(
    lambda a: rng.normal(size=a.shape).astype(np.float32), model.initialize_carry(B)
  )
  out = (2 if CASES[case].get("bidirectional") else 1) * (
    CASES[case].get("proj_size") or H
  )
  shapes = [(B, T, out), *(np.shape(a) for a in jax.tree.leaves(carry0))]
  weights = [rng.normal(size=s).astype(np.float32) for s in shapes]

  def linen_loss(variables, x):
    ys, carries = linen.apply(variables, x, mask=mask, initial_carry=carry0)
    return _loss(ys, carries, weights), (ys, carries)

  graphdef, params, rest = nnx.split(model, nnx.Param, ...)

  def nnx_loss(params, x):
    ys, carries = nnx.merge(graphdef, params, rest)(x, mask=mask, initial_carry=carry0)
    return _loss(ys, carries, weights), (ys, carries)

  # (loss, (outputs, carries)), (d loss / d params, d loss / d x)
  linen_grad = jax.value_and_grad(linen_loss, argnums=(0, 1), has_aux=True)
  nnx_grad = jax.value_and_grad(nnx_loss, argnums=(0, 1), has_aux=True)
  return (linen_grad, (variables, x)), (nnx_grad, (params.to_pure_dict(), x))


@pytest.mark.parametrize("case", CASES)
def test_same_computation_as_linen(case):
  # Outputs, final carries and gradients (w.r.t. parameters and inputs) of
  # the NNX model are the Linen module's op for op: the same jaxpr, on the
  # requested path (fused != reference, except under a projection, which
  # always takes the reference scan). Tracing only; the numbers are compared
  # below.
  jaxprs = {}
  for impl in ("fused", "reference"):
    (linen_grad, linen_args), (nnx_grad, nnx_args) = _twins(case, impl)
    jaxprs[impl] = str(jax.make_jaxpr(linen_grad)(*linen_args))
    assert str(jax.make_jaxpr(nnx_grad)(*nnx_args)) == jaxprs[impl], impl
  assert (jaxprs["fused"] == jaxprs["reference"]) == (case == "proj")


@pytest.mark.parametrize(
  "case, impl",
  [
    pytest.param(
      case, impl, marks=() if (case, impl) == ("bi", "fused") else pytest.mark.slow
    )
    for case in CASES
    for impl in ("fused", "reference")
  ],
)
def test_outputs_and_gradients_equal_linen(case, impl):
  # Numerically, within 1e-6 (one case in the default suite, all with -m
  # slow); each front end compiled on its own.
  (linen_grad, linen_args), (nnx_grad, nnx_args) = _twins(case, impl)
  (_, (ys, carries)), (dv, dx) = jax.jit(linen_grad)(*linen_args)
  (_, (nys, ncarries)), (ndp, ndx) = jax.jit(nnx_grad)(*nnx_args)
  assert np.all(np.asarray(ys)[2] == 0) and np.any(np.asarray(ys)[0] != 0)
  assert _max_diff(ys, nys) <= 1e-6
  assert _max_diff(carries, ncarries) <= 1e-6
  assert jax.tree.structure(dv["params"]) == jax.tree.structure(ndp)
  assert _max_diff(dv["params"], ndp) <= 1e-6
  assert _max_diff(dx, ndx) <= 1e-6
  assert float(jnp.max(jnp.abs(dx))) > 0


def test_nnx_parameters_drive_the_linen_module():
  # The other direction: an NNX model's own parameters, applied by Linen.
  x, mask, _ = _data(1)
  model = lnnx.LSTM(IN, H, rngs=nnx.Rngs(0), proj_size=2)
  model.eval()
  linen = layers.LSTM(H, proj_size=2)
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)

  @jax.jit
  def run(variables, params):
    ys, _ = linen.apply(variables, x, mask=mask)
    return ys, nnx.merge(graphdef, params, rest)(x, mask=mask)[0]

  ys, nys = run(lnnx.linen_variables(model), params)
  assert _max_diff(ys, nys) <= 1e-6 and np.any(np.asarray(ys) != 0)
  # The paths of a deeper stack, and the module of a config section.
  section = LSTMSpec(hidden_size=H, num_layers=2, bidirectional=True).to_config()
  spec = LSTMSpec.from_config(section)
  twin = nnx.eval_shape(lambda: lnnx.LSTM.from_spec(spec, IN, rngs=nnx.Rngs(0)))
  shapes = jax.eval_shape(layers.lstm_from_config(section).init, jax.random.key(0), x)
  assert sorted(shapes["params"]) == [
    "layer_0_bwd", "layer_0_fwd", "layer_1_bwd", "layer_1_fwd"
  ]  # fmt: skip
  assert jax.tree.map(np.shape, lnnx.linen_variables(twin)) == jax.tree.map(
    np.shape, shapes
  )


def test_load_names_mismatched_paths():
  model = nnx.eval_shape(lambda: lnnx.LSTM(IN, H, rngs=nnx.Rngs(0)))
  other = jax.eval_shape(
    layers.LSTM(H, proj_size=2).init, jax.random.key(0), jnp.zeros((1, 2, IN))
  )
  with pytest.raises(ValueError, match=r"unknown \['layer_0_fwd/w_proj'\]") as err:
    lnnx.load_linen_variables(model, other)
  assert "layer_0_fwd/w_hh: (2, 24) vs (6, 24)" in str(err.value)


def test_train_and_eval_modes():
  # Locked output dropout and AR only: training multiplies the eval outputs by
  # one keep mask per (sequence, feature), the same at every step.
  x, mask, _ = _data(2)
  rate, alpha = 0.5, 2.0
  model = lnnx.LSTM(
    IN, H, rngs=nnx.Rngs(params=0, dropout=1), output_dropout=rate, ar_alpha=alpha
  )
  model.eval()
  (y_eval, _), sown = nnx.capture(model, lnnx.Penalty)(x, mask=mask)
  assert not sown  # nothing sown in eval mode
  model.train()
  run = nnx.jit(nnx.capture(lambda m, x: m(x, mask=mask)[0], lnnx.Penalty))
  (y1, _), (y2, penalties) = run(model, x), run(model, x)
  for y in (y1, y2):
    keep = np.asarray(y)[0, 0] != 0  # row 0 is real at every step
    expected = np.asarray(y_eval) * np.where(keep, 1 / (1 - rate), 0.0)[None, None]
    # dropout scales by 1/(1-rate) in float32: one rounding per value
    np.testing.assert_allclose(y[0], expected[0], rtol=1e-6, atol=1e-7)
    assert 0 < keep.sum() < H
  assert np.any(np.asarray(y1) != np.asarray(y2))  # the stream advances
  y = np.asarray(y2, np.float64)
  real = np.asarray(mask)[..., None]
  ar = alpha * np.sum(y**2 * real) / (real.sum() * H)
  # a float32 mean of B*T*H squares vs float64: sum_tol of that length
  np.testing.assert_allclose(penalties["ar"].get_value()[-1], ar, rtol=1e-5)
  # A call can override the mode; eval() gives back the deterministic outputs.
  assert _max_diff(model(x, mask=mask, deterministic=True)[0], y_eval) == 0
  model.eval()
  assert _max_diff(model(x, mask=mask)[0], y_eval) == 0


def test_bad_options_are_named():
  with pytest.raises(ValueError, match=r"LSTM takes no option\(s\) \['dropuot'\]"):
    lnnx.LSTM(IN, H, rngs=nnx.Rngs(0), dropuot=0.5)
  with pytest.raises(
    ValueError, match=r"LSTMLayer takes no option\(s\) \['num_layers'\]"
  ):
    lnnx.LSTMLayer(IN, H, rngs=nnx.Rngs(0), num_layers=2)
  with pytest.raises(ValueError, match=r"LSTM.cell must be one of .*got 'gru'"):
    lnnx.LSTM(IN, H, rngs=nnx.Rngs(0), cell="gru")
  model = lnnx.LSTM(IN, H, rngs=nnx.Rngs(params=0), dropout=0.5, num_layers=2)
  with pytest.raises(ValueError, match="needs a 'dropout' stream"):
    model(jnp.zeros((1, 2, IN)))


def _np_lstm(x, p, proj):
  """The LSTM definition, one step at a time in float64 (gates i, f, g, o)."""
  sig = lambda a: 1 / (1 + np.exp(-a))  # noqa: E731
  w_ih, w_hh, b = (np.asarray(p[k], np.float64) for k in ("w_ih", "w_hh", "bias"))
  c = np.zeros((x.shape[0], H))
  h = np.zeros((x.shape[0], w_hh.shape[0]))
  ys = []
  for t in range(x.shape[1]):
    i, f, g, o = np.split(x[:, t] @ w_ih + h @ w_hh + b, 4, axis=-1)
    c = sig(f) * c + sig(i) * np.tanh(g)
    h = sig(o) * np.tanh(c)
    if proj:
      h = h @ np.asarray(p["w_proj"], np.float64)
    ys.append(h)
  return np.stack(ys, 1), c, h


@pytest.mark.parametrize("proj", [0, 2])
def test_cell_in_nnx_rnn_matches_numpy_loop(proj):
  x, _, _ = _data(3)
  cell = lnnx.LSTMCell(IN, H, rngs=nnx.Rngs(0), proj_size=proj)
  (c, h), ys = nnx.RNN(cell, return_carry=True)(x)
  params = nnx.state(cell, nnx.Param).to_pure_dict()
  ys_np, c_np, h_np = _np_lstm(np.asarray(x, np.float64), params, proj)
  # float32 cell vs float64 numpy loop: the cell's own rounding over T steps.
  tol = tolerances.recurrence_tol(T, IN + H)
  tolerances.assert_close(ys, ys_np, tol)
  tolerances.assert_close(c, c_np, tol)
  tolerances.assert_close(h, h_np, tol)
  # The cell has the parameters of an LSTMLayer: the scan gives the same.
  layer = lnnx.LSTMLayer(IN, H, rngs=nnx.Rngs(0), proj_size=proj)
  layer.eval()
  ys_layer, carry = layer(x)
  # the NNX cell in nnx.RNN vs the NNX layer's scan: the same math, float32 summation order only
  np.testing.assert_allclose(ys_layer, ys, atol=1e-6)
  assert isinstance(carry, LSTMCarry)
