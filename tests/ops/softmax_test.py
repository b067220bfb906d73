"""Sampled and adaptive softmax against the full softmax (numpy references).

Sampled softmax: the normaliser estimate is unbiased, and the gradient
averaged over many seeds matches the full softmax's gradient (written out in
numpy: h^T (softmax - onehot)) within its sampling error; without the logQ
correction it does not (the same test, failing by many standard errors).
Adaptive softmax: log-probabilities equal a numpy loop over words and sum to
one. Padding: a padded output layer gives the unpadded loss.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lstm_jax.nn import softmax as nn_softmax
from lstm_jax.ops import softmax as ops

V, D, P = 50, 6, 8  # vocabulary, width, positions


def _np_log_softmax(z):
  z = z - z.max(-1, keepdims=True)
  return z - np.log(np.exp(z).sum(-1, keepdims=True))


@pytest.fixture(scope="module")
def problem():
  """A small LM output layer whose bias is Zipfian, as a trained word LM's is
  (frequent words score higher), with random perturbations."""
  rng = np.random.default_rng(0)
  h = rng.normal(size=(P, D)).astype(np.float32)
  weights = (rng.normal(size=(V, D)) * 0.2).astype(np.float32)
  rank = np.arange(V)
  zipf = np.log(np.log((rank + 2) / (rank + 1)) / np.log(V + 1))
  bias = (zipf + rng.normal(size=V) * 0.3).astype(np.float32)
  targets = rng.integers(0, V, size=P).astype(np.int32)
  return h, weights, bias, targets


def test_log_uniform_sampler_frequencies_match_its_probabilities():
  q = np.exp(np.asarray(ops.log_uniform_log_prob(jnp.arange(V), V)))
  # a float32 sum of V probabilities: sum_tol(V) relative
  np.testing.assert_allclose(q.sum(), 1.0, rtol=1e-5)
  # Zipf by construction: Q(k) = log((k+2)/(k+1)) / log(V+1).
  np.testing.assert_allclose(q[0], np.log(2) / np.log(V + 1), rtol=1e-5)
  n = 200_000
  ids = np.asarray(ops.sample_log_uniform(jax.random.key(0), n, V))
  assert ids.min() >= 0 and ids.max() < V
  freq = np.bincount(ids, minlength=V) / n
  se = np.sqrt(q * (1 - q) / n)
  assert np.max(np.abs(freq - q) / se) < 5


def _sampled_grads(problem, num_samples, seeds, correct_target=False):
  """d(mean sampled NLL)/d weights for each seed: [seeds, V, D]."""
  h, weights, bias, targets = map(jnp.asarray, problem)

  def loss(weights, key):
    samples = ops.sample_log_uniform(key, num_samples, V)
    log_q = ops.log_uniform_log_prob(samples, V)
    if not correct_target:
      return ops.sampled_softmax_nll(h, weights, bias, targets, samples, log_q).mean()
    # TensorFlow's convention, written out: s_t - log(S Q(t)) as well.
    log_count = jnp.log(float(num_samples))
    logit = jnp.sum(h * weights[targets], -1) + bias[targets]
    logit = logit - log_count - ops.log_uniform_log_prob(targets, V)
    sampled = h @ weights[samples].T + bias[samples] - log_count - log_q
    sampled = jnp.where(samples == targets[:, None], -jnp.inf, sampled)
    both = jnp.concatenate([logit[:, None], sampled], -1)
    return (jax.nn.logsumexp(both, -1) - logit).mean()

  keys = jax.random.split(jax.random.key(1), seeds)
  return np.asarray(jax.jit(jax.vmap(jax.grad(loss), in_axes=(None, 0)))(weights, keys))


def _full_grad(problem):
  h, weights, bias, targets = problem
  p = np.exp(_np_log_softmax(h.astype(np.float64) @ weights.T + bias))
  return (p - np.eye(V)[targets]).T @ h / P


def test_sampled_normaliser_is_unbiased(problem):
  h, weights, bias, targets = map(jnp.asarray, problem)
  n, s = 4000, 32

  def z_hat(key):
    samples = ops.sample_log_uniform(key, s, V)
    log_q = ops.log_uniform_log_prob(samples, V)
    nll = ops.sampled_softmax_nll(h, weights, bias, targets, samples, log_q)
    true_logit = jnp.sum(h * weights[targets], -1) + bias[targets]
    return jnp.exp(nll + true_logit)  # Z_hat = exp(log Z_hat)

  est = np.asarray(jax.vmap(z_hat)(jax.random.split(jax.random.key(2), n)))
  exact = np.exp(problem[0] @ problem[1].T + problem[2]).sum(-1)
  z = (est.mean(0) - exact) / (est.std(0) / np.sqrt(n))
  assert np.max(np.abs(z)) < 4.5, z


def test_sampled_gradient_matches_full_within_sampling_error(problem):
  """Mean over 400 seeds vs the exact gradient, per entry in standard errors.

  The gradient is a ratio estimate, biased by O(1/S): at S=1024 on V=50
  (measured with 4000 seeds: max bias ~1e-4, ~0.2 standard errors of a
  400-seed mean), so the check is one of sampling error; 300 entries, so a
  max |z| under 5 fails with probability ~2e-4 if all is right.
  """
  seeds = 400
  grads = _sampled_grads(problem, 1024, seeds)
  se = grads.std(0) / np.sqrt(seeds)
  z = (grads.mean(0) - _full_grad(problem)) / se
  assert np.max(np.abs(z)) < 5, np.max(np.abs(z))
  # The same test rejects TensorFlow's convention, which corrects the
  # target's logit too: its gradient on the target is off by p(target).
  tf = _sampled_grads(problem, 1024, seeds, correct_target=True)
  z_tf = (tf.mean(0) - _full_grad(problem)) / (tf.std(0) / np.sqrt(seeds))
  assert np.max(np.abs(z_tf)) > 10


def test_sampled_module_is_the_full_softmax_at_eval_and_ignores_padding(problem):
  h, _, _, targets = map(jnp.asarray, problem)
  h3, t3 = h[None], targets[None]
  layer = nn_softmax.SampledSoftmax(V, padded_size=56, num_samples=64)
  params = jax.jit(layer.init)(jax.random.key(0), h3)["params"]
  assert params["weights"].shape == (56, D)
  full = nn_softmax.FullSoftmax(V)
  unpadded = {"weights": params["weights"][:V], "bias": params["bias"][:V]}
  logits = layer.apply({"params": params}, h3)
  assert np.all(np.isneginf(np.asarray(logits[..., V:])))
  # padded logits are the same float32 matmul columns: rounding only
  np.testing.assert_allclose(
    logits[..., :V], full.apply({"params": unpadded}, h3), rtol=1e-6, atol=1e-6
  )
  # Training: the padded layer's full-softmax loss equals the unpadded one,
  # and the sampled loss never samples a padding column.
  padded_full = nn_softmax.FullSoftmax(V, padded_size=56)
  nll_p = padded_full.apply({"params": params}, h3, t3, deterministic=False)
  nll_u = full.apply({"params": unpadded}, h3, t3, deterministic=False)
  # the padded entries contribute exp(-inf) = 0: the same log-sum-exp, float32 rounding only
  np.testing.assert_allclose(nll_p, nll_u, rtol=1e-6)
  rngs = {"dropout": jax.random.key(3)}
  sampled_p = layer.apply({"params": params}, h3, t3, False, rngs=rngs)
  unpadded_layer = nn_softmax.SampledSoftmax(V, num_samples=64)
  sampled_u = unpadded_layer.apply({"params": unpadded}, h3, t3, False, rngs=rngs)
  # as above, for the sampled softmax with the same samples
  np.testing.assert_allclose(sampled_p, sampled_u, rtol=1e-6)


def _np_adaptive_log_probs(h, params, cutoffs, vocab):
  """Word by word: head words from the head softmax, tail words as
  p(cluster) * p(word | cluster)."""
  head = _np_log_softmax(h @ params["head_kernel"] + params["head_bias"])
  edges = [0, *cutoffs, vocab]
  out = np.zeros(h.shape[:-1] + (vocab,))
  for w in range(vocab):
    cluster = np.searchsorted(edges, w, side="right") - 1
    if cluster == 0:
      out[..., w] = head[..., w]
      continue
    i = cluster - 1
    tail = h @ params[f"tail_{i}_proj"] @ params[f"tail_{i}_out"]
    out[..., w] = (
      head[..., cutoffs[0] + i] + _np_log_softmax(tail)[..., w - edges[cluster]]
    )
  return out


def test_adaptive_log_probs_equal_numpy_and_sum_to_one():
  vocab, cutoffs = 37, (10, 20, 30)
  layer = nn_softmax.AdaptiveSoftmax(vocab, cutoffs, div_value=2.0)
  h = jax.random.normal(jax.random.key(0), (3, 4, 8))
  params = jax.jit(layer.init)(jax.random.key(1), h)["params"]
  assert params["tail_0_proj"].shape == (8, 4)
  assert params["tail_2_out"].shape == (1, 7)
  log_p = np.asarray(jax.jit(layer.apply)({"params": params}, h), np.float64)
  np_params = {k: np.asarray(v, np.float64) for k, v in params.items()}
  want = _np_adaptive_log_probs(np.asarray(h, np.float64), np_params, cutoffs, vocab)
  # float32 adaptive softmax vs float64 numpy: float32 rounding of the cluster log-sum-exps
  np.testing.assert_allclose(log_p, want, rtol=1e-5, atol=1e-5)
  # a float32 sum of V probabilities: sum_tol(V) relative
  np.testing.assert_allclose(np.exp(log_p).sum(-1), 1.0, rtol=1e-5)
  targets = jax.random.randint(jax.random.key(2), (3, 4), 0, vocab)
  nll = jax.jit(layer.apply, static_argnums=3)({"params": params}, h, targets, False)
  picked = np.take_along_axis(want, np.asarray(targets)[..., None], -1)[..., 0]
  # float32 vs float64 of the same log-probabilities: float32 rounding
  np.testing.assert_allclose(nll, -picked, rtol=1e-5, atol=1e-5)


def test_bad_cutoffs_are_named():
  assert nn_softmax.check_cutoffs((10, 20), 37) is None
  for bad in [(), (0, 5), (20, 10), (10, 37)]:
    assert "increasing" in nn_softmax.check_cutoffs(bad, 37)
