"""Which implementation `recurrent.lstm_scan` runs, by backend and features.

`choose` maps a requested `impl` to the one that runs; whenever it falls back
from what was asked (or, under "auto", from the backend's library kernel) it
logs the reason once per distinct reason (absl logging).

"auto", by backend:

* cpu: "fused" (unchanged; benchmarks/README.md has the measurements).
* gpu: "cudnn" when cuDNN takes the call; otherwise "pallas" for H <= 256 and
  "fused" above. Not measured in this project (no GPU was available): FlashRNN
  (Pöppel et al., 2024) and Baidu's persistent RNNs report fused recurrent
  kernels ahead of a scan of library matmuls when the per-step work is small
  (launch overhead dominates), while our Triton layout uses only B/16 SMs and
  re-reads W_hh from L2 every step, which is expected to lose at large H. The
  threshold is to be set from `python benchmarks/speed_gpu.py`.
* tpu: "pallas" when the shape fits in VMEM, else "fused".
"""

from __future__ import annotations

import jax
from absl import logging

from lstm_jax.kernels import cudnn
from lstm_jax.kernels.fused import scan as fused
from lstm_jax.kernels.pallas import scan as pallas_lstm

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
  return "fused" if fused.supports(params) else "reference"


def choose(impl: str, params, xs_shape, kwargs, backend: str | None = None) -> str:
  """The implementation that runs: "reference", "fused", "pallas" or "cudnn".

  Args:
    impl: the requested one (`recurrent.IMPLS`).
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
  reason = pallas_lstm.unsupported_reason(params, xs_shape, dtype, backend)
  if reason is None:
    return "pallas"
  _log_once(
    f"{impl}: the Pallas kernel falls back to the {_scan(params)} scan: {reason}"
  )
  return _scan(params)


def run(impl: str, params, xs, **kwargs):
  """Runs the implementation `choose` picked (not "reference")."""
  if impl == "fused":
    return fused.lstm_scan_fused(params, xs, **kwargs)
  if impl == "pallas":
    return pallas_lstm.lstm_scan_pallas(params, xs, **kwargs)
  if impl == "cudnn":
    return cudnn.lstm_scan_cudnn(params, xs, **kwargs)
  raise ValueError(f"unknown implementation {impl!r}")
