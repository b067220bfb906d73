"""Gradient-flow diagnostics: the probe gradient is dLoss/dh_t, the curve
separates a vanishing model from a healthy one at T = 400, and the trainer
logs, plots and warns."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from lstm_jax.ops import recurrent
from lstm_jax.training import build, diagnostics, metrics, train
from tests.support.toy import recall_config


def test_h_probe_gradient_is_finite_difference_of_a_perturbed_h():
  """d loss / d h_probe[t] against central differences of a numpy loop that
  adds eps to h_t (through the recurrence, not only the output)."""
  rng = np.random.default_rng(0)
  B, T, n_in, H = 2, 6, 3, 4
  p = {
    "w_ih": rng.normal(0, 0.5, (n_in, 4 * H)),
    "w_hh": rng.normal(0, 0.5, (H, 4 * H)),
    "bias": rng.normal(0, 0.5, (4 * H,)),
  }
  xs = rng.normal(size=(B, T, n_in))
  w_out = rng.normal(size=(H,))

  def np_loss(t_pert, b, j, eps):  # loss = sum of w_out . h_T (last step only)
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    h, c = np.zeros((B, H)), np.zeros((B, H))
    for t in range(T):
      g = xs[:, t] @ p["w_ih"] + h @ p["w_hh"] + p["bias"]
      i, f, gg, o = np.split(g, 4, axis=-1)
      c = sig(f) * c + sig(i) * np.tanh(gg)
      h = sig(o) * np.tanh(c)
      if t == t_pert:
        h = h.copy()
        h[b, j] += eps
    return float(np.sum(h @ w_out))

  jp = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), p)

  def loss(probe):
    ys, _ = recurrent.lstm_scan_reference(
      jp, jnp.asarray(xs, jnp.float32), h_probe=probe
    )
    return jnp.sum(ys[:, -1] @ jnp.asarray(w_out, jnp.float32))

  grad = np.asarray(jax.grad(loss)(jnp.zeros((B, T, H))))
  eps = 1e-4
  for t in (0, 2, T - 1):
    for b, j in ((0, 1), (1, 3)):
      fd = (np_loss(t, b, j, eps) - np_loss(t, b, j, -eps)) / (2 * eps)
      # central finite differences at eps 1e-4 in float64 against a float32 gradient: truncation O(eps^2) plus float32 rounding of the gradient
      np.testing.assert_allclose(grad[b, t, j], fd, rtol=2e-3, atol=1e-5)
  # And with the probe at zero the outputs are the plain scan's.
  ys0, _ = recurrent.lstm_scan_reference(jp, jnp.asarray(xs, jnp.float32))
  ys1, _ = recurrent.lstm_scan_reference(
    jp, jnp.asarray(xs, jnp.float32), h_probe=jnp.zeros((B, T, H))
  )
  np.testing.assert_array_equal(ys0, ys1)


def _curve_and_warnings(overrides):
  config = recall_config.get_config()
  for key, value in overrides.items():
    config.model.lstm[key] = value
  built = build.build(config)
  batch = jax.tree.map(jnp.asarray, built.example)
  params = built.model.init(jax.random.key(0), batch)["params"]
  flow, flags = diagnostics.make_gradient_flow(
    built.model, built.task.loss_and_metrics, params, batch
  )
  values, curves = diagnostics.summarize(*flow(params, batch), flags)
  return values, curves, diagnostics.warnings_for(values, config.diagnostics)


def test_forget_bias_0_vanishes_and_chrono_init_does_not(tmp_path):
  vanish, vanish_curves, vanish_warn = _curve_and_warnings({"forget_bias": 0.0})
  healthy, healthy_curves, healthy_warn = _curve_and_warnings({"chrono_max_len": 400})
  # Forget gates at sigmoid(0) = 0.5 halve the signal per step; chrono init
  # gives many units timescales up to 400 steps.
  assert vanish["dh_decay"] > 1e3 * healthy["dh_decay"]
  assert healthy["dh_decay"] < 1e2
  assert any("vanishing" in w and "forget_bias" in w for w in vanish_warn)
  assert healthy_warn == []
  assert vanish["forget_mean/0"] < 0.6 < healthy["forget_mean/0"]
  diagnostics.plot(vanish_curves + healthy_curves, str(tmp_path / "flow.png"))
  assert os.path.getsize(tmp_path / "flow.png") > 1000


def test_trainer_logs_plots_and_warns(tmp_path, capsys):
  config = recall_config.get_config()
  config.model.lstm.forget_bias = 0.0
  config.optim.clip_norm = 0.0
  config.train.steps = 4
  config.train.log_every = 2
  config.train.eval_every = 4
  config.checkpoint.every_steps = 4
  config.diagnostics.every_steps = 2
  train.train_and_evaluate(config, str(tmp_path))
  records = metrics.read_jsonl(str(tmp_path / metrics.METRICS_FILE))
  diag = [r for r in records if r["split"] == "diagnostics"]
  assert [r["step"] for r in diag] == [2, 4]
  assert diag[0]["dh_decay"] > 1e3
  assert diag[0]["grad_norm/lstm/layer_0_fwd"] > 0
  assert os.path.getsize(tmp_path / diagnostics.PLOT_FILE) > 1000
  assert "vanishing gradient" in capsys.readouterr().out
