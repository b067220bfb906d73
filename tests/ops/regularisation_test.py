"""Regularisers: mask structure, eval identity, a numpy step-by-step reference,
and the fused path against the reference path with every method on.

The masks a module samples are observed with `flax.linen.intercept_methods`
(the inputs of each `LSTMLayer` and the results of its `_masks` and
`_drop_weights`), then the numpy loop recomputes the outputs from them.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lstm_jax.kernels import dispatch
from lstm_jax.models.lm import LanguageModel
from lstm_jax.nn.layers import LSTM, LSTMLayer
from lstm_jax.ops import regularisation as reg
from lstm_jax.ops.cell import LSTMCarry
from tests.support import tolerances

B, T, IN, H = 4, 6, 3, 5
# Tolerances (tests/support/tolerances.py). Against the float64 numpy loop
# (np_layer): the float32 module's own rounding over T steps at the widest
# step (the second layer's H + H inputs), relative to the values' size; two
# stacked layers add their errors.
NP_TOL = 2 * tolerances.recurrence_tol(T, 2 * H)
# Fused against reference: two float32 summation orders of the LSTM.
FUSED_TOL = tolerances.lstm_tol(B, T, IN, H)
# A mean of B * T * H float32 squares against float64.
MEAN_RTOL = tolerances.sum_tol(B * T * H)
ALL_ON = dict(
  input_dropout=0.3,
  hidden_dropout=0.4,
  output_dropout=0.5,
  recurrent_dropout=0.3,
  zoneout_cell=0.3,
  zoneout_hidden=0.2,
  weight_drop=0.5,
  ar_alpha=2.0,
  tar_beta=1.0,
)


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def np_layer(x, p, c0, h0, rmask=None, zc=None, zh=None):
  """The definition, one step at a time: recurrent dropout, then zoneout."""
  w_ih, w_hh, b = (np.asarray(p[k], np.float64) for k in ("w_ih", "w_hh", "bias"))
  c, h = np.asarray(c0, np.float64), np.asarray(h0, np.float64)
  ys = []
  for t in range(x.shape[1]):
    h_rec = h if rmask is None else h * rmask
    a = x[:, t] @ w_ih + h_rec @ w_hh + b
    i, f, g, o = np.split(a, 4, axis=-1)
    c_new = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
    h_new = _sigmoid(o) * np.tanh(c_new)
    c = c_new if zc is None else np.where(zc[:, t], c, c_new)
    h = h_new if zh is None else np.where(zh[:, t], h, h_new)
    ys.append(h)
  return np.stack(ys, axis=1), c, h


class _Recorder:
  """Records what each LSTMLayer receives and samples."""

  def __init__(self):
    self.inputs, self.masks, self.weights = {}, {}, {}

  def __call__(self, next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    name, method = context.module.name or "top", context.method_name
    if isinstance(context.module, LSTMLayer):
      if method == "__call__":
        self.inputs[name] = np.asarray(args[0])
      elif method == "_masks":
        self.masks[name] = jax.tree.map(np.asarray, out)
      elif method == "_drop_weights":
        self.weights[name] = jax.tree.map(np.asarray, out)
    return out


def _apply(model, variables, x, rng, record=None, **kwargs):
  def run():
    return model.apply(
      variables,
      x,
      deterministic=rng is None,
      rngs=None if rng is None else {"dropout": rng},
      mutable=["penalties"],
      **kwargs,
    )

  if record is None:
    return run()
  with nn.intercept_methods(record):
    return run()


def _init(model, x):
  return model.init(jax.random.key(0), x)


def _x(seed=1, shape=(B, T, IN)):
  return jax.random.normal(jax.random.key(seed), shape)


def _assert_locked(observed, base, rate, base_tol=0.0):
  """`observed [B, T, F]` is `base` times a keep mask `[B, 1, F]` (0 or
  1/(1-rate), the same at every step) that differs between sequences."""
  observed, base = np.asarray(observed, np.float64), np.asarray(base, np.float64)
  at = np.argmax(np.abs(base), axis=1)[:, None]  # where the ratio is defined
  mask = np.take_along_axis(observed, at, 1) / np.take_along_axis(base, at, 1)
  # Each ratio is 0 (dropped) or 1 / (1 - rate) >= 1 (kept): any threshold
  # between the two classifies it.
  mask = np.where(np.abs(mask) < 0.5, 0.0, 1 / (1 - rate))
  # A kept value is the base times the float32 scale: two float32 roundings,
  # plus the base's own difference where it is the numpy loop's (base_tol,
  # relative to the values' size).
  scale = max(1.0, float(np.max(np.abs(base))))
  np.testing.assert_allclose(
    observed,
    mask * base,
    rtol=2 * tolerances.F32_EPS,
    atol=base_tol * scale / (1 - rate),
  )
  assert len({tuple(row) for row in mask[:, 0] > 0}) > 1


def test_locked_dropout_masks_shared_across_time():
  x = jnp.ones((8, 20, 16))
  y = np.asarray(reg.locked_dropout(jax.random.key(3), 0.5, x))
  _assert_locked(y, x, 0.5)
  assert 0.3 < np.mean(y == 0) < 0.7


def test_module_masks_against_numpy_reference():
  """Every method on, 2 layers: the module equals the numpy definition fed
  the masks it sampled, and the masks have the structure of their method."""
  model = LSTM(H, num_layers=2, **ALL_ON)
  x = _x()
  variables = _init(model, x)
  rec = _Recorder()
  (y, finals), pen = _apply(model, variables, x, jax.random.key(5), rec)
  params = variables["params"]
  # Variational input dropout and between-layer dropout: one mask per row.
  x0 = rec.inputs["layer_0_fwd"]
  _assert_locked(x0, x, ALL_ON["input_dropout"])
  h = x0
  for layer in range(2):
    name = f"layer_{layer}_fwd"
    p, m = rec.weights[name], rec.masks[name]
    # Weight-drop touches only w_hh, with a keep mask over its entries.
    for key in ("w_ih", "bias"):
      np.testing.assert_array_equal(p[key], params[name][key])
    ratio = p["w_hh"] / np.asarray(params[name]["w_hh"])
    # Dropped (0) or kept and scaled by 2: one float32 rounding, far inside
    # isclose's default rtol (1e-5).
    assert np.all(np.isclose(ratio, 0) | np.isclose(ratio, 2.0))
    assert 0.2 < np.mean(ratio == 0) < 0.8
    # Recurrent dropout: one [batch, H] mask; zoneout: [batch, time, H].
    assert m["recurrent_mask"].shape == (B, H)
    assert m["zoneout_c"].shape == m["zoneout_h"].shape == (B, T, H)
    assert 0.05 < m["zoneout_c"].mean() < 0.6
    zero = np.zeros((B, H))
    ys, c, hh = np_layer(
      h, p, zero, zero, m["recurrent_mask"], m["zoneout_c"], m["zoneout_h"]
    )
    tolerances.assert_close(finals[layer].c, c, NP_TOL)
    tolerances.assert_close(finals[layer].h, hh, NP_TOL)
    if layer == 0:
      h = rec.inputs["layer_1_fwd"]
      _assert_locked(h, ys, ALL_ON["hidden_dropout"], NP_TOL)
  # Output dropout (locked) on the last layer; AR on the dropped output, TAR
  # on the undropped one.
  _assert_locked(y, ys, ALL_ON["output_dropout"], NP_TOL)
  ar = ALL_ON["ar_alpha"] * np.mean(np.asarray(y, np.float64) ** 2)
  tar = ALL_ON["tar_beta"] * np.mean((ys[:, 1:] - ys[:, :-1]) ** 2)
  np.testing.assert_allclose(pen["penalties"]["ar"][0], ar, rtol=MEAN_RTOL + NP_TOL)
  np.testing.assert_allclose(pen["penalties"]["tar"][0], tar, rtol=MEAN_RTOL + NP_TOL)


def test_penalties_count_real_steps_only():
  h = np.asarray(_x(2, (B, T, H)))
  real = np.ones((B, T), bool)
  real[1, 4:] = False
  real[2, 2] = False
  ar = np.sum(h**2 * real[..., None]) / (real.sum() * H)
  pair = real[:, 1:] & real[:, :-1]
  tar = np.sum((h[:, 1:] - h[:, :-1]) ** 2 * pair[..., None]) / (pair.sum() * H)
  np.testing.assert_allclose(reg.activation_penalty(h, real), ar, rtol=MEAN_RTOL)
  np.testing.assert_allclose(reg.temporal_penalty(h, real), tar, rtol=MEAN_RTOL)


def test_weight_drop_changes_once_per_batch():
  layer = LSTMLayer(H, weight_drop=0.5)
  x = _x()
  variables = _init(layer, x)
  masks = []
  for step in range(2):
    rec = _Recorder()
    _apply(layer, variables, x, jax.random.fold_in(jax.random.key(0), step), rec)
    masks.append(rec.weights["top"]["w_hh"] == 0)
  assert np.any(masks[0] != masks[1])
  # one matrix for every row and step: the numpy loop with it reproduces y
  rec = _Recorder()
  (y, _), _ = _apply(layer, variables, x, jax.random.key(1), rec)
  zero = np.zeros((B, H))
  ys, _, _ = np_layer(np.asarray(x), rec.weights["top"], zero, zero)
  tolerances.assert_close(y, ys, NP_TOL)


def test_recurrent_mask_constant_across_time():
  """The scan with a mask equals the numpy loop that applies the one mask at
  every step (and the layer samples exactly one [batch, H] mask)."""
  layer = LSTMLayer(H, recurrent_dropout=0.5)
  x = _x()
  variables = _init(layer, x)
  rec = _Recorder()
  (y, _), _ = _apply(layer, variables, x, jax.random.key(2), rec)
  m = rec.masks["top"]["recurrent_mask"]
  assert m.shape == (B, H) and set(np.unique(m)) <= {0.0, 2.0}
  zero = np.zeros((B, H))
  ys, _, _ = np_layer(np.asarray(x), variables["params"], zero, zero, rmask=m)
  tolerances.assert_close(y, ys, NP_TOL)


def test_zoneout_rate_0_and_1():
  x = _x()
  c0, h0 = _x(7, (B, H)), _x(8, (B, H))
  carry = LSTMCarry(c0, h0)
  off = LSTMLayer(H)
  variables = _init(off, x)
  (want, want_carry), _ = _apply(off, variables, x, None, initial_carry=carry)
  for impl in ("fused", "reference"):
    zero = LSTMLayer(H, zoneout_cell=0.0, zoneout_hidden=0.0, impl=impl)
    (y, fin), _ = _apply(zero, variables, x, jax.random.key(1), initial_carry=carry)
    # `off` runs the default impl, `zero` each impl: two summation orders.
    tolerances.assert_close(y, want, FUSED_TOL)
    # an all-false zoneout mask is no zoneout, on both paths
    none = np.zeros((B, T, H), bool)
    ys, _ = dispatch.lstm_scan(
      variables["params"],
      x,
      initial_carry=carry,
      impl=impl,
      zoneout_c=none,
      zoneout_h=none,
    )
    tolerances.assert_close(ys, want, FUSED_TOL)
    one = LSTMLayer(H, zoneout_cell=1.0, zoneout_hidden=1.0, impl=impl)
    (y, fin), _ = _apply(one, variables, x, jax.random.key(1), initial_carry=carry)
    np.testing.assert_array_equal(y, np.broadcast_to(h0[:, None], y.shape))
    np.testing.assert_array_equal(fin.c, c0)
    np.testing.assert_array_equal(fin.h, h0)


def test_every_method_is_identity_in_eval_mode():
  x = _x()
  plain, regd = LSTM(H, num_layers=2), LSTM(H, num_layers=2, **ALL_ON)
  variables = _init(plain, x)
  (want, _), _ = _apply(plain, variables, x, None)
  (got, _), pen = _apply(regd, variables, x, None)
  np.testing.assert_array_equal(got, want)
  assert not pen
  tokens = {"inputs": jax.random.randint(jax.random.key(3), (B, T), 0, 9)}
  lm = LanguageModel(9, LSTM(H, **ALL_ON), embed_dim=4, embed_dropout=0.5)
  lm_plain = LanguageModel(9, LSTM(H), embed_dim=4)
  lm_vars = lm_plain.init(jax.random.key(0), tokens)
  (want, _), _ = _apply(lm_plain, lm_vars, tokens, None)
  (got, _), _ = _apply(lm, lm_vars, tokens, None)
  np.testing.assert_array_equal(got, want)


def test_embedding_dropout_drops_whole_symbols():
  tokens = jax.random.randint(jax.random.key(3), (8, 12), 0, 6)
  lm = LanguageModel(6, LSTM(H), embed_dim=4, embed_dropout=0.5)
  variables = lm.init(jax.random.key(0), {"inputs": tokens})
  seen = {}

  def record(next_fun, args, kwargs, context):
    if isinstance(context.module, LSTM) and context.method_name == "__call__":
      seen["x"] = np.asarray(args[0])
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(record):
    _apply(lm, variables, {"inputs": tokens}, jax.random.key(4))
  table = np.asarray(variables["params"]["embed"]["embedding"])
  scale = seen["x"] / table[np.asarray(tokens)]
  tok = np.asarray(tokens)
  for s in range(6):  # one factor per symbol, 0 or 2, wherever it occurs
    vals = scale[tok == s]
    # 0 or 2 (kept at rate 0.5), one float32 rounding: inside allclose's defaults.
    assert np.allclose(vals, 0) or np.allclose(vals, 2.0)
  assert len({bool(np.allclose(scale[tok == s], 0)) for s in range(6)}) == 2


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("remat", [False, True])
def test_fused_matches_reference_with_every_method(reverse, remat):
  """Values and gradients (weights, inputs, initial carry), with padding."""
  keys = jax.random.split(jax.random.key(11), 6)
  x = _x()
  params = _init(LSTMLayer(H), x)["params"]
  carry = LSTMCarry(_x(7, (B, H)), _x(8, (B, H)))
  mask = np.ones((B, T), bool)
  mask[1, 4:] = False
  mask[2, 1] = False
  kw = dict(
    mask=mask,
    reverse=reverse,
    remat=remat,
    recurrent_mask=reg.recurrent_mask(keys[0], 0.4, B, H),
    zoneout_c=reg.zoneout_mask(keys[1], 0.3, B, T, H),
    zoneout_h=reg.zoneout_mask(keys[2], 0.3, B, T, H),
  )
  w = jax.random.normal(keys[3], (B, T, H))

  def loss(impl, p, x, carry):
    p = {**p, "w_hh": reg.weight_drop(keys[4], 0.5, p["w_hh"])}
    ys, fin = dispatch.lstm_scan(p, x, impl=impl, initial_carry=carry, **kw)
    return jnp.sum(w * jnp.tanh(ys)) + jnp.sum(fin.c**2) + jnp.sum(fin.h)

  want = jax.value_and_grad(lambda *a: loss("reference", *a), (0, 1, 2))
  got = jax.value_and_grad(lambda *a: loss("fused", *a), (0, 1, 2))
  for a, b in zip(
    jax.tree.leaves(want(params, x, carry)), jax.tree.leaves(got(params, x, carry))
  ):
    tolerances.assert_close(b, a, FUSED_TOL)


def test_module_fused_and_reference_agree_and_auto_stays_fused():
  x = _x()
  fused = LSTM(H, num_layers=2, impl="fused", **ALL_ON)
  ref = LSTM(H, num_layers=2, impl="reference", **ALL_ON)
  variables = _init(fused, x)

  def loss(model, params):
    (y, _), pen = _apply(model, {"params": params}, x, jax.random.key(9))
    return jnp.sum(y**2) + sum(jax.tree.leaves(pen))

  a = jax.value_and_grad(lambda p: loss(fused, p))(variables["params"])
  b = jax.value_and_grad(lambda p: loss(ref, p))(variables["params"])
  for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    tolerances.assert_close(u, v, 2 * FUSED_TOL)  # two layers: the errors add
  # "auto" trains on the hand-written backward with every method on
  auto = LSTM(H, num_layers=2, **ALL_ON)
  jaxpr = jax.make_jaxpr(lambda p: loss(auto, p))(variables["params"])
  assert str(jaxpr).count("custom_vjp_call") == 2  # one per layer
