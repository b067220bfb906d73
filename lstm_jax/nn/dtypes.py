"""The LSTM's matmul compute dtypes, by name, and what "auto" chooses.

`DTYPES` is the one table of names: the config section's `dtype` and the
modules' `dtype` attribute are one of `DTYPE_NAMES` ("auto" or a key of
`DTYPES`); a module also takes a JAX dtype, or None for the dtype of its inputs
and parameters. Parameters and the carry stay float32 whatever the dtype.

"auto" is bfloat16 where the backend multiplies bfloat16 natively, float32
elsewhere, where bfloat16 is emulated and slower than float32 (see
benchmarks/README.md, "Compute dtype"):

* TPU: bfloat16 (the MXU's native input type);
* GPU: bfloat16 from CUDA compute capability 8.0 (Ampere: bf16 tensor cores);
* CPU: bfloat16 with the `avx512_bf16` or `amx_bf16` instruction-set flag
  (Linux's /proc/cpuinfo; other systems report no flags: float32).

`choose_dtype` is that rule as a pure function of the hardware description;
`auto_dtype` applies it to the running backend.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Collection
from typing import Any

import jax
import jax.numpy as jnp

__all__ = [
  "AUTO",
  "BF16_CPU_FLAGS",
  "DTYPES",
  "DTYPE_NAMES",
  "auto_dtype",
  "auto_note",
  "choose_dtype",
  "compute_dtype",
  "cpu_flags",
]

# Compute dtypes by name.
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
AUTO = "auto"
DTYPE_NAMES = (AUTO, *DTYPES)
# CPU flags of native bfloat16 dot products (AVX-512 BF16, Intel AMX tiles).
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
# First CUDA compute capability with bfloat16 tensor cores (Ampere).
BF16_MIN_COMPUTE_CAPABILITY = (8, 0)


def _capability(value: str | tuple[int, int]) -> tuple[int, int]:
  if isinstance(value, str):
    major, _, minor = value.partition(".")
    return int(major), int(minor or 0)
  return tuple(value)


def choose_dtype(
  backend: str,
  *,
  compute_capability: str | tuple[int, int] | None = None,
  cpu_flags: Collection[str] = (),
) -> tuple[str, str]:
  """What "auto" means on a device: bfloat16 where it is native, else float32.

  Args:
    backend: `jax.default_backend()`: "cpu", "gpu", "tpu" (or another).
    compute_capability: a CUDA GPU's, e.g. "8.0" or (8, 0); None for a GPU
      that reports none (not CUDA).
    cpu_flags: the CPU's instruction-set flags (`cpu_flags()`), lower case.

  Returns:
    (name in `DTYPES`, the reason in a few words), e.g.
    `("float32", "CPU without avx512_bf16 or amx_bf16")`.
  """
  if backend == "tpu":
    return "bfloat16", "TPU"
  if backend == "gpu":
    if compute_capability is None:
      return "float32", "GPU without a CUDA compute capability"
    cc = _capability(compute_capability)
    shown = ".".join(map(str, cc))
    if cc >= BF16_MIN_COMPUTE_CAPABILITY:
      return "bfloat16", f"GPU of compute capability {shown} (bf16 tensor cores)"
    return "float32", f"GPU of compute capability {shown} < 8.0 (no bf16 tensor cores)"
  if backend == "cpu":
    native = [f for f in BF16_CPU_FLAGS if f in cpu_flags]
    if native:
      return "bfloat16", f"CPU with {' and '.join(native)}"
    return "float32", f"CPU without {' or '.join(BF16_CPU_FLAGS)}"
  return "float32", f"backend {backend!r}"


def cpu_flags(path: str = "/proc/cpuinfo") -> frozenset[str]:
  """The first CPU's instruction-set flags (Linux); empty elsewhere or when
  the file cannot be read."""
  if not sys.platform.startswith("linux"):
    return frozenset()
  try:
    with open(path, encoding="utf-8", errors="replace") as f:
      for line in f:
        key, _, value = line.partition(":")
        if key.strip() == "flags":
          return frozenset(value.split())
  except OSError:
    pass
  return frozenset()


@functools.cache
def auto_dtype() -> tuple[str, str]:
  """`choose_dtype` for this process's default backend and its devices (the
  lowest compute capability of the local GPUs); computed once."""
  backend = jax.default_backend()
  capability = None
  if backend == "gpu":
    found = [getattr(d, "compute_capability", None) for d in jax.local_devices()]
    if found and None not in found:
      capability = min(_capability(c) for c in found)
  flags = cpu_flags() if backend == "cpu" else frozenset()
  return choose_dtype(backend, compute_capability=capability, cpu_flags=flags)


def _asks_auto(section: Any) -> bool:
  if not hasattr(section, "items"):
    return False
  return section.get("dtype") == AUTO or any(map(_asks_auto, section.values()))


def auto_note(section: Any) -> str:
  """`'; dtype "auto" = bfloat16 (CPU with avx512_bf16)'`: what "auto" is here
  and why, if `section` (a config section such as `config.model`, a mapping)
  or one nested in it has `dtype = "auto"`; else "". For a run's start line."""
  if not _asks_auto(section):
    return ""
  name, reason = auto_dtype()
  return f'; dtype "auto" = {name} ({reason})'


def compute_dtype(dtype: Any) -> Any:
  """A `dtype` option as a JAX dtype: a name is looked up ("auto" resolved by
  `auto_dtype`), a JAX dtype or None is kept."""
  if isinstance(dtype, str):
    return DTYPES[auto_dtype()[0] if dtype == AUTO else dtype]
  return dtype
