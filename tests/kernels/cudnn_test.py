"""The cuDNN path: weight packing, the wrapper's semantics, the impl choice.

Without a GPU, the packing is checked against `jax.experimental.rnn`'s own
unpacking and its reference LSTM (`lstm_ref`, the semantics of its cuDNN
call), one step of which must equal the cell's definition
(`cell.cell_pointwise`), and the wrapper (lengths, zero-length rows, reverse, initial carry,
masks that are not right-padded) runs on `lstm_ref` in place of cuDNN. The
cuDNN call itself is tested only where a GPU is present.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import rnn

from lstm_jax.kernels import cudnn, dispatch
from lstm_jax.ops import cell, recurrent
from lstm_jax.ops.recurrent import LSTMCarry
from tests.support import tolerances

B, T, IN, H = 3, 6, 5, 8
# Right-padded rows of lengths 6, 3 and 0.
LENGTHS = np.array([6, 3, 0], np.int32)
RIGHT = np.arange(T)[None, :] < LENGTHS[:, None]
LEFT = RIGHT[:, ::-1]  # left padding: cuDNN cannot take it


def _params(key, inputs=IN, hidden=H):
  k = jax.random.split(key, 3)
  return {
    "w_ih": 0.5 * jax.random.normal(k[0], (inputs, 4 * hidden)),
    "w_hh": 0.5 * jax.random.normal(k[1], (hidden, 4 * hidden)),
    "bias": 0.5 * jax.random.normal(k[2], (4 * hidden,)),
  }


def test_pack_matches_jax_rnn_layout(key):
  layers = [_params(k) for k in jax.random.split(key, 2)]  # one layer, 2 dirs
  w_ih, w_hh, b_ih, b_hh = rnn.unpack_lstm_weights(
    cudnn.pack_weights(layers), IN, H, 1, True
  )
  for k, p in enumerate(layers):
    np.testing.assert_array_equal(w_ih[k], p["w_ih"].T)
    np.testing.assert_array_equal(w_hh[k], p["w_hh"].T)
    np.testing.assert_array_equal(b_ih[k] + b_hh[k], p["bias"])
  back = cudnn.unpack_weights(cudnn.pack_weights(layers), IN, H, 1, True)
  jax.tree.map(np.testing.assert_array_equal, back, layers)


def test_packed_weights_follow_the_cell(key):
  """One step of jax.experimental.rnn's reference LSTM (cuDNN's semantics) on
  `pack_weights` equals `cell.cell_pointwise` on our gate pre-activations:
  the packing keeps the gate order and bias of the one cell definition."""
  k = jax.random.split(key, 4)
  params = _params(k[0])
  x = jax.random.normal(k[1], (B, 1, IN))
  h0, c0 = jax.random.normal(k[2], (B, H)), jax.random.normal(k[3], (B, H))
  gates = x[:, 0] @ params["w_ih"] + h0 @ params["w_hh"] + params["bias"]
  c_want, h_want, _ = cell.cell_pointwise(gates, c0)
  weights = rnn.unpack_lstm_weights(cudnn.pack_weights([params]), IN, H, 1, False)
  y, h, c = rnn.lstm_ref(
    x, h0[None], c0[None], *weights, jnp.ones((B,), jnp.int32), IN, H, 1, 0.0, False
  )
  # float32, one step's gate sums (IN + H products) in two orders:
  # tolerances.sum_tol(IN + H) relative is below 1e-5 for these sizes.
  assert tolerances.sum_tol(IN + H) < 1e-5
  np.testing.assert_allclose(c[0], c_want, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(h[0], h_want, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(y[:, 0], h_want, rtol=1e-5, atol=1e-6)


def test_unpacked_weights_reproduce_lstm_ref(key):
  """jax.experimental.rnn's reference (2 layers, bidirectional, right-padded
  lengths) equals our reference scan on the unpacked weights."""
  k = jax.random.split(key, 4)
  layers = 2
  flat = rnn.init_lstm_weight(k[0], IN, H, layers, True)
  x = jax.random.normal(k[1], (B, T, IN)) * RIGHT[..., None]
  h0 = jax.random.normal(k[2], (2 * layers, B, H))
  c0 = jax.random.normal(k[3], (2 * layers, B, H))
  lengths = np.maximum(LENGTHS, 1)  # lstm_ref, like cuDNN, needs length >= 1
  mask = np.arange(T)[None, :] < lengths[:, None]
  weights = rnn.unpack_lstm_weights(flat, IN, H, layers, True)
  y_ref, h_ref, c_ref = rnn.lstm_ref(
    x, h0, c0, *weights, jnp.asarray(lengths), IN, H, layers, 0.0, True
  )
  ours = cudnn.unpack_weights(flat, IN, H, layers, True)
  inp, hs, cs = x, [], []
  for layer in range(layers):
    outs = []
    for d in range(2):
      n = 2 * layer + d
      y, carry = recurrent.lstm_scan_reference(
        ours[n], inp, mask=mask, reverse=d == 1, initial_carry=LSTMCarry(c0[n], h0[n])
      )
      outs.append(y)
      hs.append(carry.h)
      cs.append(carry.c)
    inp = jnp.concatenate(outs, axis=-1)
  # Two programs of the same math (two stacked bidirectional layers, the
  # second's inputs 2H wide): two float32 summation orders, the layers'
  # errors adding (tests/support/tolerances.py), relative.
  tol = layers * tolerances.recurrence_tol(T, 3 * H)
  tolerances.assert_close(inp, y_ref, tol)
  tolerances.assert_close(jnp.stack(hs), h_ref, tol)
  tolerances.assert_close(jnp.stack(cs), c_ref, tol)


def _lstm_ref_kernel(x, h0, c0, flat, lengths, *, hidden, precision):
  """jax.experimental.rnn.lstm_ref with the signature of cudnn's kernel call."""
  del precision
  feat = x.shape[-1]
  weights = rnn.unpack_lstm_weights(flat, feat, hidden, 1, False)
  y, h, c = rnn.lstm_ref(
    x, h0[None], c0[None], *weights, lengths, feat, hidden, 1, 0.0, False
  )
  return y, h[0], c[0]


def _value_and_grads(fn, params, xs, carry0, **kwargs):
  k = jax.random.split(jax.random.key(3), 3)
  gy = jax.random.normal(k[0], xs.shape[:2] + (H,))
  gc, gh = jax.random.normal(k[1], (B, H)), jax.random.normal(k[2], (B, H))

  def loss(params, xs, carry0):
    ys, carry = fn(params, xs, initial_carry=carry0, **kwargs)
    return jnp.sum(ys * gy) + jnp.sum(carry.c * gc) + jnp.sum(carry.h * gh), (ys, carry)

  return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True))(
    params, xs, carry0
  )


def _case(mask, reverse, name, slow=False):
  return pytest.param(mask, reverse, id=name, marks=pytest.mark.slow if slow else ())


@pytest.mark.parametrize(
  "mask, reverse",
  [
    _case(RIGHT, False, "right"),
    _case(RIGHT, True, "right-reverse"),
    _case(LEFT, False, "left"),
    _case(None, False, "full", slow=True),
    _case(None, True, "full-reverse", slow=True),
    _case(LEFT, True, "left-reverse", slow=True),
  ],
)
def test_wrapper_matches_reference(key, mask, reverse, caplog, monkeypatch):
  """Lengths, zero-length rows, reverse and the left-padding fallback."""
  monkeypatch.setattr(cudnn, "_LOGGED", set())
  k = jax.random.split(key, 4)
  params = _params(k[0])
  xs = jax.random.normal(k[1], (B, T, IN))
  if mask is not None:
    xs = xs * mask[..., None]  # as lstm_scan zeroes padding before dispatch
  carry0 = LSTMCarry(jax.random.normal(k[2], (B, H)), jax.random.normal(k[3], (B, H)))
  kw = {"mask": mask, "reverse": reverse}
  (_, ref), gref = _value_and_grads(
    recurrent.lstm_scan_reference, params, xs, carry0, **kw
  )
  fn = functools.partial(cudnn.lstm_scan_cudnn, kernel=_lstm_ref_kernel)
  with caplog.at_level("INFO"):
    (_, got), ggot = jax.block_until_ready(
      _value_and_grads(fn, params, xs, carry0, **kw)
    )
  # The wrapper (packing, lengths, reverse) around lstm_ref against our
  # reference: two float32 summation orders of the LSTM, values and gradients.
  tol = tolerances.lstm_tol(B, T, IN, H)
  jax.tree.map(lambda a, b: tolerances.assert_close(a, b, tol), got, ref)
  jax.tree.map(lambda a, b: tolerances.assert_close(a, b, tol), ggot, gref)
  fell_back = "the mask is not right-padded" in caplog.text
  assert fell_back == (mask is LEFT)


@pytest.mark.skipif(jax.default_backend() != "gpu", reason="needs a GPU (cuDNN)")
@pytest.mark.parametrize("mask", [None, RIGHT, LEFT], ids=["full", "right", "left"])
def test_cudnn_matches_reference(key, mask):
  params = _params(key)
  xs = jax.random.normal(key, (B, T, IN))
  ref = dispatch.lstm_scan(params, xs, mask=mask, impl="reference")
  got = dispatch.lstm_scan(params, xs, mask=mask, impl="cudnn")
  # Forward only: two float32 summation orders of the recurrence.
  tol = tolerances.recurrence_tol(T, IN + H)
  jax.tree.map(lambda a, b: tolerances.assert_close(a, b, tol), got, ref)


def test_choose_by_backend_and_features(key, caplog, monkeypatch):
  monkeypatch.setattr(dispatch, "_LOGGED", set())  # reasons logged by other tests
  std = _params(key)
  big = _params(key, hidden=512)
  peep = dict(std, peephole=jnp.zeros((3, H)))
  segs = {"segment_ids": np.ones((B, T), np.int32)}
  shape = (B, T, IN)
  assert dispatch.choose("auto", std, shape, {}, "cpu") == "fused"
  assert dispatch.choose("auto", peep, shape, {}, "cpu") == "reference"
  assert dispatch.choose("auto", std, shape, {"mask": RIGHT}, "gpu") == "cudnn"
  assert dispatch.choose("auto", std, shape, segs, "gpu") == "pallas"
  assert dispatch.choose("auto", big, shape, segs, "gpu") == "fused"
  assert dispatch.choose("auto", std, shape, {}, "tpu") == "pallas"
  # W_hh of H=2048 in float32 is 64 MiB: more than the TPU VMEM budget.
  huge = {"w_ih": jnp.zeros((1, 8192)), "w_hh": jnp.zeros((2048, 8192)), "bias": 0}
  assert dispatch.choose("auto", huge, (8, 8, 1), {}, "tpu") == "fused"
  assert dispatch.choose("pallas", std, shape, {}, "cpu") == "pallas"
  with caplog.at_level("INFO"):
    assert dispatch.choose("cudnn", std, shape, {}, "cpu") == "fused"
    assert dispatch.choose("cudnn", peep, shape, {}, "gpu") == "reference"
    dispatch.choose("cudnn", peep, shape, {}, "gpu")  # logged once only
  text = caplog.text
  assert "cuDNN needs a GPU backend" in text
  assert text.count("standard cell; got the extra keys ['peephole']") == 1
