"""Classifier, forecaster and seq2seq models against numpy and step-by-step loops."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lstm_jax.models.classifier import SequenceClassifier
from lstm_jax.models.forecaster import Forecaster, RelativeForecaster, rollout
from lstm_jax.models.seq2seq import Seq2Seq, generate
from lstm_jax.nn.layers import LSTM


def _jit(model, method=None):
  """`model.apply` compiled once: each eager apply of an LSTM re-traces its scan."""
  return jax.jit(lambda v, *args: model.apply(v, *args, method=method))


def _sigmoid(x):
  return 1 / (1 + np.exp(-x))


def _np_lstm(p, x, length, reverse=False):
  """One standard LSTM layer over x[:length] (numpy, step by step)."""
  hid = p["w_hh"].shape[0]
  c, h = np.zeros(hid), np.zeros(hid)
  out = np.zeros((x.shape[0], hid))
  steps = range(length - 1, -1, -1) if reverse else range(length)
  for t in steps:
    g = x[t] @ p["w_ih"] + h @ p["w_hh"] + p["bias"]
    i, f, gg, o = np.split(g, 4)
    c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(gg)
    h = _sigmoid(o) * np.tanh(c)
    out[t] = h
  return out


def _batch(rng, lengths, t=9, c=3):
  x = rng.normal(size=(len(lengths), t, c)).astype(np.float32)
  mask = np.arange(t)[None, :] < np.asarray(lengths)[:, None]
  x[~mask] = 0
  return {"inputs": jnp.asarray(x), "mask": jnp.asarray(mask)}


def _classifier(lstm, num_classes, batch, seed):
  """Variables shared by every pooling: the readout has no parameters of its own."""
  model = SequenceClassifier(lstm=lstm, num_classes=num_classes)
  return model.init(jax.random.key(seed), batch)


@pytest.fixture(scope="module")
def one_layer():
  batch = _batch(np.random.default_rng(0), [9, 4, 1])
  return batch, _classifier(LSTM(5, bidirectional=True), 4, batch, 0)


@pytest.fixture(scope="module")
def two_layers():
  batch = _batch(np.random.default_rng(1), [9, 5])
  return batch, _classifier(LSTM(6, num_layers=2, bidirectional=True), 3, batch, 1)


@pytest.mark.parametrize("pooling", ["mean", "max", "last"])
def test_classifier_readout_matches_numpy(pooling, one_layer):
  batch, variables = one_layer
  model = SequenceClassifier(
    lstm=LSTM(5, bidirectional=True), num_classes=4, pooling=pooling
  )
  logits, _ = _jit(model)(variables, batch)
  assert logits.shape == (3, 4)
  p = jax.tree.map(np.asarray, variables["params"])
  for b, n in enumerate([9, 4, 1]):
    x = np.asarray(batch["inputs"][b], np.float64)
    fwd = _np_lstm(p["lstm"]["layer_0_fwd"], x, n)[:n]
    bwd = _np_lstm(p["lstm"]["layer_0_bwd"], x, n, reverse=True)[:n]
    y = np.concatenate([fwd, bwd], -1)
    feats = {
      "mean": y.mean(0),
      "max": y.max(0),
      "last": np.concatenate([fwd[-1], bwd[0]]),
    }[pooling]
    want = feats @ p["out"]["kernel"] + p["out"]["bias"]
    # float32 model vs float64 numpy loop (bidirectional, 2 layers): float32 rounding over the recurrence, relative
    np.testing.assert_allclose(logits[b], want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("pooling", ["mean", "max", "last"])
def test_classifier_ignores_padding(pooling, two_layers):
  batch, variables = two_layers
  model = SequenceClassifier(
    lstm=LSTM(6, num_layers=2, bidirectional=True), num_classes=3, pooling=pooling
  )
  apply = _jit(model)
  logits, _ = apply(variables, batch)
  # Row 1 alone, without its padding; then with garbage in its padded steps.
  alone = {"inputs": batch["inputs"][1:, :5], "mask": batch["mask"][1:, :5]}
  # The same row with and without padding or garbage: the same float32 math
  # on another batch shape, summation order only (2 layers x 5 steps, 1e-5).
  np.testing.assert_allclose(apply(variables, alone)[0][0], logits[1], atol=1e-5)
  noisy = dict(batch, inputs=batch["inputs"].at[1, 5:].set(7.0))
  np.testing.assert_allclose(apply(variables, noisy)[0], logits, atol=1e-5)


@pytest.mark.parametrize("horizon", [1, 3])
def test_forecaster_direct_head_and_recursive_rollout(horizon):
  rng = np.random.default_rng(2)
  window = jnp.asarray(rng.normal(size=(4, 12, 1)), jnp.float32)
  model = Forecaster(lstm=LSTM(8), horizon=horizon)
  variables = model.init(jax.random.key(0), {"inputs": window})
  apply = _jit(model)
  preds, _ = apply(variables, {"inputs": window})
  assert preds.shape == (4, horizon)
  got = jax.jit(lambda v, w: rollout(model, v, w, steps=7))(variables, window)
  win, want = np.asarray(window), []
  while sum(len(w) for w in want) < 7:
    p = np.asarray(apply(variables, {"inputs": jnp.asarray(win)})[0])
    want.append(p.T)
    win = np.concatenate([win, p[:, :, None]], 1)[:, horizon:]
  want = np.concatenate(want, 0).T[:, :7]
  assert got.shape == (4, 7)
  # float32 model vs float64 step-by-step loop: float32 rounding
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("horizon,season", [(1, 4), (4, 4), (6, 4)])
def test_seasonal_residual_starts_as_seasonal_naive(horizon, season):
  """Untrained (zero head), the rollout is `baselines.seasonal_naive`; a
  nonzero head shifts each call's output by exactly the head's correction."""
  from lstm_jax.baselines import forecast as baselines

  rng = np.random.default_rng(5)
  window = rng.normal(size=(3, 9, 1))
  x = jnp.asarray(window, jnp.float32)
  model = Forecaster(lstm=LSTM(4), horizon=horizon, season=season)
  variables = model.init(jax.random.key(0), {"inputs": x})
  got = np.asarray(rollout(model, variables, x, steps=11))
  for row in range(3):
    want = baselines.seasonal_naive(window[row, :, 0], np.zeros(11), season, False)
    # float32 vs float64 of one seasonal-naive formula: one float32 rounding per value
    np.testing.assert_allclose(got[row], want, rtol=1e-6, atol=1e-6)
  bias = dict(variables["params"]["head"], bias=jnp.full((horizon,), 0.5))
  shifted = {"params": dict(variables["params"], head=bias)}
  preds, _ = model.apply(shifted, {"inputs": x})
  idx = 9 - season + np.arange(horizon) % season
  # float32 vs float64 of one addition: one float32 rounding
  np.testing.assert_allclose(preds, window[:, idx, 0] + 0.5, rtol=1e-6, atol=1e-6)
  with pytest.raises(ValueError, match="window >= season"):
    model.apply(variables, {"inputs": x[:, : season - 1]})


@pytest.mark.parametrize("relative", [False, True])
def test_drift_residual_starts_as_seasonal_drift(relative):
  """Untrained, one call of horizon 9 is `baselines.seasonal_drift` of the
  window (the relative wrapper changes nothing: the base is shift-invariant)."""
  from lstm_jax.baselines import forecast as baselines
  from lstm_jax.models.forecaster import RelativeForecaster

  rng = np.random.default_rng(6)
  window = np.cumsum(rng.normal(size=(3, 10, 1)), axis=1)
  x = jnp.asarray(window, jnp.float32)
  cls = RelativeForecaster if relative else Forecaster
  model = cls(lstm=LSTM(4), horizon=9, season=4, drift=True)
  variables = model.init(jax.random.key(0), {"inputs": x})
  preds, _ = model.apply(variables, {"inputs": x})
  for row in range(3):
    want = baselines.seasonal_drift(window[row, :, 0], 9, 4, 10)
    # float32 vs float64 of the drift formula: a few float32 roundings
    np.testing.assert_allclose(preds[row], want, rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match="window >= season 4 \\+ 1"):
    model.apply(variables, {"inputs": x[:, :4]})


def test_rollout_with_covariates():
  rng = np.random.default_rng(3)
  window = jnp.asarray(rng.normal(size=(2, 6, 2)), jnp.float32)
  cov = jnp.asarray(rng.normal(size=(2, 4, 2)), jnp.float32)
  model = Forecaster(lstm=LSTM(4))
  variables = model.init(jax.random.key(0), {"inputs": window})
  with pytest.raises(ValueError, match="covariates"):
    rollout(model, variables, window, steps=4)
  got = rollout(model, variables, window, steps=4, target=1, covariates=cov)
  win, apply = np.asarray(window), _jit(model)
  for t in range(4):
    p = np.asarray(apply(variables, {"inputs": jnp.asarray(win)})[0])[:, 0]
    # float32 rollout vs float64 step loop: float32 rounding
    np.testing.assert_allclose(got[:, t], p, rtol=1e-5, atol=1e-6)
    row = np.asarray(cov[:, t]).copy()
    row[:, 1] = p
    win = np.concatenate([win[:, 1:], row[:, None]], 1)


def _s2s_batch():
  rng = np.random.default_rng(4)
  src = rng.integers(3, 12, (3, 6)).astype(np.int32)
  src_mask = np.arange(6)[None, :] < np.array([6, 3, 1])[:, None]
  src[~src_mask] = 0
  dec = rng.integers(3, 12, (3, 5)).astype(np.int32)
  dec[:, 0] = 1
  return {
    "inputs": jnp.asarray(src),
    "inputs_mask": jnp.asarray(src_mask),
    "decoder_inputs": jnp.asarray(dec),
  }


@pytest.mark.parametrize(
  "attention, bidirectional", [(None, False), ("luong", True), ("bahdanau", False)]
)
def test_seq2seq_teacher_forcing_equals_step_by_step(attention, bidirectional):
  batch = _s2s_batch()
  model = Seq2Seq(
    lstm=LSTM(8, bidirectional=bidirectional),
    decoder=LSTM(8),
    vocab_size=12,
    embed_dim=6,
    attention=attention,
  )
  variables = model.init(jax.random.key(0), batch)
  apply = _jit(model)
  forced, _ = apply(variables, batch)
  assert forced.shape == (3, 5, 12)
  enc, enc_mask, carry = _jit(model, Seq2Seq.encode)(variables, batch)
  decode = _jit(model, Seq2Seq.decode)
  for t in range(5):
    tok = batch["decoder_inputs"][:, t : t + 1]
    logits, carry = decode(variables, enc, enc_mask, tok, carry)
    # teacher forcing vs free decoding of the same tokens: the same float32 math in another order
    np.testing.assert_allclose(logits[:, 0], forced[:, t], rtol=1e-5, atol=1e-5)
  # Source padding is invisible: garbage there changes nothing.
  noisy = dict(batch, inputs=jnp.where(batch["inputs_mask"], batch["inputs"], 11))
  np.testing.assert_allclose(apply(variables, noisy)[0], forced, atol=1e-5)


def test_generate_greedy_equals_python_loop_and_sampling_is_seeded():
  batch = _s2s_batch()
  model = Seq2Seq(lstm=LSTM(8), decoder=LSTM(8), vocab_size=12, attention="luong")
  variables = model.init(jax.random.key(2), batch)
  gen = jax.jit(
    lambda v, b, key, temp: generate(model, v, b, 6, temperature=temp, rng=key),
    static_argnums=3,
  )
  key = jax.random.key(5)
  tokens, _ = gen(variables, batch, key, 0.0)
  enc, enc_mask, carry = _jit(model, Seq2Seq.encode)(variables, batch)
  decode = _jit(model, Seq2Seq.decode)
  tok, done = np.ones(3, np.int32), np.zeros(3, bool)
  for t in range(6):
    logits, carry = decode(variables, enc, enc_mask, jnp.asarray(tok[:, None]), carry)
    tok = np.where(done, 0, np.asarray(logits[:, 0]).argmax(-1)).astype(np.int32)
    done |= tok == 2
    np.testing.assert_array_equal(tokens[:, t], tok)
  a, _ = gen(variables, batch, key, 1.0)
  b, _ = gen(variables, batch, key, 1.0)
  np.testing.assert_array_equal(a, b)
  cold, _ = gen(variables, batch, key, 1e-4)
  np.testing.assert_array_equal(cold, tokens)


def test_average_residual_starts_as_the_last_seasons_mean():
  """`average=True`: the untrained model forecasts the mean of the window's
  last m target values at every step (a numpy mean), relative or not."""
  rng = np.random.default_rng(6)
  window = rng.normal(size=(3, 9, 1)) + 5.0
  x = jnp.asarray(window, jnp.float32)
  want = np.repeat(window[:, -4:, 0].mean(1, keepdims=True), 3, 1)
  for cls in (Forecaster, RelativeForecaster):
    model = cls(lstm=LSTM(4), horizon=3, season=4, average=True)
    variables = model.init(jax.random.key(0), {"inputs": x})
    preds, _ = model.apply(variables, {"inputs": x})
    # float32 mean of 4 values vs float64: a few float32 roundings
    np.testing.assert_allclose(preds, want, rtol=1e-6, atol=1e-5)
