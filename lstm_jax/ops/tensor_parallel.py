"""The LSTM's tensor-parallel layout: each device owns H/model units of every gate.

The stored layout of `w_ih [I, 4H]`, `w_hh [H, 4H]` and `bias [4H]` is
PyTorch's packed `[i|f|g|o]`, split over the mesh axis "model" along 4H
(`lstm_jax.parallel.sharding`). A contiguous split of 4H would give whole
gates to different devices, and every step would then need a gather of the
gates before `c' = f * c + i * g`. So the scan computes on a view instead:
`gate_views` reshapes each 4H-wide parameter to `[.., 4, H]` and constrains H
to "model", so that the cell update is local; inside the time loop the only
collective left is the all-gather of `h [B, H]` that `h @ w_hh` needs.

The caller says how large "model" is (`model_axis`, from the config's
`parallel.mesh_shape`); nothing here looks at the mesh. The constraints name
the mesh axes ("data", "model") by `PartitionSpec`, which JAX resolves
against the mesh the caller traces under (`jax.set_mesh`), so a scan with
`model_axis > 1` must be traced under such a mesh.
"""

from __future__ import annotations

import jax
from jax.sharding import PartitionSpec

from lstm_jax.ops.cell import Array, Params

# The mesh axes (lstm_jax.parallel.mesh builds Mesh(devices, (DATA, MODEL))).
DATA = "data"
MODEL = "model"
# The parameters of width 4H, which the scan views as [.., 4, H].
GATE_KEYS = ("w_ih", "w_hh", "bias", "ln_ih_scale", "ln_hh_scale")


def gate_view(w: Array) -> Array:
  """`[..., 4H]` -> `[..., 4, H]` with H split over "model"."""
  view = w.reshape(*w.shape[:-1], 4, w.shape[-1] // 4)
  spec = PartitionSpec(*([None] * (view.ndim - 1)), MODEL)
  return jax.lax.with_sharding_constraint(view, spec)


def gate_views(params: Params, model_axis: int) -> dict[str, Array]:
  """`params` with every 4H-wide entry as its `gate_view`.

  Args:
    params: one layer's parameters (`lstm_jax.ops.recurrent`).
    model_axis: the size of the mesh axis "model" (> 1).

  Raises:
    ValueError: the hidden size is not divisible by `model_axis`.
  """
  hidden = params["w_ih"].shape[-1] // 4
  if hidden % model_axis:
    raise ValueError(
      f"hidden size {hidden} is not divisible by the model axis ({model_axis})"
    )
  return {k: gate_view(v) if k in GATE_KEYS else v for k, v in params.items()}


def is_gate_view(params: Params) -> bool:
  """Whether `params` are `gate_views` (of a cell without projection, whose
  state the scan then keeps split by hidden unit)."""
  return params["w_hh"].ndim == 3 and "w_proj" not in params


def hidden_split(x: Array) -> Array:
  """`[batch, H]` state constrained to data x model (rows x hidden units)."""
  return jax.lax.with_sharding_constraint(x, PartitionSpec(DATA, MODEL))
