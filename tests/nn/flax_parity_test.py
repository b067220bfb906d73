"""`LSTMLayer` equals Flax's `nn.RNN(nn.OptimizedLSTMCell)`.

Flax's cell has per-gate `Dense`s: `ii, if, ig, io` on the input (no bias) and
`hi, hf, hg, ho` on h (with bias), gate order i, f, g, o, carry `(c, h)`. So
ours is `w_ih = [ii | if | ig | io]`, `w_hh = [hi | hf | hg | ho]`,
`bias = [b_hi | b_hf | b_hg | b_ho]`, and `LSTMCarry(c, h)` is Flax's carry.

Flax's `nn.RNN(seq_lengths=...)` does not zero padded outputs, so outputs are
compared on real steps only; its final carry is the one after the last real
step, like ours. With `reverse=True, keep_order=True` Flax flips each row's real
steps in place (padding stays at the end), which is our padding-aware reverse.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lstm_jax import LSTMCarry, LSTMLayer

GATES = ("i", "f", "g", "o")
B, T, F, H = 4, 7, 5, 6  # batch, time, features, hidden
LENGTHS = np.array([7, 3, 1, 5])


def flax_to_ours(cell_params):
  """Flax OptimizedLSTMCell params -> our `{w_ih, w_hh, bias}`."""
  cat = lambda ks: jnp.concatenate(ks, axis=-1)  # noqa: E731
  return {
    "w_ih": cat([cell_params[f"i{g}"]["kernel"] for g in GATES]),
    "w_hh": cat([cell_params[f"h{g}"]["kernel"] for g in GATES]),
    "bias": cat([cell_params[f"h{g}"]["bias"] for g in GATES]),
  }


def _setup(seed):
  rng = np.random.default_rng(seed)
  normal = lambda *s: rng.normal(size=s).astype(np.float32)  # noqa: E731
  x = normal(B, T, F)
  cell = nn.OptimizedLSTMCell(H, bias_init=nn.initializers.normal(0.5))
  flax_rnn = nn.RNN(cell, return_carry=True)
  flax_vars = flax_rnn.init(jax.random.key(seed), x)
  carry0 = (
    0.5 * normal(B, H),
    0.5 * normal(B, H),
  )
  cot = (normal(B, T, H), normal(2, B, H))
  return x, flax_rnn, flax_vars, carry0, cot


def _loss(ys, carry, cot, real):
  """A scalar touching every real output and the final carry."""
  dys, dcarry = cot
  ys = jnp.where(real[:, :, None], ys, 0.0)
  return (
    jnp.sum(ys * dys) + jnp.sum(carry[0] * dcarry[0]) + jnp.sum(carry[1] * dcarry[1])
  )


_slow = pytest.mark.slow


@pytest.mark.parametrize(
  "reverse,lengths,init,impl",
  [
    pytest.param(False, False, False, "reference", id="fwd-reference"),
    pytest.param(False, False, False, "fused", id="fwd-fused"),
    pytest.param(False, True, True, "reference", id="fwd_lengths_init-reference",
                 marks=_slow),
    pytest.param(False, True, True, "fused", id="fwd_lengths_init-fused", marks=_slow),
    pytest.param(True, False, False, "reference", id="rev-reference", marks=_slow),
    pytest.param(True, False, False, "fused", id="rev-fused", marks=_slow),
    pytest.param(True, True, True, "reference", id="rev_lengths_init-reference"),
    pytest.param(True, True, True, "fused", id="rev_lengths_init-fused"),
  ],
)  # fmt: skip
def test_matches_flax_rnn(reverse, lengths, init, impl):
  x, flax_rnn, flax_vars, carry0, cot = _setup(seed=int(reverse) + 2 * int(lengths))
  seq_lengths = jnp.asarray(LENGTHS) if lengths else None
  real = jnp.arange(T)[None, :] < (LENGTHS if lengths else np.full(B, T))[:, None]
  ours = LSTMLayer(H, reverse=reverse, impl=impl)
  carry0 = carry0 if init else None

  def flax_loss(variables, x):
    carry, ys = flax_rnn.apply(
      variables, x, seq_lengths=seq_lengths, initial_carry=carry0,
      reverse=reverse, keep_order=True,
    )  # fmt: skip
    return _loss(ys, carry, cot, real), (ys, carry)

  def our_loss(params, x):
    ys, carry = ours.apply(
      {"params": params}, x, mask=real if lengths else None,
      initial_carry=None if carry0 is None else LSTMCarry(*carry0),
    )  # fmt: skip
    return _loss(ys, carry, cot, real), (ys, carry)

  grad = lambda f: jax.jit(jax.value_and_grad(f, argnums=(0, 1), has_aux=True))  # noqa: E731
  (_, (f_ys, f_carry)), (f_gp, f_gx) = grad(flax_loss)(flax_vars, x)
  params = flax_to_ours(flax_vars["params"]["cell"])
  (_, (o_ys, o_carry)), (o_gp, o_gx) = grad(our_loss)(params, x)

  errs = {
    "ys": float(jnp.max(jnp.abs(jnp.where(real[:, :, None], o_ys - f_ys, 0.0)))),
    "c": float(jnp.max(jnp.abs(o_carry.c - f_carry[0]))),
    "h": float(jnp.max(jnp.abs(o_carry.h - f_carry[1]))),
    "grad_x": float(jnp.max(jnp.abs(o_gx - f_gx))),
  }
  g_flax = flax_to_ours(f_gp["params"]["cell"])
  errs["grads"] = max(float(jnp.max(jnp.abs(o_gp[k] - g_flax[k]))) for k in g_flax)
  print("max abs errors vs flax:", {k: f"{v:.2e}" for k, v in errs.items()})
  for k, err in errs.items():
    assert err <= (1e-4 if k.startswith("grad") else 1e-5), (k, err)
  if lengths:  # ours zeroes padding; Flax leaves whatever its scan produced
    assert not jnp.any(jnp.where(real[:, :, None], 0.0, o_ys))
