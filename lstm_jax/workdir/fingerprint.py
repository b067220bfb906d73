"""Checksums of a saved state: Orbax stores arrays, not their integrity.

A flipped bit in an array file restores silently as a different number, so
every checkpoint stores, beside the state, the sha256 of each leaf's bytes
(with dtype and shape); `verify` recomputes them after a restore and raises
on any difference, which `checkpoint.restore_latest` treats like any other
unreadable step.
"""

from __future__ import annotations

import hashlib
from typing import Any

import jax
import numpy as np

from lstm_jax.treepath import path_name


def _leaf_bytes(leaf: Any) -> np.ndarray:
  if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(
    leaf.dtype, jax.dtypes.prng_key
  ):
    leaf = jax.random.key_data(leaf)
  return np.asarray(leaf)


def fingerprint(state: Any) -> dict[str, Any] | None:
  """Per-leaf sha256 of the state's bytes, with dtype and shape.

  Orbax has no checksums: a flipped bit in an array file restores silently as
  a different number. Storing this beside the state and comparing after a
  restore turns any change of the saved bytes into a detected corruption.
  None when some leaf is not fully addressable from this process (multi-host
  sharded arrays), where hashing would need a gather.
  """
  leaves = jax.tree_util.tree_flatten_with_path(state)[0]
  out = {}
  for path, leaf in leaves:
    if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
      return None
    arr = np.ascontiguousarray(_leaf_bytes(leaf))
    out[path_name(path)] = {
      "sha256": hashlib.sha256(arr.tobytes()).hexdigest(),
      "dtype": str(arr.dtype),
      "shape": list(arr.shape),
    }
  return out


def verify(state: Any, expected: dict[str, Any] | None) -> None:
  """Raises ValueError if a restored leaf's bytes differ from those saved."""
  if not expected:
    return
  actual = fingerprint(state)
  if actual is None:
    return
  for key, want in expected.items():
    got = actual.get(key)
    # A leaf restored as another dtype/shape (or absent) is a config change,
    # which Orbax reports itself; only same-layout bytes are comparable.
    if got is None or (got["dtype"], got["shape"]) != (
      want["dtype"],
      want["shape"],
    ):
      continue
    if got["sha256"] != want["sha256"]:
      raise ValueError(
        f"checksum mismatch in {key}: the bytes on disk differ from those saved"
      )
