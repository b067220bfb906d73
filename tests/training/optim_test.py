"""optim.py against hand-computed values."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from absl.testing import parameterized

from experiments import base
from lstm_jax.errors import ConfigError
from lstm_jax.models.lm import LanguageModel
from lstm_jax.nn.layers import LSTM
from lstm_jax.training import optim


def _cfg(**overrides):
  cfg = base.get_config().optim
  cfg.update(overrides)
  return cfg


def _step(tx, params, grads, state=None):
  state = tx.init(params) if state is None else state
  updates, state = tx.update(grads, state, params)
  return optax.apply_updates(params, updates), state


class ScheduleTest(parameterized.TestCase):
  def test_warmup_cosine_values(self):
    cfg = _cfg(learning_rate=1.0, warmup_steps=10, final_lr_fraction=0.1)
    s = optim.make_schedule(cfg, total_steps=110)
    # Update n (0-based) warms up at (n + 1) / 10: the first update moves.
    np.testing.assert_allclose([s(0), s(4), s(9)], [0.1, 0.5, 1.0], rtol=1e-6)
    np.testing.assert_allclose(s(10), 1.0, rtol=1e-6)
    # Halfway through the cosine: end + (peak - end) * (1 + cos(pi / 2)) / 2.
    np.testing.assert_allclose(s(60), 0.1 + 0.9 * 0.5, rtol=1e-6)
    np.testing.assert_allclose(
      s(35), 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 4)), rtol=1e-6
    )
    # float32 schedule values vs hand-computed constants: a few float32 roundings (< 1e-6 relative)
    np.testing.assert_allclose(s(110), 0.1, rtol=1e-6)
    np.testing.assert_allclose(s(500), 0.1, rtol=1e-6)

  def test_decay_steps_overrides_total(self):
    cfg = _cfg(learning_rate=2.0, warmup_steps=0, decay_steps=20, final_lr_fraction=0.0)
    s = optim.make_schedule(cfg, total_steps=1000)
    # float32 schedule values vs hand-computed constants: a few roundings.
    np.testing.assert_allclose(s(0), 2.0, rtol=1e-6)
    np.testing.assert_allclose(s(10), 1.0, rtol=1e-6)
    # cosine decay to 0 in float32: rounding of cos(pi) + 1 near zero
    np.testing.assert_allclose(s(20), 0.0, atol=1e-7)

  def test_constant_with_warmup(self):
    s = optim.make_schedule(
      _cfg(schedule="constant", learning_rate=0.4, warmup_steps=4), 100
    )
    # float32 schedule values vs hand-computed constants: a few float32 roundings
    np.testing.assert_allclose(
      [s(i) for i in (0, 1, 3, 50)], [0.1, 0.2, 0.4, 0.4], rtol=1e-6
    )

  def test_step_decay(self):
    cfg = _cfg(
      schedule="step", learning_rate=1.0, warmup_steps=0, step_every=10, step_factor=0.5
    )
    s = optim.make_schedule(cfg, 100)
    # Powers of two times the rate: exact in float32 (rtol is slack).
    np.testing.assert_allclose(
      [s(i) for i in (0, 9, 10, 25)], [1.0, 1.0, 0.5, 0.25], rtol=1e-6
    )
    cfg.warmup_steps = 4
    s = optim.make_schedule(cfg, 100)
    # After the warmup the staircase counts from the end of the warmup.
    np.testing.assert_allclose(
      [s(1), s(4), s(13), s(14)], [0.5, 1.0, 1.0, 0.5], rtol=1e-6
    )

  @parameterized.parameters(
    {"schedule": "linear"}, {"name": "lamb"}, {"clip_norm": -1.0}, {"warmup_steps": 200}
  )
  def test_bad_values_raise_config_error(self, **overrides):
    with pytest.raises(ConfigError):
      optim.make_optimizer(_cfg(**overrides), total_steps=100)


class OptimizerTest(parameterized.TestCase):
  def test_clipping_matches_manual_global_norm(self):
    cfg = _cfg(
      name="sgd",
      momentum=0.0,
      schedule="constant",
      warmup_steps=0,
      learning_rate=1.0,
      clip_norm=1.0,
    )
    tx, _ = optim.make_optimizer(cfg, 10)
    params = {"w": jnp.zeros((2, 2)), "b": jnp.zeros(3)}
    grads = {"w": jnp.array([[3.0, 0.0], [0.0, 0.0]]), "b": jnp.array([0.0, 4.0, 0.0])}
    new, _ = _step(tx, params, grads)
    norm = 5.0  # sqrt(3^2 + 4^2)
    np.testing.assert_allclose(new["w"], -np.asarray(grads["w"]) / norm, rtol=1e-6)
    np.testing.assert_allclose(new["b"], -np.asarray(grads["b"]) / norm, rtol=1e-6)
    # Below the threshold nothing is scaled.
    small = jax.tree.map(lambda g: g / 10, grads)
    new, _ = _step(tx, params, small)
    np.testing.assert_allclose(new["w"], -np.asarray(small["w"]), rtol=1e-6)

  def test_decay_mask_on_language_model(self):
    model = LanguageModel(
      vocab_size=7,
      embed_dim=4,
      lstm=LSTM(hidden_size=3, num_layers=2, cell="layernorm", proj_size=2),
    )
    batch = {"inputs": jnp.zeros((1, 2), jnp.int32)}
    params = jax.eval_shape(model.init, jax.random.key(0), batch)  # shapes suffice
    mask = optim.decay_mask(params["params"])
    flat = {
      jax.tree_util.keystr(p): v for p, v in jax.tree_util.tree_leaves_with_path(mask)
    }
    decayed = sorted(k for k, v in flat.items() if v)
    assert all(("bias" not in k and "ln_" not in k) for k in decayed), decayed
    for name in ("embedding", "w_ih", "w_hh", "w_proj", "kernel"):
      assert any(name in k for k in decayed), (name, decayed)
    peep = LanguageModel(
      vocab_size=7, embed_dim=4, lstm=LSTM(hidden_size=3, cell="peephole")
    )
    pp = jax.eval_shape(peep.init, jax.random.key(0), batch)
    assert not optim.decay_mask(pp["params"])["lstm"]["layer_0_fwd"]["peephole"]

  def test_adamw_decays_only_masked_leaves(self):
    cfg = _cfg(
      schedule="constant",
      warmup_steps=0,
      learning_rate=0.1,
      weight_decay=0.5,
      clip_norm=0.0,
    )
    tx, _ = optim.make_optimizer(cfg, 10)
    params = {"dense": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)}}
    zeros = jax.tree.map(jnp.zeros_like, params)
    new, _ = _step(tx, params, zeros)
    # Adam on a zero gradient moves nothing; decoupled decay: w - lr * wd * w.
    np.testing.assert_allclose(new["dense"]["kernel"], 1.0 - 0.1 * 0.5, rtol=1e-6)
    np.testing.assert_array_equal(new["dense"]["bias"], 1.0)

  def test_sgd_weight_decay_is_l2_on_the_gradient(self):
    cfg = _cfg(
      name="sgd",
      momentum=0.0,
      schedule="constant",
      warmup_steps=0,
      learning_rate=0.1,
      weight_decay=0.5,
      clip_norm=0.0,
    )
    tx, _ = optim.make_optimizer(cfg, 10)
    params = {"kernel": jnp.full((2, 2), 2.0), "bias": jnp.full(2, 2.0)}
    grads = jax.tree.map(jnp.ones_like, params)
    new, _ = _step(tx, params, grads)
    # one float32 SGD step vs the hand-computed value: a few roundings
    np.testing.assert_allclose(new["kernel"], 2.0 - 0.1 * (1.0 + 0.5 * 2.0), rtol=1e-6)
    np.testing.assert_allclose(new["bias"], 2.0 - 0.1 * 1.0, rtol=1e-6)

  @parameterized.parameters("adamw", "adam", "sgd")
  def test_nan_gradient_is_skipped(self, name):
    cfg = _cfg(
      name=name,
      schedule="constant",
      warmup_steps=0,
      learning_rate=0.1,
      weight_decay=0.1,
    )
    tx, _ = optim.make_optimizer(cfg, 10)
    params = {"kernel": jnp.full((2, 2), 1.0), "bias": jnp.full(2, 1.0)}
    good = jax.tree.map(jnp.ones_like, params)
    bad = {"kernel": good["kernel"].at[0, 0].set(jnp.nan), "bias": good["bias"]}
    p1, s1 = _step(tx, params, good)
    p2, s2 = _step(tx, p1, bad, s1)
    # Skipped: parameters and the inner optimizer state are bit-identical.
    jax.tree.map(np.testing.assert_array_equal, p2, p1)
    jax.tree.map(np.testing.assert_array_equal, s2.inner_state, s1.inner_state)
    assert int(s2.notfinite_count) == 1 and int(s2.total_notfinite) == 1
    p3, s3 = _step(tx, p2, good, s2)
    assert not np.array_equal(p3["kernel"], p2["kernel"])
    assert int(s3.notfinite_count) == 0 and int(s3.total_notfinite) == 1
    # The update after a skip equals the second update of a run with no skip.
    q3, _ = _step(tx, p1, good, s1)
    jax.tree.map(np.testing.assert_array_equal, p3, q3)


def test_adagrad_matches_torch_over_three_steps():
  """Three Adagrad steps (L2 weight decay, constant rate) against
  torch.optim.Adagrad; eps 0, where optax's sqrt(acc + eps) and torch's
  sqrt(acc) + eps agree."""
  torch = pytest.importorskip("torch")
  cfg = _cfg(
    name="adagrad",
    schedule="constant",
    warmup_steps=0,
    learning_rate=0.2,
    weight_decay=0.01,
    clip_norm=0.0,
    eps=0.0,
    initial_accumulator=0.1,
  )
  tx, _ = optim.make_optimizer(cfg, 10)
  rng = np.random.default_rng(0)
  w0 = rng.normal(size=(3, 4)).astype(np.float32)
  grads = [rng.normal(size=(3, 4)).astype(np.float32) for _ in range(3)]
  params, state = {"kernel": jnp.asarray(w0)}, None
  w = torch.nn.Parameter(torch.tensor(w0))
  opt = torch.optim.Adagrad(
    [w], lr=0.2, weight_decay=0.01, initial_accumulator_value=0.1, eps=0.0
  )
  for g in grads:
    params, state = _step(tx, params, {"kernel": jnp.asarray(g)}, state)
    w.grad = torch.tensor(g)
    opt.step()
  # three Adagrad steps in float32 (optax vs torch): a few float32 roundings per step, relative
  np.testing.assert_allclose(params["kernel"], w.detach().numpy(), rtol=1e-5)


def test_adagrad_rejects_a_negative_accumulator():
  with pytest.raises(ConfigError, match="optim.initial_accumulator"):
    optim.make_optimizer(_cfg(name="adagrad", initial_accumulator=-1.0), 1000)
