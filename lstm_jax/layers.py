"""Flax modules: a thin shell that owns parameters and calls `recurrent.py`.

`LSTMLayer` is one layer in one direction. `LSTM` stacks layers, optionally
bidirectional, with inter-layer dropout; it mirrors `torch.nn.LSTM` so that
`convert.py` can map weights both ways.

Variable layout of `LSTM` (what `convert.py` relies on)::

  params/layer_{l}_{fwd,bwd}/{w_ih, w_hh, bias[, w_proj, peephole, ln_*]}

The LSTM's settings as a config section are declared once, in `lstm_config`
(every task config holds one as `config.model.lstm`), and validated once, in
`lstm_from_config`, which builds the `LSTM` module that a task model takes as
its `lstm` field.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from ml_collections import config_dict

from lstm_jax import recurrent
from lstm_jax.cell import LSTMCarry
from lstm_jax.errors import ConfigError

Array = jax.Array
CELLS = ("standard", "layernorm", "peephole")
# Compute dtypes by config name; parameters and the carry stay float32.
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


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


def zero_carries(
  batch: int, hidden_size: int, proj_size: int, count: int
) -> tuple[LSTMCarry, ...]:
  """`count` zero states `LSTMCarry(c [batch, H], h [batch, P or H])`, float32."""
  zero = LSTMCarry(
    jnp.zeros((batch, hidden_size), jnp.float32),
    jnp.zeros((batch, proj_size or hidden_size), jnp.float32),
  )
  return (zero,) * count


class LSTMLayer(nn.Module):
  """One LSTM layer in one direction over `[batch, time, features]`.

  Attributes:
    hidden_size: cell size H.
    proj_size: if > 0, project h to this size (LSTMP, PyTorch's `proj_size`).
    cell: "standard", "layernorm" or "peephole".
    reverse: run from the last real step back to the first.
    forget_bias: initial forget-gate bias (ignored when chrono_max_len is set).
    chrono_max_len: if set, chrono initialisation for sequences up to this long.
    dtype: compute dtype of the matmuls (e.g. jnp.bfloat16); carry stays f32.
      With bfloat16 the outputs (bf16) are within 0.03 (max abs) and 2e-3
      (mean abs) of float32 for T <= 512, H <= 512 with the default init
      (measured on CPU: max 0.008-0.011, mean 6e-4; tests/layers_test.py).
    param_dtype: dtype of the parameters.
    unroll: `lax.scan` unroll factor.
    remat: recompute step activations in the backward pass (saves memory).
    impl: "auto" (fastest correct path), "fused", "reference", "pallas"
      (interpreted on CPU) or "cudnn" (GPU); see `recurrent.lstm_scan`.
  """

  hidden_size: int
  proj_size: int = 0
  cell: str = "standard"
  reverse: bool = False
  forget_bias: float = 1.0
  chrono_max_len: int | None = None
  dtype: Any = None
  param_dtype: Any = jnp.float32
  unroll: int = 1
  remat: bool = False
  impl: str = "auto"
  kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()
  recurrent_init: nn.initializers.Initializer = orthogonal_blocks()

  def setup(self):
    if self.cell not in CELLS:
      raise ValueError(f"cell must be one of {CELLS}, got {self.cell!r}")
    if self.hidden_size <= 0:
      raise ValueError(f"hidden_size must be positive, got {self.hidden_size}")

  @nn.compact
  def __call__(
    self,
    x: Array,
    mask: Array | None = None,
    segment_ids: Array | None = None,
    initial_carry: LSTMCarry | None = None,
  ) -> tuple[Array, LSTMCarry]:
    """Runs the layer.

    Args:
      x: <float>[batch, time, in_features].
      mask: <bool>[batch, time], true on real steps.
      segment_ids: <int>[batch, time], 0 on padding; carry resets between ids.
      initial_carry: `LSTMCarry(c [batch, H], h [batch, P or H])`.

    Returns:
      (outputs <dtype>[batch, time, P or H], final `LSTMCarry` in float32).
    """
    if x.ndim != 3:
      raise ValueError(f"x must be [batch, time, features], got shape {x.shape}")
    hid, out = self.hidden_size, self.proj_size or self.hidden_size
    p = {
      "w_ih": self.param(
        "w_ih", self.kernel_init, (x.shape[-1], 4 * hid), self.param_dtype
      ),
      "w_hh": self.param("w_hh", self.recurrent_init, (out, 4 * hid), self.param_dtype),
      "bias": self.param(
        "bias",
        lstm_bias(hid, self.forget_bias, self.chrono_max_len),
        (4 * hid,),
        self.param_dtype,
      ),
    }
    if self.proj_size:
      p["w_proj"] = self.param("w_proj", self.kernel_init, (hid, out), self.param_dtype)
    if self.cell == "peephole":
      p["peephole"] = self.param(
        "peephole", nn.initializers.zeros, (3, hid), self.param_dtype
      )
    if self.cell == "layernorm":
      ones, zeros = nn.initializers.ones, nn.initializers.zeros
      p["ln_ih_scale"] = self.param("ln_ih_scale", ones, (4 * hid,), self.param_dtype)
      p["ln_hh_scale"] = self.param("ln_hh_scale", ones, (4 * hid,), self.param_dtype)
      p["ln_c_scale"] = self.param("ln_c_scale", ones, (hid,), self.param_dtype)
      p["ln_c_bias"] = self.param("ln_c_bias", zeros, (hid,), self.param_dtype)
    ys, carry = recurrent.lstm_scan(
      p,
      x,
      mask=mask,
      segment_ids=segment_ids,
      initial_carry=initial_carry,
      reverse=self.reverse,
      unroll=self.unroll,
      remat=self.remat,
      dtype=self.dtype,
      impl=self.impl,
    )
    out_dtype = self.dtype or jnp.result_type(x.dtype, self.param_dtype)
    return ys.astype(out_dtype), carry


class LSTM(nn.Module):
  """A multi-layer, optionally bidirectional LSTM, like `torch.nn.LSTM`.

  Attributes:
    hidden_size: cell size H of every layer.
    num_layers: stacked layers; layer l > 0 reads layer l-1's outputs.
    bidirectional: run a reversed copy of each layer and concatenate outputs
      `[forward | backward]` on the feature axis.
    proj_size: if > 0, LSTMP projection of h to this size.
    dropout: dropout rate on the outputs of every layer except the last.
    cell: "standard", "layernorm" or "peephole".
    forget_bias, chrono_max_len: bias initialisation (see `lstm_bias`).
    dtype, param_dtype, unroll, remat, impl: passed to each `LSTMLayer`
      (bf16 accuracy: see `LSTMLayer.dtype`).
  """

  hidden_size: int
  num_layers: int = 1
  bidirectional: bool = False
  proj_size: int = 0
  dropout: float = 0.0
  cell: str = "standard"
  forget_bias: float = 1.0
  chrono_max_len: int | None = None
  dtype: Any = None
  param_dtype: Any = jnp.float32
  unroll: int = 1
  remat: bool = False
  impl: str = "auto"

  @property
  def num_directions(self) -> int:
    return 2 if self.bidirectional else 1

  def initialize_carry(self, batch: int) -> tuple[LSTMCarry, ...]:
    """Zero state: one `LSTMCarry` per (layer, direction), PyTorch's order."""
    count = self.num_layers * self.num_directions
    return zero_carries(batch, self.hidden_size, self.proj_size, count)

  @nn.compact
  def __call__(
    self,
    x: Array,
    mask: Array | None = None,
    segment_ids: Array | None = None,
    initial_carry: Sequence[LSTMCarry] | None = None,
    deterministic: bool = True,
  ) -> tuple[Array, tuple[LSTMCarry, ...]]:
    """Runs the stack.

    Args:
      x: <float>[batch, time, in_features].
      mask: <bool>[batch, time], true on real steps (padding anywhere).
      segment_ids: <int>[batch, time], 0 on padding; the carry resets at each
        new id, so several sequences can be packed in one row.
      initial_carry: one `LSTMCarry` per (layer, direction) in PyTorch's order
        (layer 0 forward, layer 0 backward, layer 1 forward, ...); zeros if None.
      deterministic: disables dropout; otherwise needs a 'dropout' rng.

    Returns:
      outputs: <dtype>[batch, time, D * (P or H)], zero on padded steps.
      final carry: tuple of `LSTMCarry`, one per (layer, direction).
    """
    if self.num_layers < 1:
      raise ValueError(f"num_layers must be >= 1, got {self.num_layers}")
    if x.ndim != 3:
      raise ValueError(f"x must be [batch, time, features], got shape {x.shape}")
    n_carry = self.num_layers * self.num_directions
    if initial_carry is not None and len(initial_carry) != n_carry:
      raise ValueError(
        f"initial_carry needs {n_carry} LSTMCarry entries "
        f"(num_layers * directions), got {len(initial_carry)}"
      )
    finals = []
    for layer in range(self.num_layers):
      outs = []
      for d, name in enumerate(("fwd", "bwd")[: self.num_directions]):
        k = layer * self.num_directions + d
        y, carry = LSTMLayer(
          self.hidden_size,
          proj_size=self.proj_size,
          cell=self.cell,
          reverse=d == 1,
          forget_bias=self.forget_bias,
          chrono_max_len=self.chrono_max_len,
          dtype=self.dtype,
          param_dtype=self.param_dtype,
          unroll=self.unroll,
          remat=self.remat,
          impl=self.impl,
          name=f"layer_{layer}_{name}",
        )(x, mask, segment_ids, None if initial_carry is None else initial_carry[k])
        outs.append(y)
        finals.append(carry)
      x = outs[0] if len(outs) == 1 else jnp.concatenate(outs, axis=-1)
      if self.dropout > 0 and layer < self.num_layers - 1:
        x = nn.Dropout(self.dropout)(x, deterministic=deterministic)
    return x, tuple(finals)


def lstm_config(**overrides: Any) -> ml_collections.ConfigDict:
  """The LSTM's config section (`config.model.lstm`): every key, once.

  Args:
    **overrides: new defaults for some keys (e.g. `hidden_size=384`); a key
      that is not declared here is an error.
  """
  c = ml_collections.ConfigDict()
  # Cell size H of every layer.
  c.hidden_size = 256
  # Stacked layers; layer l > 0 reads layer l-1's outputs.
  c.num_layers = 1
  # Run a reversed copy of each layer; outputs are [forward | backward].
  c.bidirectional = False
  # If > 0, LSTMP projection of h to this size.
  c.proj_size = 0
  # Dropout on every layer's output (between layers; task models also apply it
  # to the last layer's output before their head).
  c.dropout = 0.0
  # Cell variant: "standard", "layernorm" or "peephole".
  c.cell = "standard"
  # Initial forget-gate bias (ignored when chrono_max_len is set).
  c.forget_bias = 1.0
  # If set, chrono initialisation of the gate biases for sequences up to this
  # long (Tallec & Ollivier, 2018).
  c.chrono_max_len = config_dict.placeholder(int)
  # Matmul compute dtype: "float32" or "bfloat16" (params and carry stay f32).
  c.dtype = "float32"
  # Recompute step activations in the backward pass (saves memory).
  c.remat = False
  # lax.scan unroll factor of the time loop.
  c.unroll = 1
  # Implementation: "auto", "fused", "reference", "pallas" or "cudnn" (see
  # recurrent.lstm_scan; what a path cannot take falls back, reason logged).
  c.impl = "auto"
  for key, value in overrides.items():
    if key not in c:
      raise KeyError(f"lstm_config has no key {key!r}; keys: {sorted(c)}")
    c[key] = value
  return c


def lstm_from_config(cfg: Any, prefix: str = "model.lstm") -> LSTM:
  """The `LSTM` module of a config section from `lstm_config`, validated.

  Args:
    cfg: the section (a ConfigDict or a plain dict, e.g. from config.json).
    prefix: the section's path, used to name keys in errors.

  Raises:
    ConfigError: a value out of range or not one of the choices; the message
      names the key (`model.lstm.hidden_size must be >= 1, got 0`).
  """
  cfg = dict(cfg)
  expected = set(lstm_config())
  if set(cfg) != expected:
    missing, extra = sorted(expected - set(cfg)), sorted(set(cfg) - expected)
    raise ConfigError(f"{prefix} lacks keys {missing} / has unknown keys {extra}")
  choices = {"dtype": tuple(DTYPES), "cell": CELLS, "impl": recurrent.IMPLS}
  for key, allowed in choices.items():
    if cfg[key] not in allowed:
      raise ConfigError(
        f"{prefix}.{key} must be one of {list(allowed)}, got {cfg[key]!r}"
      )
  for key, low in (("hidden_size", 1), ("num_layers", 1), ("unroll", 1)):
    if cfg[key] < low:
      raise ConfigError(f"{prefix}.{key} must be >= {low}, got {cfg[key]}")
  if cfg["proj_size"] < 0:
    raise ConfigError(f"{prefix}.proj_size must be >= 0, got {cfg['proj_size']}")
  if cfg["chrono_max_len"] is not None and cfg["chrono_max_len"] < 3:
    raise ConfigError(
      f"{prefix}.chrono_max_len must be >= 3 (or unset), got {cfg['chrono_max_len']}"
    )
  if not 0.0 <= cfg["dropout"] < 1.0:
    raise ConfigError(f"{prefix}.dropout must be in [0, 1), got {cfg['dropout']}")
  return LSTM(**{**cfg, "dtype": DTYPES[cfg["dtype"]]})
