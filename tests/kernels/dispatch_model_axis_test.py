"""`lstm_scan`'s tensor-parallel path follows its `model_axis` argument, never
the ambient mesh, and computes what the reference scan computes."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AbstractMesh

from lstm_jax import lstm_scan
from lstm_jax.ops.recurrent import lstm_scan_reference
from lstm_jax.parallel import mesh as mesh_lib
from tests.support import tolerances

B, T, IN, H = 2, 5, 3, 4


def _params(key, hidden=H):
  k1, k2, k3 = jax.random.split(key, 3)
  return {
    "w_ih": jax.random.normal(k1, (IN, 4 * hidden)) * 0.5,
    "w_hh": jax.random.normal(k2, (hidden, 4 * hidden)) * 0.5,
    "bias": jax.random.normal(k3, (4 * hidden,)) * 0.1,
  }


@pytest.mark.parametrize("model_axis", [1, 2])
def test_the_path_follows_model_axis_not_the_ambient_mesh(model_axis):
  params, xs = _params(jax.random.key(0)), jnp.zeros((B, T, IN))
  scan = functools.partial(lstm_scan, model_axis=model_axis)
  # The same mesh (model = 2) is active for both calls: only the argument
  # decides whether the scan constrains its gate view to the mesh.
  with jax.sharding.use_abstract_mesh(AbstractMesh((1, 2), ("data", "model"))):
    jaxpr = str(jax.make_jaxpr(scan)(params, xs))
  assert ("sharding_constraint" in jaxpr) == (model_axis > 1)


def test_the_gate_view_scan_equals_the_reference_on_one_device():
  key = jax.random.key(1)
  params = _params(key)
  xs = jax.random.normal(jax.random.fold_in(key, 1), (B, T, IN))
  mask = np.arange(T)[None, :] < np.array([[T], [3]])

  def loss(scan, p, x):
    ys, (c, h) = scan(p, x, mask=mask)
    return jnp.sum(ys**2) + jnp.sum(c * h)

  mesh = mesh_lib.make_mesh((1, 1))  # the trainer's kind of mesh
  with jax.set_mesh(mesh):
    tp = jax.jit(
      jax.value_and_grad(
        functools.partial(loss, functools.partial(lstm_scan, model_axis=2)),
        argnums=(0, 1),
      )
    )(params, xs)
  ref = jax.value_and_grad(
    functools.partial(loss, lstm_scan_reference), argnums=(0, 1)
  )(params, xs)
  # float32, the same recurrence with its matmuls split by gate blocks: two
  # summation orders over T steps, below tolerances.recurrence_tol here.
  assert tolerances.recurrence_tol(T, IN + H) < 1e-5
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), tp, ref
  )


def test_a_hidden_size_the_model_axis_does_not_divide_is_refused():
  params, xs = _params(jax.random.key(2), hidden=3), jnp.zeros((B, T, IN))
  with pytest.raises(
    ValueError, match=r"hidden size 3 is not divisible by the model axis \(2\)"
  ):
    lstm_scan(params, xs, model_axis=2)
