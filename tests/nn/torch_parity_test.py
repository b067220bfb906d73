"""`lstm_jax.LSTM` equals `torch.nn.LSTM`: outputs, final state and gradients.

Float32 on both sides. Outputs and final carries agree within 1e-5, gradients
(inputs, initial state, weights) within 1e-4. Variable-length batches are
compared against `pack_padded_sequence(enforce_sorted=False)`.

Two sources of truth: live torch (skipped where torch is not installed) and the
stored arrays in tests/fixtures/torch_reference.npz (see tests/support/make_reference.py), which
need no torch.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lstm_jax
from lstm_jax.ops.cell import LSTMCarry
from tests.support import make_reference as ref

OUT_TOL = 1e-5
GRAD_TOL = 1e-4
IMPLS = ("reference", "fused")

pytestmark = pytest.mark.filterwarnings(
  "ignore:LSTM with projections is not supported with oneDNN:UserWarning"
)


def run_ours(variables, kwargs, arrays, impl):
  """lstm_jax's outputs and gradients for the same loss as `ref.run_torch`."""
  model = lstm_jax.LSTM(**kwargs, impl=impl)
  x = jnp.asarray(arrays["x"])
  t = x.shape[1]
  lengths = np.asarray(arrays["lengths"])
  mask = None if np.all(lengths == t) else jnp.arange(t)[None, :] < lengths[:, None]
  has_h0 = "h0" in arrays
  h0 = jnp.asarray(arrays["h0"]) if has_h0 else None
  c0 = jnp.asarray(arrays["c0"]) if has_h0 else None

  def loss_fn(params, x, h0, c0):
    init = None
    if h0 is not None:
      init = tuple(LSTMCarry(c0[k], h0[k]) for k in range(h0.shape[0]))
    ys, finals = model.apply({"params": params}, x, mask=mask, initial_carry=init)
    h_n = jnp.stack([f.h for f in finals])
    c_n = jnp.stack([f.c for f in finals])
    loss = (
      jnp.sum(ys * arrays["dys"])
      + jnp.sum(h_n * arrays["dh"])
      + jnp.sum(c_n * arrays["dc"])
    )
    return loss, (ys, h_n, c_n)

  grad_fn = jax.jit(jax.value_and_grad(loss_fn, argnums=(0, 1, 2, 3), has_aux=True))
  (_, (ys, h_n, c_n)), (g_params, g_x, g_h0, g_c0) = grad_fn(
    variables["params"], x, h0, c0
  )
  out = {"ys": ys, "h_n": h_n, "c_n": c_n, "grad_x": g_x, "grads": g_params}
  if has_h0:
    out["grad_h0"], out["grad_c0"] = g_h0, g_c0
  return jax.tree.map(np.asarray, out)


def max_errors(ours, theirs):
  """{name: max abs difference} over matching leaves."""
  errs = {}
  for key in theirs:
    if key == "grads":
      flat_o = jax.tree_util.tree_leaves_with_path(ours["grads"])
      flat_t = dict(jax.tree_util.tree_leaves_with_path(theirs["grads"]))
      assert len(flat_o) == len(flat_t)
      errs["grads"] = max(float(np.max(np.abs(v - flat_t[p]))) for p, v in flat_o)
    else:
      assert ours[key].shape == theirs[key].shape, key
      errs[key] = float(np.max(np.abs(ours[key] - theirs[key])))
  return errs


def assert_close(ours, theirs):
  errs = max_errors(ours, theirs)
  print("max abs errors:", {k: f"{v:.2e}" for k, v in errs.items()})
  for key, err in errs.items():
    tol = GRAD_TOL if key.startswith("grad") else OUT_TOL
    assert err <= tol, f"{key}: max abs error {err:.3g} > {tol}"


# ----------------------------------------------------------------------------
# Stored reference: no torch needed.


def _stored():
  with np.load(ref.REFERENCE_PATH) as data:
    flat = dict(data.items())
  return json.loads(str(flat.pop("configs"))), flat


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name", list(ref.CONFIGS))
def test_matches_stored_torch_reference(name, impl):
  configs, flat = _stored()
  assert configs[name] == ref.CONFIGS[name], "stale reference: rerun make_reference.py"
  cfg = configs[name]
  kwargs = {
    k: cfg[k] for k in ("hidden_size", "num_layers", "bidirectional", "proj_size")
  }
  arrays = ref.unflatten(flat, f"{name}/inputs")
  theirs = ref.unflatten(flat, f"{name}/torch")
  theirs["grads"] = ref.unflatten(flat, f"{name}/grads")
  variables = {"params": ref.unflatten(flat, f"{name}/params")}
  assert_close(run_ours(variables, kwargs, arrays, impl), theirs)


def test_stored_reference_is_small():
  import os

  assert os.path.getsize(ref.REFERENCE_PATH) < 1_000_000


# ----------------------------------------------------------------------------
# Live torch.


@pytest.fixture
def torch():
  return pytest.importorskip(
    "torch",
    reason="live PyTorch parity needs the parity extra: pip install -e .[test,parity]",
  )


def _cfg(**overrides):
  cfg = dict(input_size=5, hidden_size=8, num_layers=1, bidirectional=False,
             proj_size=0, batch=3, time=6, lengths=None, h0=False)  # fmt: skip
  cfg.update(overrides)
  return cfg


def _live(cfg, impl, seed=0, bias=True):
  from lstm_jax.nn import convert

  torch_lstm = ref.make_torch_lstm(cfg, seed=seed, bias=bias)
  arrays = ref.make_inputs(cfg, seed=seed + 1)
  theirs = ref.run_torch(torch_lstm, arrays)
  ours = run_ours(convert.from_torch(torch_lstm), convert.lstm_kwargs(torch_lstm),
                  arrays, impl)  # fmt: skip
  if not bias:  # torch has no bias to differentiate; ours is fixed at zero
    for g in (*ours["grads"].values(), *theirs["grads"].values()):
      del g["bias"]
  assert_close(ours, theirs)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(
  "layers,bidir,proj",
  [
    # Slow: the stored reference and the variable-length cases below cover these.
    pytest.param(1, False, 0, id="uni", marks=pytest.mark.slow),
    pytest.param(1, True, 0, id="bi", marks=pytest.mark.slow),
    pytest.param(2, False, 0, id="2layer", marks=pytest.mark.slow),
    pytest.param(1, False, 3, id="proj", marks=pytest.mark.slow),
    pytest.param(2, True, 3, id="2layer_bi_proj", marks=pytest.mark.slow),
  ],
)
def test_full_length_matches_torch(torch, layers, bidir, proj, impl):
  _live(_cfg(num_layers=layers, bidirectional=bidir, proj_size=proj), impl)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(
  "layers,bidir,proj",
  [
    pytest.param(1, False, 0, id="uni"),
    pytest.param(1, True, 0, id="bi", marks=pytest.mark.slow),  # stored: bi_lengths
    pytest.param(2, True, 3, id="2layer_bi_proj"),
  ],
)
def test_variable_lengths_match_packed_torch(torch, layers, bidir, proj, impl):
  cfg = _cfg(num_layers=layers, bidirectional=bidir, proj_size=proj, batch=4,
             time=7, lengths=[2, 7, 1, 5], h0=True)  # fmt: skip
  _live(cfg, impl, seed=3)


@pytest.mark.parametrize("impl", IMPLS)
def test_initial_state_and_no_bias_match_torch(torch, impl):
  _live(_cfg(bidirectional=True, h0=True), impl, seed=5, bias=False)


@pytest.mark.slow
@pytest.mark.parametrize("impl", IMPLS)
def test_larger_shapes_match_torch(torch, impl):
  cfg = _cfg(input_size=32, hidden_size=64, num_layers=2, bidirectional=True,
             batch=8, time=40, lengths=[40, 1, 17, 39, 40, 8, 25, 3], h0=True)  # fmt: skip
  _live(cfg, impl, seed=7)
