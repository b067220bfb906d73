"""LSTM-FCN / MLSTM-FCN against numpy: the convolution stack (loops), the
squeeze-excite block, the papers' BatchNorm (batch and given statistics),
the dimension shuffle, class weights (sklearn) and the weighted loss;
padding invariance of every branch."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lstm_jax.models.classifier import SequenceClassifier
from lstm_jax.models.fcn import BATCH_NORM_EPS, BATCH_STATS, FCN, KERNELS
from lstm_jax.nn.layers import LSTM
from lstm_jax.tasks import ucr as ucr_task


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


def _np_sequence_norm(x, scale, bias):
  return (x - x.mean()) / np.sqrt(x.var() + 1e-6) * scale + bias


def _np_fcn(p, x, se=False, norm="layer"):
  """The FCN features of one unpadded row x [length, channels]."""
  for i in range(len(KERNELS)):
    conv = p[f"conv_{i}"]
    x = _np_conv_same(x, conv["kernel"], conv["bias"])
    if norm == "layer":
      x = _np_layer_norm(x, p[f"norm_{i}"])
    if norm == "sequence":  # one mean and variance over the row's steps and channels
      x = _np_sequence_norm(x, p[f"norm_{i}_scale"], p[f"norm_{i}_bias"])
    x = np.maximum(x, 0)
    if se and i < 2:  # squeeze (mean over time), excite (sigmoid), rescale
      s = np.maximum(x.mean(0) @ p[f"se_{i}_squeeze"], 0) @ p[f"se_{i}_excite"]
      x = x / (1 + np.exp(-s))
  return x.mean(0)


@pytest.mark.parametrize(
  "se,norm", [(0, "layer"), (2, "layer"), (0, "none"), (2, "sequence")]
)  # LSTM-FCN's FCN; MLSTM-FCN's (SE); without the norm; the per-series norm
def test_fcn_matches_numpy_and_ignores_padding(se, norm):
  rng = np.random.default_rng(0)
  lengths, t = [11, 6, 1], 11
  x = rng.normal(size=(3, t, 2)).astype(np.float32)
  mask = np.arange(t)[None] < np.asarray(lengths)[:, None]
  x[~mask] = 5.0  # garbage in the padding must not leak into real steps
  model = FCN(4, se_reduction=se, norm=norm)
  variables = model.init(jax.random.key(1), jnp.asarray(x), jnp.asarray(mask))
  # Non-trivial affines, so a swapped or ignored scale or bias shows.
  variables = jax.tree_util.tree_map_with_path(
    lambda path, a: (
      a + 0.3 * jnp.asarray(rng.normal(size=a.shape), a.dtype)
      if "norm" in jax.tree_util.keystr(path)
      else a
    ),
    variables,
  )
  got = jax.jit(model.apply)(variables, jnp.asarray(x), jnp.asarray(mask))
  assert got.shape == (3, 4)
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), variables["params"])
  assert ("norm_0" in p) == (norm == "layer")
  if se:  # filters 4, 8 of the first two blocks over reduction 2
    assert p["se_0_squeeze"].shape == (4, 2) and p["se_1_excite"].shape == (4, 8)
  for b, n in enumerate(lengths):
    # float32 convolutions vs a float64 numpy loop: float32 rounding of three conv layers' sums (kernel x channels terms each), relative
    want = _np_fcn(p, x[b, :n].astype(np.float64), se=bool(se), norm=norm)
    np.testing.assert_allclose(got[b], want, rtol=1e-4, atol=1e-5)


def _np_fcn_batch(p, rows, stats=None):
  """FCN features of unpadded rows [length_b, channels] with the papers'
  BatchNorm: per layer, each channel normalised by the mean and variance
  over every real step of every row, or by `stats[i]` = (mean, var) when
  given. Returns (features [rows, width], the statistics used per layer)."""
  used = []
  for i in range(len(KERNELS)):
    conv = p[f"conv_{i}"]
    rows = [_np_conv_same(x, conv["kernel"], conv["bias"]) for x in rows]
    if stats is None:
      steps = np.concatenate(rows)  # [sum of lengths, filters]
      mean, var = steps.mean(0), steps.var(0)
    else:
      mean, var = stats[i]
    used.append((mean, var))
    scale, bias = p[f"norm_{i}_scale"], p[f"norm_{i}_bias"]
    rows = [
      np.maximum((x - mean) / np.sqrt(var + BATCH_NORM_EPS) * scale + bias, 0)
      for x in rows
    ]
  return np.stack([x.mean(0) for x in rows]), used


def test_batch_norm_uses_the_batch_or_the_given_statistics_and_ignores_padding():
  rng = np.random.default_rng(3)
  lengths, t = [9, 5, 2, 9], 9
  x = rng.normal(size=(4, t, 2)).astype(np.float32)
  mask = np.arange(t)[None] < np.asarray(lengths)[:, None]
  x[~mask] = 7.0  # padding must enter neither the features nor the statistics
  model = FCN(4, norm="batch")
  params = model.init(jax.random.key(4), jnp.asarray(x), jnp.asarray(mask))["params"]
  params = jax.tree_util.tree_map_with_path(  # non-trivial affines
    lambda path, a: (
      a + 0.3 * jnp.asarray(rng.normal(size=a.shape), a.dtype)
      if "norm" in jax.tree_util.keystr(path)
      else a
    ),
    params,
  )
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  rows = [x[b, :n].astype(np.float64) for b, n in enumerate(lengths)]
  want, want_stats = _np_fcn_batch(p, rows)

  # Training mode (no statistics given): the batch's own; gathered when the
  # collection is mutable.
  got, state = model.apply(
    {"params": params}, jnp.asarray(x), jnp.asarray(mask), mutable=[BATCH_STATS]
  )
  # float32 convolutions and statistics vs float64 numpy loops, relative
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
  for i, (mean, var) in enumerate(want_stats):
    np.testing.assert_allclose(
      state[BATCH_STATS][f"norm_{i}"]["mean"], mean, rtol=1e-4, atol=1e-5
    )
    np.testing.assert_allclose(
      state[BATCH_STATS][f"norm_{i}"]["var"], var, rtol=1e-4, atol=1e-5
    )

  # Given statistics (another batch's): each row alone is normalised by them,
  # whatever else is in its batch.
  other = [rng.normal(size=(6, 2)) * 3 + 1 for _ in range(3)]
  _, other_stats = _np_fcn_batch(p, other)
  stats = {
    f"norm_{i}": {
      "mean": jnp.asarray(m, jnp.float32),
      "var": jnp.asarray(v, jnp.float32),
    }
    for i, (m, v) in enumerate(other_stats)
  }
  variables = {"params": params, BATCH_STATS: stats}
  want_fixed, _ = _np_fcn_batch(p, rows, other_stats)
  got_fixed = model.apply(variables, jnp.asarray(x), jnp.asarray(mask))
  np.testing.assert_allclose(got_fixed, want_fixed, rtol=1e-4, atol=1e-5)
  alone = model.apply(variables, jnp.asarray(x[2:3, :2]), jnp.asarray(mask[2:3, :2]))
  np.testing.assert_allclose(alone[0], want_fixed[2], rtol=1e-4, atol=1e-5)
  assert not np.allclose(want_fixed, want, atol=1e-3)  # the statistics matter


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


def test_dimension_shuffle_reads_channels_as_steps_of_time_features():
  """LSTM-FCN's LSTM branch: C steps of T features (the padding zeroed), its
  last output concatenated with the FCN's features."""
  rng = np.random.default_rng(4)
  b, t, c = 3, 9, 2
  x = rng.normal(size=(b, t, c)).astype(np.float32)
  mask = np.arange(t)[None] < np.array([[9], [5], [2]])
  x[~mask] = 7.0
  batch = {"inputs": jnp.asarray(x), "mask": jnp.asarray(mask)}
  model = SequenceClassifier(lstm=LSTM(5), num_classes=3, fcn=FCN(4), shuffle=True)
  variables = model.init(jax.random.key(0), batch)
  logits, _ = jax.jit(model.apply)(variables, batch)
  params = variables["params"]
  # The LSTM's input size is the series length.
  assert params["lstm"]["layer_0_fwd"]["w_ih"].shape == (t, 4 * 5)
  shuffled = np.swapaxes(np.where(mask[..., None], x, 0), 1, 2)  # [b, c, t]
  y, _ = LSTM(5).apply({"params": params["lstm"]}, jnp.asarray(shuffled))
  fcn_feats = FCN(4).apply({"params": params["fcn"]}, x, mask)
  feats = np.concatenate([np.asarray(y)[:, -1], fcn_feats], -1)
  want = feats @ params["out"]["kernel"] + params["out"]["bias"]
  # float32 both sides, jit vs eager: the same sums fused differently, a few
  # ulps through the LSTM's 2 steps and three convolutions.
  np.testing.assert_allclose(logits, want, rtol=1e-5, atol=1e-5)


def test_fcn_alone_and_fcn_patches_ignore_padding():
  """The FCN-alone ablation over patches: a padded row's logits equal the row's
  alone (unpadded, no mask)."""
  rng = np.random.default_rng(5)
  lengths, t = [12, 7], 12
  x = rng.normal(size=(2, t, 1)).astype(np.float32)
  mask = np.arange(t)[None] < np.asarray(lengths)[:, None]
  x[~mask] = 3.0
  model = SequenceClassifier(lstm=None, num_classes=2, fcn=FCN(4), fcn_patch=3)
  batch = {"inputs": jnp.asarray(x), "mask": jnp.asarray(mask)}
  variables = model.init(jax.random.key(0), batch)
  apply = jax.jit(model.apply)
  got, _ = apply(variables, batch)
  for i, n in enumerate(lengths):
    alone, _ = apply(variables, {"inputs": jnp.asarray(x[i : i + 1, :n])})
    # float32: the padded batch and the row alone compile to different
    # programs (shapes), so the same sums may fuse in another order; a few ulps.
    np.testing.assert_allclose(got[i], alone[0], rtol=1e-5, atol=1e-5)


def test_class_weights_match_sklearn_balanced():
  from sklearn.utils.class_weight import compute_class_weight

  labels = np.array([0, 0, 0, 0, 1, 2, 2, 0, 1, 0])
  want = compute_class_weight("balanced", classes=np.arange(3), y=labels)
  # float32 weights against sklearn's float64: one float32 rounding (6e-8).
  np.testing.assert_allclose(ucr_task.class_weights(labels, 3), want, rtol=1e-6)
  # A class absent from the training part weighs nothing (and divides nothing).
  got = ucr_task.class_weights(np.array([0, 0, 1]), 3)
  np.testing.assert_allclose(got, [0.75, 1.5, 0.0], rtol=1e-6)


def test_weighted_loss_is_the_mean_of_weighted_cross_entropies():
  rng = np.random.default_rng(6)
  logits = rng.normal(size=(5, 3)).astype(np.float32)
  labels = np.array([0, 2, 1, 1, 0])
  w = np.array([0.5, 2.0, 1.0, 1.0, 0.5], np.float32)
  z = logits - logits.max(-1, keepdims=True)
  nll = -(z - np.log(np.exp(z).sum(-1, keepdims=True)))[np.arange(5), labels]
  loss, metrics = ucr_task.loss_and_metrics(
    jnp.asarray(logits), {"labels": jnp.asarray(labels), "weights": jnp.asarray(w)}
  )
  # float32 log-softmax and a 5-term mean vs numpy's float32 in another order:
  # a few ulps of each term, far below 1e-5.
  np.testing.assert_allclose(loss, np.mean(w * nll), rtol=1e-5)
  np.testing.assert_allclose(metrics["loss"][0], nll.sum(), rtol=1e-5)  # unweighted
