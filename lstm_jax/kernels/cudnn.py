"""The standard LSTM layer on cuDNN, through `jax.experimental.rnn.lstm` (GPU).

Same semantics as `recurrent.lstm_scan_reference` for what cuDNN can take, and
the cases it cannot take are handled here or refused with a reason (the
dispatcher then runs the fused scan):

* Parameters: ours (`w_ih [I, 4H]`, `w_hh [H, 4H]`, one `bias`, gate order
  i, f, g, o) are converted to cuDNN's flat packed vector (`W_ih [4H, I]`,
  `W_hh [4H, H]` per pseudo-layer, then `b_ih`, `b_hh`; same gate order) by
  `pack_weights`; `b_hh` is zero. The conversion is inside the differentiated
  function, so gradients come back in our layout.
* Lengths: `mask` becomes `seq_lengths`. cuDNN's padded mode needs the padding
  on the right; whether a mask is right-padded is a property of its values, so
  it is checked at run time and other masks run the fused scan (`lax.cond`).
* Zero-length rows (cuDNN fails on them): run with length 1, then their
  outputs are zeroed and their final carry is the initial carry.
* reverse: each row's first `length` steps are flipped before and after a
  forward cuDNN run (what `jax.experimental.rnn` does for bidirectional).
* bfloat16 (`dtype`): cuDNN keeps x, weights and state in one dtype, and the
  carry must stay float32, so the layer runs in float32 with TF32 tensor-core
  math allowed; float32 runs at full precision (no TF32).

Refused (see `unsupported_reason`): packed `segment_ids`, peephole /
layer-norm / projection cells, recurrent dropout or zoneout, non-GPU backends.
`jax.export` cannot hold this path on a CPU machine: tracing asks cuDNN for
its workspace size.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from absl import logging
from jax.experimental import rnn

from lstm_jax.kernels.fused import scan as fused_scan
from lstm_jax.ops.cell import LSTMCarry, real_steps, zero_carry

Array = jax.Array
F32 = jnp.float32
SUPPORTED_KEYS = frozenset({"w_ih", "w_hh", "bias"})
# lstm_scan keyword arguments this path implements or may ignore (unroll,
# remat and hoist only change speed or memory elsewhere).
KNOWN_KWARGS = frozenset(
  {
    "mask",
    "segment_ids",
    "initial_carry",
    "reverse",
    "dtype",
    "unroll",
    "remat",
    "hoist",
  }
)


def unsupported_reason(params, kwargs, backend: str | None = None) -> str | None:
  """Why cuDNN cannot take this call (checked before tracing), or None."""
  backend = backend or jax.default_backend()
  if backend != "gpu":
    return f"cuDNN needs a GPU backend, this one is {backend!r}"
  if set(params) != SUPPORTED_KEYS:
    extra = sorted(set(params) - SUPPORTED_KEYS)
    return f"cuDNN's LSTM is the standard cell; got the extra keys {extra}"
  if kwargs.get("segment_ids") is not None:
    return "cuDNN cannot reset the carry inside a row (packed segment_ids)"
  unknown = sorted(set(kwargs) - KNOWN_KWARGS)
  if unknown:
    return f"cuDNN's LSTM has no {unknown} (e.g. recurrent dropout, zoneout)"
  return None


def pack_weights(layers: Sequence[Any]) -> Array:
  """Our per-layer parameter dicts -> cuDNN's flat weight vector.

  Args:
    layers: one dict (`w_ih [I, 4H]`, `w_hh [H, 4H]`, `bias [4H]`) per
      pseudo-layer in cuDNN's order (layer 0 forward, layer 0 backward, ...).

  Returns:
    <float32>[num_params] as `jax.experimental.rnn.lstm` takes it.
  """
  mats = [m for p in layers for m in (p["w_ih"].T, p["w_hh"].T)]
  biases = [b for p in layers for b in (p["bias"], jnp.zeros_like(p["bias"]))]
  return jnp.concatenate([jnp.ravel(a).astype(F32) for a in mats + biases])


def unpack_weights(
  flat: Array, input_size: int, hidden_size: int, num_layers: int, bidirectional: bool
) -> list[dict[str, Array]]:
  """cuDNN's flat weights -> our dicts, one per pseudo-layer (biases summed)."""
  w_ih, w_hh, b_ih, b_hh = rnn.unpack_lstm_weights(
    flat, input_size, hidden_size, num_layers, bidirectional
  )
  return [
    {"w_ih": w_ih[k].T, "w_hh": w_hh[k].T, "bias": b_ih[k] + b_hh[k]}
    for k in sorted(w_ih)
  ]


def flip_rows(x: Array, lengths: Array) -> Array:
  """Reverses the first `lengths[b]` steps of each row of `[B, T, ...]`."""
  t = x.shape[1]
  pos = jnp.arange(t)[None, :]
  idx = jnp.where(pos < lengths[:, None], lengths[:, None] - 1 - pos, pos)
  idx = idx.reshape(idx.shape + (1,) * (x.ndim - 2))
  return jnp.take_along_axis(x, idx, axis=1)


_LOGGED: set[str] = set()


def _log_not_right_padded() -> None:
  """Logs (once per process) that a mask sent a call to the fused scan.

  Called from the run-time branch, because whether a mask is right-padded is
  known only from its values.
  """
  if not _LOGGED:
    _LOGGED.add("mask")
    logging.info(
      "lstm_scan: cuDNN falls back to the fused scan: the mask is not "
      "right-padded (padding on the left or in the middle)"
    )


def _cudnn_call(x, h0, c0, flat, lengths, *, hidden, precision):
  y, h_n, c_n = rnn.lstm(
    x,
    h0[None],
    c0[None],
    flat,
    lengths,
    input_size=x.shape[-1],
    hidden_size=hidden,
    num_layers=1,
    dropout=0.0,
    bidirectional=False,
    precision=precision,
  )
  return y, h_n[0], c_n[0]


def lstm_scan_cudnn(
  params,
  xs: Array,
  *,
  mask: Array | None = None,
  segment_ids: Array | None = None,
  initial_carry: LSTMCarry | None = None,
  reverse: bool = False,
  dtype: Any = None,
  unroll: int = 1,
  remat: bool = False,
  hoist: bool | None = None,
  kernel: Callable[..., tuple[Array, Array, Array]] | None = None,
) -> tuple[Array, LSTMCarry]:
  """One standard LSTM layer on cuDNN; arguments as `lstm_scan_reference`.

  Args:
    kernel: the single-layer call `(x, h0, c0, flat, lengths, hidden=,
      precision=) -> (y, h_n, c_n)`; None is cuDNN. Tests pass a call of
      `jax.experimental.rnn.lstm_ref` to check this wrapper without a GPU.

  Returns:
    (ys <float32>[batch, time, hidden], final `LSTMCarry`).
  """
  del unroll, remat, hoist
  if segment_ids is not None:
    raise ValueError("the cuDNN path takes no segment_ids (see unsupported_reason)")
  kernel = kernel or _cudnn_call
  batch, time = xs.shape[:2]
  hidden = params["w_hh"].shape[0]
  if initial_carry is None:
    initial_carry = zero_carry(params, batch)
  c0, h0 = (jnp.asarray(a, F32) for a in initial_carry)
  bf16 = dtype is not None and jnp.dtype(dtype) != jnp.float32
  precision = jax.lax.Precision.DEFAULT if bf16 else jax.lax.Precision.HIGHEST
  x = xs.astype(F32)
  real = real_steps(mask, None)
  if real is None:
    lengths = jnp.full((batch,), time, jnp.int32)
  else:
    real = jnp.asarray(real).astype(bool)
    lengths = jnp.sum(real, axis=1, dtype=jnp.int32)

  def on_cudnn(x, c0, h0):
    flat = pack_weights([params])
    xin = flip_rows(x, lengths) if reverse else x
    y, h, c = kernel(xin, h0, c0, flat, jnp.maximum(lengths, 1), hidden=hidden,
                     precision=precision)  # fmt: skip
    if reverse:
      y = flip_rows(y, lengths)
    valid = jnp.arange(time)[None, :] < lengths[:, None]
    y = jnp.where(valid[..., None], y, 0.0)
    empty = (lengths == 0)[:, None]
    return y.astype(F32), LSTMCarry(jnp.where(empty, c0, c), jnp.where(empty, h0, h))

  if real is None:
    return on_cudnn(x, c0, h0)

  def on_fused(x, c0, h0):
    jax.debug.callback(_log_not_right_padded)
    return fused_scan.lstm_scan_fused(
      params, x, mask=real, initial_carry=LSTMCarry(c0, h0), reverse=reverse,
      dtype=dtype,
    )  # fmt: skip

  right_padded = jnp.all(real == (jnp.arange(time)[None, :] < lengths[:, None]))
  return jax.lax.cond(right_padded, on_cudnn, on_fused, x, c0, h0)
