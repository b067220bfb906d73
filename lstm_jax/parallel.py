"""Device mesh and shardings: one code path from one device to many.

The mesh has axes ("data", "model"). Batches (and the stateful carry, which is
per row) are split over "data"; parameters and optimizer state are replicated.
The "model" axis is there so that sharding parameters later is a change of
`param_sharding`, not of the loop. With the default mesh (1, 1) this is plain
single-device `jax.jit`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from lstm_jax.errors import ConfigError

AXES = ("data", "model")


def make_mesh(mesh_shape: Sequence[int], devices: Sequence[Any] | None = None) -> Mesh:
  """A ("data", "model") mesh; one -1 entry takes all remaining devices.

  Uses the first prod(mesh_shape) devices.

  Raises:
    ConfigError: wrong rank, or more devices asked for than exist.
  """
  devices = list(jax.devices() if devices is None else devices)
  shape = [int(s) for s in mesh_shape]
  if (
    len(shape) != len(AXES)
    or shape.count(-1) > 1
    or any(s == 0 or s < -1 for s in shape)
  ):
    raise ConfigError(
      f"parallel.mesh_shape must be two sizes (data, model), one of them may be "
      f"-1; got {tuple(mesh_shape)}"
    )
  if -1 in shape:
    rest = int(np.prod([s for s in shape if s != -1]))
    shape[shape.index(-1)] = max(len(devices) // rest, 1)
  n = int(np.prod(shape))
  if n > len(devices):
    raise ConfigError(
      f"parallel.mesh_shape={tuple(mesh_shape)} needs {n} devices; "
      f"{len(devices)} available ({jax.default_backend()})"
    )
  return Mesh(np.asarray(devices[:n]).reshape(shape), AXES)


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def data_sharded(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over "data"."""
  return NamedSharding(mesh, PartitionSpec("data"))


def batch_rows(batch: Any) -> int:
  """Rows of a batch-major pytree: the leading size of its first leaf."""
  leaves = jax.tree.leaves(batch)
  if not leaves or not np.shape(leaves[0]):
    raise ValueError("a batch must hold at least one array with a batch axis")
  return int(np.shape(leaves[0])[0])


def check_batch_size(mesh: Mesh, name: str, size: int) -> None:
  data = mesh.shape["data"]
  if size % data:
    raise ConfigError(
      f"{name} has {size} rows, which is not divisible by the {data} "
      f"data-parallel devices of parallel.mesh_shape"
    )


def batch_sharding(mesh: Mesh, tree: Any) -> Any:
  """Shardings for a batch-major pytree: rank >= 1 leaves split on "data"."""
  return jax.tree.map(
    lambda x: data_sharded(mesh) if len(x.shape) else replicated(mesh), tree
  )


def put_batch(batch: dict[str, np.ndarray], shardings: Any) -> dict[str, jax.Array]:
  """The global numpy batch -> global arrays with `shardings`.

  Every process computes the same global batch (it is a function of the step)
  and contributes its contiguous share of rows, which matches the default
  device order of a data-sharded mesh.
  """
  count, index = jax.process_count(), jax.process_index()
  if count > 1:
    batch = {k: np.array_split(v, count)[index] for k, v in batch.items()}
  return jax.tree.map(jax.make_array_from_process_local_data, shardings, batch)
