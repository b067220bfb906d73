"""optim.schedule_free (optax.contrib.schedule_free around the optimizer)
against the method written out in numpy: the evaluated parameters are the
uniform average of the SGD iterates z_1..z_T (constant rate, no warmup), and
the trained ones interpolate between z and that average."""

import jax.numpy as jnp
import numpy as np
import optax

from experiments import base
from lstm_jax.training import optim


def test_eval_params_are_the_average_of_the_iterates():
  cfg = base.get_config().optim
  cfg.update(
    name="sgd", schedule="constant", warmup_steps=0, learning_rate=0.1,
    schedule_free=True, clip_norm=0.0, b1=0.9,
  )  # fmt: skip
  tx, _ = optim.make_optimizer(cfg, 100)
  a = np.diag([1.0, 3.0])  # loss 0.5 w^T A w, gradient A w
  params = {"w": jnp.array([1.0, -2.0])}
  state = tx.init(params)
  z = x = np.array([1.0, -2.0])
  for t in range(1, 8):
    y = 0.1 * z + 0.9 * x  # Defazio et al.: y = (1 - b1) z + b1 x
    np.testing.assert_allclose(params["w"], y, rtol=1e-5, atol=1e-6)
    grads = {"w": jnp.asarray(a @ np.asarray(params["w"]))}
    updates, state = tx.update(grads, state, params)
    params = optax.apply_updates(params, updates)
    z = z - 0.1 * (a @ y)
    x = x + (z - x) / t  # running mean of z_1..z_t
  np.testing.assert_allclose(optim.eval_params(state, params)["w"], x, rtol=1e-5)
  # As restored from a checkpoint without a target (a dict of its fields).
  raw = {"inner_state": state.inner_state._asdict()}
  np.testing.assert_allclose(optim.eval_params(raw, params)["w"], x, rtol=1e-5)


def test_without_schedule_free_eval_params_are_the_params():
  cfg = base.get_config().optim
  tx, _ = optim.make_optimizer(cfg, 1000)
  params = {"w": jnp.ones(3)}
  assert optim.eval_params(tx.init(params), params) is params
