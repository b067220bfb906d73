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

from lstm_jax.errors import ConfigError
from lstm_jax.nn.initializers import lstm_bias, orthogonal_blocks
from lstm_jax.nn.spec import lstm_config
from lstm_jax.ops import recurrent
from lstm_jax.ops import regularisation as reg
from lstm_jax.ops.cell import LSTMCarry, real_steps

__all__ = [
  "LSTM",
  "LSTMLayer",
  "lstm_bias",
  "lstm_config",
  "lstm_from_config",
  "orthogonal_blocks",
  "zero_carries",
]

Array = jax.Array
CELLS = ("standard", "layernorm", "peephole")
# Compute dtypes by config name; parameters and the carry stay float32.
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
# Config keys that are dropout rates, each in [0, 1).
DROPOUT_KEYS = (
  "dropout",
  "input_dropout",
  "hidden_dropout",
  "output_dropout",
  "recurrent_dropout",
  "weight_drop",
)


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
    recurrent_dropout: rate of the `[batch, out]` mask on h_{t-1} before
      `h @ w_hh`, the same at every step (both paths; `regularisation`).
    zoneout_cell, zoneout_hidden: zoneout rates of c and h (Krueger et al.).
    weight_drop: DropConnect rate of `w_hh`, one mask per call (batch).
    The four are active only when `deterministic=False`.
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
  recurrent_dropout: float = 0.0
  zoneout_cell: float = 0.0
  zoneout_hidden: float = 0.0
  weight_drop: float = 0.0
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
    deterministic: bool = True,
    h_probe: Array | None = None,
  ) -> tuple[Array, LSTMCarry]:
    """Runs the layer.

    Args:
      x: <float>[batch, time, in_features].
      mask: <bool>[batch, time], true on real steps.
      segment_ids: <int>[batch, time], 0 on padding; carry resets between ids.
      initial_carry: `LSTMCarry(c [batch, H], h [batch, P or H])`.
      deterministic: disables the regularisers; otherwise (when a rate is
        set) needs a 'dropout' rng.
      h_probe: <float32>[batch, time, P or H] added to h after each step
        (gradient-flow diagnostics; takes the reference path, see
        `recurrent.lstm_scan_reference`).

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
    probe = {} if h_probe is None else {"h_probe": h_probe}
    ys, carry = recurrent.lstm_scan(
      p if deterministic else self._drop_weights(p),
      x,
      **probe,
      mask=mask,
      segment_ids=segment_ids,
      initial_carry=initial_carry,
      reverse=self.reverse,
      unroll=self.unroll,
      remat=self.remat,
      dtype=self.dtype,
      impl=self.impl,
      **({} if deterministic else self._masks(x.shape[0], x.shape[1], hid, out)),
    )
    out_dtype = self.dtype or jnp.result_type(x.dtype, self.param_dtype)
    return ys.astype(out_dtype), carry

  def _drop_weights(self, p: dict[str, Array]) -> dict[str, Array]:
    """Weight-drop of `w_hh`: the masked matrix is an ordinary input of the
    scan, so both paths (and their backward) take it unchanged."""
    if self.weight_drop <= 0:
      return p
    w_hh = reg.weight_drop(self.make_rng("dropout"), self.weight_drop, p["w_hh"])
    return {**p, "w_hh": w_hh}

  def _masks(self, batch: int, time: int, hid: int, out: int) -> dict[str, Array]:
    """The scan's mask inputs, sampled once per call (never in the loop)."""
    masks = {}
    if self.recurrent_dropout > 0:
      rate = self.recurrent_dropout
      masks["recurrent_mask"] = reg.recurrent_mask(
        self.make_rng("dropout"), rate, batch, out
      )
    if self.zoneout_cell > 0:
      masks["zoneout_c"] = reg.zoneout_mask(
        self.make_rng("dropout"), self.zoneout_cell, batch, time, hid
      )
    if self.zoneout_hidden > 0:
      masks["zoneout_h"] = reg.zoneout_mask(
        self.make_rng("dropout"), self.zoneout_hidden, batch, time, out
      )
    return masks


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
    input_dropout, hidden_dropout, output_dropout: variational (locked)
      dropout rates of the stack's input, of the outputs of every layer but
      the last, and of the last layer's output (one mask per sequence).
    recurrent_dropout, zoneout_cell, zoneout_hidden, weight_drop: passed to
      each `LSTMLayer`.
    ar_alpha, tar_beta: activation regularisation `alpha mean(h^2)` of the
      (dropped) outputs and temporal AR `beta mean((h_t - h_{t-1})^2)` of the
      undropped ones, over real steps, sown in the "penalties" collection
      (the train step adds them to the loss). All of these act only when
      `deterministic=False`.
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
  input_dropout: float = 0.0
  hidden_dropout: float = 0.0
  output_dropout: float = 0.0
  recurrent_dropout: float = 0.0
  zoneout_cell: float = 0.0
  zoneout_hidden: float = 0.0
  weight_drop: float = 0.0
  ar_alpha: float = 0.0
  tar_beta: float = 0.0

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
    h_probe: Sequence[Array] | None = None,
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
      h_probe: one <float32>[batch, time, P or H] per (layer, direction), in
        the order of `initial_carry`, added to that layer's h after each step
        (see `LSTMLayer`); for gradient-flow diagnostics.

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
    train = not deterministic
    if train and self.input_dropout > 0:
      x = reg.locked_dropout(self.make_rng("dropout"), self.input_dropout, x)
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
          recurrent_dropout=self.recurrent_dropout,
          zoneout_cell=self.zoneout_cell,
          zoneout_hidden=self.zoneout_hidden,
          weight_drop=self.weight_drop,
          name=f"layer_{layer}_{name}",
        )(
          x,
          mask,
          segment_ids,
          None if initial_carry is None else initial_carry[k],
          deterministic=deterministic,
          h_probe=None if h_probe is None else h_probe[k],
        )
        outs.append(y)
        finals.append(carry)
      x = outs[0] if len(outs) == 1 else jnp.concatenate(outs, axis=-1)
      if self.dropout > 0 and layer < self.num_layers - 1:
        x = nn.Dropout(self.dropout)(x, deterministic=deterministic)
      if train and self.hidden_dropout > 0 and layer < self.num_layers - 1:
        x = reg.locked_dropout(self.make_rng("dropout"), self.hidden_dropout, x)
    if train:
      x = self._output_regularisers(x, real_steps(mask, segment_ids))
    return x, tuple(finals)

  def _output_regularisers(self, x: Array, real: Array | None) -> Array:
    """Locked output dropout and the AR/TAR penalties (training only)."""
    undropped = x
    if self.output_dropout > 0:
      x = reg.locked_dropout(self.make_rng("dropout"), self.output_dropout, x)
    if self.ar_alpha > 0:
      self.sow("penalties", "ar", self.ar_alpha * reg.activation_penalty(x, real))
    if self.tar_beta > 0:
      tar = self.tar_beta * reg.temporal_penalty(undropped, real)
      self.sow("penalties", "tar", tar)
    return x


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
  for key in DROPOUT_KEYS:
    if not 0.0 <= cfg[key] < 1.0:
      raise ConfigError(f"{prefix}.{key} must be in [0, 1), got {cfg[key]}")
  for key in ("zoneout_cell", "zoneout_hidden"):
    if not 0.0 <= cfg[key] <= 1.0:
      raise ConfigError(f"{prefix}.{key} must be in [0, 1], got {cfg[key]}")
  for key in ("ar_alpha", "tar_beta"):
    if not cfg[key] >= 0.0:  # also catches NaN
      raise ConfigError(f"{prefix}.{key} must be >= 0, got {cfg[key]}")
  return LSTM(**{**cfg, "dtype": DTYPES[cfg["dtype"]]})
