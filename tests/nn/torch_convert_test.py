"""convert.py: torch.nn.LSTM <-> lstm_jax.LSTM weight mapping and its errors."""

from __future__ import annotations

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lstm_jax
from lstm_jax.nn import convert

pytestmark = pytest.mark.filterwarnings(
  "ignore:LSTM with projections is not supported with oneDNN:UserWarning"
)


@pytest.fixture
def torch():
  return pytest.importorskip(
    "torch",
    reason="live PyTorch parity needs the parity extra: pip install -e .[test,parity]",
  )


def _torch_lstm(torch, seed=0, **kwargs):
  torch.manual_seed(seed)
  kwargs = {"input_size": 5, "hidden_size": 6, "batch_first": True, **kwargs}
  return torch.nn.LSTM(**kwargs)


def _torch_outputs(torch, torch_lstm, x):
  with torch.no_grad():
    ys, (h_n, c_n) = torch_lstm(torch.from_numpy(x))
  return ys.numpy(), h_n.numpy(), c_n.numpy()


def test_import_does_not_import_torch():
  code = "import sys, lstm_jax.nn.convert; assert 'torch' not in sys.modules"
  subprocess.run([sys.executable, "-c", code], check=True)


def test_lstm_kwargs(torch):
  t = _torch_lstm(torch, num_layers=3, bidirectional=True, proj_size=2, dropout=0.25)
  assert convert.lstm_kwargs(t) == {
    "hidden_size": 6,
    "num_layers": 3,
    "bidirectional": True,
    "proj_size": 2,
    "dropout": 0.25,
  }


@pytest.mark.parametrize(
  "kwargs",
  [
    {},
    {"num_layers": 2, "bidirectional": True},
    {"num_layers": 2, "bidirectional": True, "proj_size": 3},
    {"bias": False},
  ],
  ids=["uni", "bi2", "bi2_proj", "nobias"],
)
def test_from_torch_layout(torch, kwargs):
  t = _torch_lstm(torch, **kwargs)
  variables = convert.from_torch(t)
  model = lstm_jax.LSTM(**convert.lstm_kwargs(t))
  init = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 2, 5)))
  # Same tree structure, shapes and dtypes as a freshly initialised module.
  assert jax.tree.map(lambda a: (a.shape, a.dtype), variables) == jax.tree.map(
    lambda a: (a.shape, a.dtype), init
  )
  p = variables["params"]["layer_0_fwd"]
  np.testing.assert_array_equal(p["w_ih"], t.weight_ih_l0.detach().numpy().T)
  np.testing.assert_array_equal(p["w_hh"], t.weight_hh_l0.detach().numpy().T)
  if t.bias:
    np.testing.assert_array_equal(
      p["bias"], (t.bias_ih_l0 + t.bias_hh_l0).detach().numpy()
    )
  else:
    np.testing.assert_array_equal(p["bias"], np.zeros(24, np.float32))
  if t.proj_size:
    np.testing.assert_array_equal(p["w_proj"], t.weight_hr_l0.detach().numpy().T)
  if t.bidirectional:
    np.testing.assert_array_equal(
      variables["params"]["layer_1_bwd"]["w_hh"],
      t.weight_hh_l1_reverse.detach().numpy().T,
    )


@pytest.mark.parametrize(
  "kwargs",
  [{}, {"num_layers": 2, "bidirectional": True, "proj_size": 3}],
  ids=["uni", "bi2_proj"],
)
def test_round_trip_torch_ours_torch(torch, kwargs):
  x = np.random.default_rng(0).normal(size=(3, 4, 5)).astype(np.float32)
  src = _torch_lstm(torch, seed=0, **kwargs)
  dst = _torch_lstm(torch, seed=1, **kwargs)
  variables = convert.from_torch(src)
  assert convert.to_torch(variables, dst) is dst
  for name, p in dst.named_parameters():
    if name.startswith("bias_hh"):
      assert not p.detach().any(), name
  for a, b in zip(_torch_outputs(torch, src, x), _torch_outputs(torch, dst, x)):
    # Only the bias split differs (b_ih + b_hh vs (b_ih + b_hh) + 0): rounding.
    np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)
  # ...and back again: ours -> torch -> ours is exact.
  again = convert.from_torch(dst)
  jax.tree.map(np.testing.assert_array_equal, again, variables)


def test_ours_to_torch_matches_our_outputs(torch):
  model = lstm_jax.LSTM(6, num_layers=2, bidirectional=True, proj_size=4)
  x = np.random.default_rng(1).normal(size=(2, 5, 5)).astype(np.float32)
  # Random values in our layout (init would compile the forward once more).
  shapes = jax.eval_shape(model.init, jax.random.key(3), x)
  rng = np.random.default_rng(3)
  variables = jax.tree.map(
    lambda s: 0.5 * rng.normal(size=s.shape).astype("f4"), shapes
  )
  ys, finals = jax.jit(model.apply)(variables, x)
  t = convert.to_torch(variables, _torch_lstm(torch, num_layers=2,
                                              bidirectional=True, proj_size=4))  # fmt: skip
  t_ys, h_n, c_n = _torch_outputs(torch, t, x)
  np.testing.assert_allclose(t_ys, ys, atol=1e-5)
  np.testing.assert_allclose(h_n, np.stack([f.h for f in finals]), atol=1e-5)
  np.testing.assert_allclose(c_n, np.stack([f.c for f in finals]), atol=1e-5)


def test_to_torch_accepts_bare_params_and_zero_bias_for_no_bias(torch):
  t = _torch_lstm(torch, bias=False)
  variables = convert.from_torch(t)
  # The params dict without its {"params": ...} wrapper, into a differently
  # seeded bias-free module: every torch weight becomes the source's (a copy,
  # so exact), and the module computes what the source does.
  loaded = convert.to_torch(variables["params"], _torch_lstm(torch, seed=2, bias=False))
  source = dict(t.named_parameters())
  for name, value in loaded.named_parameters():
    np.testing.assert_array_equal(value.detach().numpy(), source[name].detach().numpy())
  x = np.random.default_rng(0).normal(size=(2, 3, 5)).astype("f4")
  for got, want in zip(_torch_outputs(torch, loaded, x), _torch_outputs(torch, t, x)):
    np.testing.assert_array_equal(got, want)  # same weights, same torch program


@pytest.mark.parametrize(
  "mutate,torch_kwargs,match",
  [
    (lambda p: p["layer_0_fwd"].update(w_ih=np.zeros((4, 24))), {},
     r"layer_0_fwd/w_ih.*weight_ih_l0.*expected \(5, 24\), got \(4, 24\)"),
    (lambda p: p["layer_0_fwd"].update(w_hh=np.zeros((6, 20))), {},
     r"layer_0_fwd/w_hh.*expected \(6, 24\), got \(6, 20\)"),
    (lambda p: p["layer_0_fwd"].update(bias=np.zeros(20)), {},
     r"layer_0_fwd/bias.*expected \(24,\), got \(20,\)"),
    (lambda p: None, {"num_layers": 2}, r"layer structure differs"),
    (lambda p: None, {"bidirectional": True}, r"layer structure differs"),
    (lambda p: None, {"proj_size": 2}, r"layer_0_fwd/w_proj: expected a projection"),
    (lambda p: p["layer_0_fwd"].update(peephole=np.zeros((3, 6))), {},
     r"\['peephole'\] have no torch.nn.LSTM equivalent"),
    (lambda p: None, {"bias": False}, r"layer_0_fwd/bias.*bias=False.*non-zero"),
  ],
  ids=["w_ih", "w_hh", "bias", "layers", "bidir", "proj", "peephole", "nobias"],
)  # fmt: skip
def test_to_torch_errors(torch, mutate, torch_kwargs, match):
  variables = convert.from_torch(_torch_lstm(torch))
  params = {k: dict(v) for k, v in variables["params"].items()}
  mutate(params)
  target = _torch_lstm(torch, seed=4, **torch_kwargs)
  before = [p.detach().clone() for p in target.parameters()]
  with pytest.raises(ValueError, match=match):
    convert.to_torch({"params": params}, target)
  # Nothing was written: a failed load leaves the module as it was.
  for b, p in zip(before, target.parameters()):
    assert torch.equal(b, p.detach())


def test_to_torch_rejects_projection_when_torch_has_none(torch):
  variables = convert.from_torch(_torch_lstm(torch, proj_size=2))
  with pytest.raises(ValueError, match=r"layer_0_fwd/w_proj: expected no projection"):
    convert.to_torch(variables, _torch_lstm(torch))


def test_rejects_non_lstm(torch):
  with pytest.raises(TypeError, match="torch.nn.LSTM"):
    convert.from_torch(torch.nn.GRU(3, 4))
