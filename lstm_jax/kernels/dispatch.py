"""`lstm_scan`: one LSTM layer over a sequence, on the fastest correct path.

The dispatcher sits above every implementation: the reference scan
(`lstm_jax.ops.recurrent`, JAX autodiff) and the kernels of this package
(`fused/`, `pallas/`, `cudnn.py`), each of which has the reference's
semantics and is tested against it. `choose` maps a requested `impl` to the
one that runs; whenever it falls back from what was asked (or, under "auto",
from the backend's library kernel) it logs the reason once per distinct
reason (absl logging).

"auto", by backend:

* cpu: "fused" (benchmarks/README.md has the measurements).
* gpu: "cudnn" when cuDNN takes the call; otherwise "pallas" for H <= 256 and
  "fused" above. Not measured in this project (no GPU was available): FlashRNN
  (Pöppel et al., 2024) and Baidu's persistent RNNs report fused recurrent
  kernels ahead of a scan of library matmuls when the per-step work is small
  (launch overhead dominates), while our Triton layout uses only B/16 SMs and
  re-reads W_hh from L2 every step, which is expected to lose at large H. The
  threshold is to be set from `python benchmarks/speed_gpu.py`.
* tpu: "pallas" when the shape fits in VMEM, else "fused".

Tensor parallelism (`model_axis > 1`, the size of the mesh axis "model") runs
the reference scan on the gate view of `lstm_jax.ops.tensor_parallel`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from absl import logging

from lstm_jax.kernels import cudnn
from lstm_jax.kernels.fused import scan as fused_scan
from lstm_jax.kernels.pallas import scan as pallas_scan
from lstm_jax.ops import tensor_parallel
from lstm_jax.ops.cell import Array, LSTMCarry, Params, real_steps
from lstm_jax.ops.recurrent import check_param_keys, lstm_scan_reference

# The values of `impl` (`lstm_jax.nn.spec.LSTMSpec.impl`).
IMPLS = ("auto", "fused", "reference", "pallas", "cudnn")

# The GPU "auto" choice between the Pallas kernel and the fused scan when cuDNN
# cannot take the call (see the module docstring).
GPU_PALLAS_MAX_HIDDEN = 256

# lstm_scan arguments that change the recurrence (regularisation.py).
_STEP_MASKS = ("recurrent_mask", "zoneout_c", "zoneout_h")

_LOGGED: set[str] = set()


def _log_once(message: str) -> None:
  if message not in _LOGGED:
    _LOGGED.add(message)
    logging.info("lstm_scan: %s", message)


def _scan(params) -> str:
  """The scan for `params`: fused for the standard cell, else reference."""
  return "fused" if fused_scan.supports(params) else "reference"


def choose(impl: str, params, xs_shape, kwargs, backend: str | None = None) -> str:
  """The implementation that runs: "reference", "fused", "pallas" or "cudnn".

  Args:
    impl: the requested one (`IMPLS`).
    params: layer parameters (the keys select the cell).
    xs_shape: the input's shape `(batch, time, features)`.
    kwargs: the other `lstm_scan` keyword arguments.
    backend: the JAX backend; None is `jax.default_backend()`.
  """
  backend = backend or jax.default_backend()
  dtype = kwargs.get("dtype")
  if impl == "reference":
    return "reference"
  if impl == "fused" or (impl == "auto" and backend == "cpu"):
    return _scan(params)
  # Recurrent dropout and zoneout change the step itself; of the fast paths
  # only the fused scan implements them (its backward carries the masks).
  masks = [k for k in _STEP_MASKS if kwargs.get(k) is not None]
  if masks:
    _log_once(f"{impl}: {', '.join(masks)} run on the {_scan(params)} scan")
    return _scan(params)
  if impl == "cudnn" or (impl == "auto" and backend == "gpu"):
    reason = cudnn.unsupported_reason(params, kwargs, backend)
    if reason is None:
      return "cudnn"
    if impl == "cudnn":
      _log_once(f'impl="cudnn" falls back to the {_scan(params)} scan: {reason}')
      return _scan(params)
    hidden = params["w_hh"].shape[0]
    if hidden > GPU_PALLAS_MAX_HIDDEN:
      _log_once(f"auto: not cuDNN ({reason}); H={hidden} runs the fused scan")
      return _scan(params)
    impl = "pallas"
  reason = pallas_scan.unsupported_reason(params, xs_shape, dtype, backend)
  if reason is None:
    return "pallas"
  _log_once(
    f"{impl}: the Pallas kernel falls back to the {_scan(params)} scan: {reason}"
  )
  return _scan(params)


def run(impl: str, params, xs, **kwargs):
  """Runs the implementation `choose` picked (not "reference")."""
  if impl == "fused":
    return fused_scan.lstm_scan_fused(params, xs, **kwargs)
  if impl == "pallas":
    return pallas_scan.lstm_scan_pallas(params, xs, **kwargs)
  if impl == "cudnn":
    return cudnn.lstm_scan_cudnn(params, xs, **kwargs)
  raise ValueError(f"unknown implementation {impl!r}")


def lstm_scan(
  params: Params,
  xs: Array,
  *,
  impl: str = "auto",
  model_axis: int = 1,
  **kwargs: Any,
) -> tuple[Array, LSTMCarry]:
  """One LSTM layer over a sequence: the fastest correct path for the inputs.

  Args:
    params: layer parameters (`lstm_jax.ops.recurrent` module docstring).
    xs: <float>[batch, time, in_features].
    impl: "reference" is `lstm_scan_reference` (JAX autodiff); "fused" is the
      hand-written-backward scan (`kernels/fused/`); "pallas" the Pallas
      recurrence kernel (`kernels/pallas/`; interpreted on CPU); "cudnn"
      cuDNN through `jax.experimental.rnn` (`kernels/cudnn.py`, GPU); "auto"
      picks by backend and features (`choose`). What a path cannot take falls
      back to the fused or reference scan, with the reason logged once.
    model_axis: the size of the mesh axis "model" the call is traced under
      (the config's `parallel.mesh_shape`); > 1 runs the tensor-parallel
      reference scan, which must be traced under that mesh
      (`lstm_jax.ops.tensor_parallel`).
    **kwargs: as `lstm_scan_reference`.

  Returns:
    (ys <float32>[batch, time, out], final `LSTMCarry`).
  """
  if impl not in IMPLS:
    raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
  check_param_keys(params)
  # Padded steps never reach the outputs, but their inputs do reach the weight
  # gradients multiplied by zero, and NaN * 0 = NaN: zero them first so that
  # garbage in padding (NaN, inf) cannot poison a training step.
  real = real_steps(kwargs.get("mask"), kwargs.get("segment_ids"))
  if real is not None:
    xs = jnp.where(real[..., None], xs, jnp.zeros((), xs.dtype))
  if model_axis > 1:
    # Each device owns H/model units of every gate (ops/tensor_parallel.py).
    views = tensor_parallel.gate_views(params, model_axis)
    return lstm_scan_reference(views, xs, **kwargs)
  # Projection, peephole and layer-norm cells always take the reference path
  # (also under "fused"); see `choose` for the rest. h_probe (gradient-flow
  # diagnostics) exists on the reference path only.
  if kwargs.get("h_probe") is not None:
    return lstm_scan_reference(params, xs, **kwargs)
  chosen = choose(impl, params, xs.shape, kwargs)
  if chosen == "reference":
    return lstm_scan_reference(params, xs, **kwargs)
  return run(chosen, params, xs, **kwargs)
