"""Initialisers of the LSTM's weights and gate biases (used by `layers.py`)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


def orthogonal_blocks(num_blocks: int = 4) -> nn.initializers.Initializer:
  """Orthogonal init applied to each gate's `[in, hidden]` block separately.

  One orthogonal `[H, 4H]` matrix would make the four gate blocks mutually
  orthogonal but not each one; per-gate orthogonality is what keeps each gate's
  recurrent Jacobian well conditioned (Saxe et al., 2014).
  """
  ortho = nn.initializers.orthogonal()

  def init(key, shape, dtype=jnp.float32):
    rows, cols = shape
    keys = jax.random.split(key, num_blocks)
    blocks = [ortho(k, (rows, cols // num_blocks), dtype) for k in keys]
    return jnp.concatenate(blocks, axis=-1)

  return init


def lstm_bias(
  hidden: int, forget_bias: float = 1.0, chrono_max_len: int | None = None
) -> nn.initializers.Initializer:
  """Bias init `[i | f | g | o]`: forget gate at `forget_bias`, others zero.

  With `chrono_max_len = T` it is the chrono initialisation (Tallec & Ollivier,
  2018): `b_f ~ log(U(1, T - 1))`, `b_i = -b_f`, so forget gates start with
  characteristic timescales spread up to T steps.
  """

  def init(key, shape, dtype=jnp.float32):
    del shape
    bias = np.zeros((4, hidden), np.float32)
    if chrono_max_len is None:
      bias[1] = forget_bias
      return jnp.asarray(bias.reshape(-1), dtype)
    if chrono_max_len < 3:
      raise ValueError(f"chrono_max_len must be >= 3, got {chrono_max_len}")
    u = jax.random.uniform(key, (hidden,), jnp.float32, 1.0, chrono_max_len - 1.0)
    b_f = jnp.log(u)
    b = jnp.zeros((4, hidden), jnp.float32).at[1].set(b_f).at[0].set(-b_f)
    return b.reshape(-1).astype(dtype)

  return init
