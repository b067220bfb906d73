"""NNX state <-> Linen variables, for the modules of `lstm_jax.nnx`.

An NNX `LSTM` / `LSTMLayer` holds its `nnx.Param`s at the paths of the Linen
module's parameter tree, so the conversion is a re-wrapping: the Linen
variables are `{"params": <the NNX parameter state as a plain dict>}`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx


def linen_variables(model: nnx.Module) -> dict[str, Any]:
  """The Linen variables `{"params": {...}}` of an NNX model's parameters
  (for `layers.LSTM.apply`, Orbax checkpoints of Linen runs, `convert.py`)."""
  return {"params": nnx.state(model, nnx.Param).to_pure_dict()}


def _paths(tree: Any) -> dict[str, tuple[int, ...]]:
  leaves = jax.tree_util.tree_leaves_with_path(tree)
  return {
    "/".join(str(getattr(k, "key", k)) for k in path): tuple(np.shape(v))
    for path, v in leaves
  }


def load_linen_variables(model: nnx.Module, variables: Any) -> None:
  """Sets an NNX model's parameters, in place, from Linen variables.

  Args:
    model: an `lstm_jax.nnx` module (or any NNX module with the same paths).
    variables: `{"params": {...}}` of the matching Linen module (a dict or a
      FrozenDict), e.g. from `layers.LSTM.init` or `convert.from_torch`.

  Raises:
    ValueError: a parameter path missing or unknown, or a shape differing;
      the message names the paths.
  """
  params = variables.get("params", variables)
  state = nnx.state(model, nnx.Param)
  have, want = _paths(params), _paths(state.to_pure_dict())
  missing, extra = sorted(set(want) - set(have)), sorted(set(have) - set(want))
  shapes = [
    f"{p}: {have[p]} vs {want[p]}"
    for p in sorted(set(have) & set(want))
    if have[p] != want[p]
  ]
  if missing or extra or shapes:
    raise ValueError(
      f"Linen variables do not match the NNX model: missing {missing}, unknown "
      f"{extra}, shapes (given vs model) {shapes}"
    )
  nnx.replace_by_pure_dict(state, jax.tree.map(jnp.asarray, dict(params)))
  nnx.update(model, state)
