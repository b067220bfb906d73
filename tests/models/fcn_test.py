"""The LSTM-FCN branch against a numpy convolution loop, and padding invariance."""

import jax
import jax.numpy as jnp
import numpy as np

from lstm_jax.models.classifier import SequenceClassifier
from lstm_jax.models.fcn import FCN, KERNELS
from lstm_jax.nn.layers import LSTM


def _np_conv_same(x, kernel, bias):
  """'SAME' 1-D convolution of x [time, c_in] by kernel [k, c_in, c_out], loops."""
  k = kernel.shape[0]
  lo = (k - 1) // 2  # XLA's SAME: the extra pad of an even kernel goes right
  xp = np.concatenate(
    [np.zeros((lo, x.shape[1])), x, np.zeros((k - 1 - lo, x.shape[1]))]
  )
  out = np.zeros((x.shape[0], kernel.shape[2]))
  for t in range(x.shape[0]):
    for j in range(k):
      out[t] += xp[t + j] @ kernel[j]
  return out + bias


def _np_layer_norm(x, q):
  mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
  return (x - mu) / np.sqrt(var + 1e-6) * q["scale"] + q["bias"]


def _np_fcn(p, x):
  """The FCN features of one unpadded row x [length, channels]."""
  for i in range(len(KERNELS)):
    conv = p[f"conv_{i}"]
    x = _np_conv_same(x, conv["kernel"], conv["bias"])
    x = np.maximum(_np_layer_norm(x, p[f"norm_{i}"]), 0)
  return x.mean(0)


def test_fcn_matches_numpy_and_ignores_padding():
  rng = np.random.default_rng(0)
  lengths, t = [11, 6, 1], 11
  x = rng.normal(size=(3, t, 2)).astype(np.float32)
  mask = np.arange(t)[None] < np.asarray(lengths)[:, None]
  x[~mask] = 5.0  # garbage in the padding must not leak into real steps
  model = FCN(4)
  variables = model.init(jax.random.key(1), jnp.asarray(x), jnp.asarray(mask))
  got = jax.jit(model.apply)(variables, jnp.asarray(x), jnp.asarray(mask))
  assert got.shape == (3, 4)
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), variables["params"])
  for b, n in enumerate(lengths):
    want = _np_fcn(p, x[b, :n].astype(np.float64))
    # float32 convolutions vs a float64 numpy loop: float32 rounding of three conv layers' sums (kernel x channels terms each), relative
    np.testing.assert_allclose(got[b], want, rtol=1e-4, atol=1e-5)


def test_lstm_fcn_concatenates_both_branches():
  rng = np.random.default_rng(2)
  x = jnp.asarray(rng.normal(size=(2, 7, 3)), jnp.float32)
  mask = jnp.asarray(np.arange(7)[None] < np.array([[7], [4]]))
  batch = {"inputs": x, "mask": mask}
  model = SequenceClassifier(lstm=LSTM(5), num_classes=3, fcn=FCN(4))
  variables = model.init(jax.random.key(0), batch)
  logits, _ = jax.jit(model.apply)(variables, batch)
  params = variables["params"]
  assert params["out"]["kernel"].shape == (5 + 4, 3)
  lstm_only = SequenceClassifier(lstm=LSTM(5), num_classes=3)
  y, _ = lstm_only.bind({"params": params}).lstm(x, mask=mask)
  m = np.asarray(mask)[..., None]
  lstm_feats = (np.asarray(y) * m).sum(1) / m.sum(1)
  fcn_feats = FCN(4).apply({"params": params["fcn"]}, x, mask)
  want = np.concatenate([lstm_feats, fcn_feats], -1) @ params["out"]["kernel"]
  # float32 features and a dense layer vs float64 numpy: float32 rounding of the matmul
  np.testing.assert_allclose(logits, want + params["out"]["bias"], rtol=1e-5, atol=1e-5)


def test_patches_regroup_steps_and_ignore_padding():
  """patch=k equals the plain classifier on inputs reshaped by numpy; a padded
  row's logits equal the row's alone."""
  rng = np.random.default_rng(3)
  lengths, t, k = [11, 7], 11, 5
  x = rng.normal(size=(2, t, 2)).astype(np.float32)
  mask = np.arange(t)[None] < np.asarray(lengths)[:, None]
  x[~mask] = 9.0
  batch = {"inputs": jnp.asarray(x), "mask": jnp.asarray(mask)}
  patched = SequenceClassifier(lstm=LSTM(4), num_classes=3, patch=k)
  variables = patched.init(jax.random.key(0), batch)
  got, _ = jax.jit(patched.apply)(variables, batch)
  plain = SequenceClassifier(lstm=LSTM(4), num_classes=3)
  apply_plain = jax.jit(plain.apply)
  for b, n in enumerate(lengths):
    row = np.zeros((15, 2), np.float32)  # 3 patches of 5 steps, zero after n
    row[:n] = x[b, :n]
    patches = row.reshape(1, 3, 10)[:, : -(-n // k)]
    want, _ = apply_plain(variables, {"inputs": jnp.asarray(patches)})
    # the same float32 ops on regrouped steps: rounding of the patch sums only
    np.testing.assert_allclose(got[b], want[0], rtol=1e-5, atol=1e-5)
