"""The XLA:CPU tuning of the fused LSTM loop: its matmul layout.

`fused/scan.py` and `fused/backward.py` hold the loops and their math; this
module the choices that only change their speed (never results, beyond float
rounding). A matmul layout has three parts (`Layout`):

* `proj`, where the input projection `x_t @ w_ih` is computed: "step" (two
  dots per step, `x_t @ w_ih` and `h @ w_hh`), "concat" (one dot per step,
  `[x_t, h] @ [w_ih; w_hh]`) or "hoist" (`x @ w_ih` for all steps as one large
  matmul before the loop, then only `h @ w_hh` inside).
* `wleft`, whether in-loop products `a @ W` are computed as `(W^T a^T)^T`, with
  the weight matrix as the left operand (see `step_mm`).
* `dtype`, the matmul operand dtype (None: as given; the result is float32).

XLA:CPU details that the code below follows: in-loop weight operands are cast
and (wleft) transposed once outside the loops, because the CPU dot re-packs a
transposed operand on every call; an `optimization_barrier` keeps XLA from
folding those transposes back into the loop.

`auto_layout` picks `proj` and `wleft` from the shape and the backend; its
docstring has the measurements behind its thresholds. The gate activations
(all four as one tanh) are the cell's: `cell.cell_pointwise`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from lstm_jax.ops.cell import dot

Array = jax.Array

PROJS = ("step", "concat", "hoist")

# CPU thresholds of `auto_layout`: weight matrices at least this large
# (elements of [I + H, 4H]) are multiplied "weights on the left"; steps with at
# least this many multiply-adds use two dots.
_WLEFT_MIN_ELEMENTS = 1_500_000
_STEP_MIN_MACS = 2_000_000


class Layout(NamedTuple):
  """Static (hashable) matmul layout of one fused call (module docstring)."""

  proj: str  # one of PROJS
  wleft: bool
  dtype: Any  # np.dtype or None


def auto_layout(
  batch: int, in_features: int, hidden: int, backend: str | None = None
) -> tuple[str, bool]:
  """The (proj, wleft) choice of `lstm_scan_fused` for a shape and backend.

  CPU (measured on this project's 2-core AMD EPYC, XLA:CPU with YNNPACK dots;
  forward+backward tokens/s, B16 T64 I32 H64 / B32 T128 I128 H256 / B64 T256
  I256 H512):

  * proj="step" (x_t @ w_ih and h @ w_hh as two dots in the loop). On one core
    it ties with one dot on [x_t, h] ("concat": 951K/79.8K/20.0K vs step
    919K/78.4K/19.7K); on two cores the two independent dots run in parallel
    and "step" wins (B32 T128: 106K vs 95K, quiet machine). Below
    `_STEP_MIN_MACS` multiply-adds per step the loop is overhead-bound and the
    single dot wins on two cores too (B16 T64: 504K vs 483K, busy machine).
    Hoisting x @ w_ih out of the loop ("hoist": 926K/77.8K/19.2K on one core,
    101K at B32 T128 on two) gains nothing on CPU.
  * wleft (compute `(W^T a^T)^T`): XLA's CPU dot re-packs its right-hand
    operand on every call, which for a large weight matrix costs more than the
    two small transposes: one core, B64 T256 I256 H512 +4% (19.9K vs 19.1K),
    B16 T256 I512 H1024 +27%, but B32 T128 I128 H256 -7% and B16 T64 I32 H64
    -25%; hence the threshold on the weight size.

  GPU/TPU: not measured in this project (no accelerator was available). The
  default follows cuDNN's layout: the input projection as one large matmul
  before the loop, weights as the right operand.

  Args:
    batch: rows per step.
    in_features: input size `I`.
    hidden: hidden size `H`.
    backend: "cpu", "gpu", "tpu"; None: `jax.default_backend()`.

  Returns:
    (proj, wleft).
  """
  backend = backend or jax.default_backend()
  if backend == "cpu":
    weights = (in_features + hidden) * 4 * hidden
    proj = "step" if batch * weights >= _STEP_MIN_MACS else "concat"
    return proj, weights >= _WLEFT_MIN_ELEMENTS
  return "hoist", False


def cast(a: Array, dtype: Any) -> Array:
  """`a` in `dtype`; None leaves it as it is."""
  return a if dtype is None else a.astype(dtype)


def step_mm(a: Array, w: Array, wleft: bool, dtype: Any) -> Array:
  """`a @ W` inside the loop, `w` as prepared by `prepare`.

  wleft: `w` holds W^T and the product is computed as `(W^T a^T)^T`: the CPU
  dot then packs the small activation operand instead of re-packing the weight
  matrix at every step (the barrier keeps XLA from folding the transposes
  back).

  Args:
    a: <float>[batch, k] activations.
    w: `prepare(W, wleft, dtype)` for W <float>[k, n].
    wleft: as given to `prepare`.
    dtype: operand dtype (None: as given).

  Returns:
    <float32>[batch, n].
  """
  if not wleft:
    return dot(a, w, dtype)
  return jax.lax.optimization_barrier(dot(w, a.T, dtype)).T


def prepare(w: Array, wleft: bool, dtype: Any) -> Array:
  """A loop-invariant weight operand, cast and (wleft) transposed once."""
  w = cast(w, dtype)
  # The barrier materialises the transpose outside the loop.
  return jax.lax.optimization_barrier(w.T) if wleft else w


def loop_weights(lay: Layout, w_ih: Array, w_hh: Array) -> dict[str, Array]:
  """The loop-invariant matmul operands of the forward step, by `lay.proj`."""
  if lay.proj == "concat":
    w = jnp.concatenate([w_ih, w_hh], axis=0)
    return {"w": prepare(w, lay.wleft, lay.dtype)}
  return {
    "w_ih": prepare(w_ih, lay.wleft, lay.dtype),
    "w_hh": prepare(w_hh, lay.wleft, lay.dtype),
  }


def preactivations(
  lay: Layout, w: dict[str, Array], b: Array, x: Array, h_in: Array
) -> Array:
  """The gate pre-activations `x_t @ w_ih + h_in @ w_hh + b` of one step.

  Args:
    lay: the layout.
    w: `loop_weights(lay, w_ih, w_hh)`.
    b: <float32>[4H] bias.
    x: <float>[batch, I] the step's input, or for proj="hoist" its projection
      <float32>[batch, 4H] (`x_t @ w_ih`, computed before the loop).
    h_in: <float32>[batch, H] the carry's h after any segment reset.

  Returns:
    <float32>[batch, 4H], gates `[i | f | g | o]` before their activations.
  """
  dt, wl = lay.dtype, lay.wleft
  if lay.proj == "concat":
    xh = cast(jnp.concatenate([cast(x, dt), cast(h_in, dt)], axis=-1), dt)
    return step_mm(xh, w["w"], wl, dt) + b
  gh = step_mm(h_in, w["w_hh"], wl, dt)
  if lay.proj == "hoist":  # x is the hoisted x @ w_ih
    return x + b + gh
  return step_mm(x, w["w_ih"], wl, dt) + b + gh


def at(seq: Array, k) -> Array:
  """Step `k` of a batch-major sequence `[B, T, ...]` -> `[B, ...]`."""
  return jax.lax.dynamic_index_in_dim(seq, k, axis=1, keepdims=False)


def put(seq: Array, value: Array, k) -> Array:
  """`seq[:, k] = value` (in place inside a loop)."""
  return jax.lax.dynamic_update_index_in_dim(seq, value[:, None], k, axis=1)
