"""Initialisers of the LSTM's weights and gate biases, and the list of a
layer's parameters (used by `layers.py` and `lstm_jax.nnx`)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lstm_jax.nn.spec import CellOptions


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


def layer_param_inits(
  in_features: int,
  opts: CellOptions,
  kernel_init: nn.initializers.Initializer | None = None,
  recurrent_init: nn.initializers.Initializer | None = None,
) -> dict[str, tuple[nn.initializers.Initializer, tuple[int, ...]]]:
  """The parameters of one LSTM layer, name -> (initializer, shape).

  The one list of a layer's parameters (names as in `lstm_jax.ops.recurrent.PARAM_KEYS`),
  read by the Linen and the NNX modules alike, in creation order.

  Args:
    in_features: I, the input's last axis.
    opts: the cell's options (a module, which inherits them): `hidden_size`
      H; `proj_size` P: if > 0, adds `w_proj` [H, P] and `w_hh` reads P
      features; `cell`: "peephole" adds `peephole` [3, H], "layernorm" the
      `ln_*` scales; `forget_bias`, `chrono_max_len`: the gate-bias init
      (`lstm_bias`).
    kernel_init: init of `w_ih` and `w_proj` (default LeCun normal).
    recurrent_init: init of `w_hh` (default `orthogonal_blocks()`).
  """
  hid, out = opts.hidden_size, opts.proj_size or opts.hidden_size
  kernel_init = kernel_init or nn.initializers.lecun_normal()
  recurrent_init = recurrent_init or orthogonal_blocks()
  inits = {
    "w_ih": (kernel_init, (in_features, 4 * hid)),
    "w_hh": (recurrent_init, (out, 4 * hid)),
    "bias": (lstm_bias(hid, opts.forget_bias, opts.chrono_max_len), (4 * hid,)),
  }
  if opts.proj_size:
    inits["w_proj"] = (kernel_init, (hid, out))
  if opts.cell == "peephole":
    inits["peephole"] = (nn.initializers.zeros, (3, hid))
  if opts.cell == "layernorm":
    ones, zeros = nn.initializers.ones, nn.initializers.zeros
    inits["ln_ih_scale"] = (ones, (4 * hid,))
    inits["ln_hh_scale"] = (ones, (4 * hid,))
    inits["ln_c_scale"] = (ones, (hid,))
    inits["ln_c_bias"] = (zeros, (hid,))
  return inits
