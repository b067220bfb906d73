"""Device mesh and shardings: one code path from one device to many.

The mesh has axes ("data", "model") over all devices of all processes.
Batches (and the stateful carry, which is per row) are split over "data";
parameters and optimizer state follow the table in `lstm_jax.parallel.sharding`
(replicated when "model" is 1, the LSTM's gates and large embedding/softmax
matrices split over "model" otherwise). On one device this is plain
`jax.jit`. `parallel.strategy=pmap` is `lstm_jax.parallel.pmap_step`; processes are
joined by `lstm_jax.parallel.distributed`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from lstm_jax.errors import ConfigError
from lstm_jax.parallel import sharding

AXES = ("data", "model")
STRATEGIES = ("jit", "pmap")


def make_mesh(mesh_shape: Sequence[int], devices: Sequence[Any] | None = None) -> Mesh:
  """A ("data", "model") mesh over all devices; one -1 entry takes the rest.

  The mesh must use every device: a run that leaves devices idle (or, on
  several hosts, leaves a host out) is a config mistake, not a choice.

  Raises:
    ConfigError: wrong rank, or a size that does not match the device count.
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
  if n != len(devices):
    raise ConfigError(
      f"parallel.mesh_shape={tuple(mesh_shape)} needs {n} devices, but there "
      f"are {len(devices)} ({jax.default_backend()}, {jax.process_count()} "
      "process(es)); use sizes whose product is the device count, or -1"
    )
  return Mesh(np.asarray(devices).reshape(shape), AXES)


def check_config(config: Any, mesh: Mesh, rows: int) -> None:
  """`parallel.strategy`, `train.grad_accum_steps` against the mesh, the
  train batch's `rows` and the LSTM width (`model.lstm.hidden_size`).

  Raises:
    ConfigError: naming the key, expected vs got.
  """
  strategy, k = config.parallel.strategy, config.train.grad_accum_steps
  data, model = mesh.shape["data"], mesh.shape["model"]
  if strategy not in STRATEGIES:
    raise ConfigError(
      f"parallel.strategy must be one of {list(STRATEGIES)}, got {strategy!r}"
    )
  if strategy == "pmap" and (model != 1 or jax.process_count() != 1):
    raise ConfigError(
      "parallel.strategy='pmap' is data parallelism in one process: it needs "
      f"parallel.mesh_shape=(-1, 1) and one process, got mesh {dict(mesh.shape)} "
      f"and {jax.process_count()} processes (use strategy='jit')"
    )
  if strategy == "pmap" and config.parallel.get("shard_opt_state"):
    raise ConfigError(
      "parallel.shard_opt_state=True (ZeRO-1) needs parallel.strategy='jit'"
    )
  if k < 1:
    raise ConfigError(f"train.grad_accum_steps must be >= 1, got {k}")
  if rows % (k * data):
    raise ConfigError(
      f"the train batch has {rows} rows, which train.grad_accum_steps={k} "
      f"micro-batches over the {data} devices of the data axis "
      f"(parallel.mesh_shape) cannot split evenly: need a multiple of {k * data}"
    )
  lstm = config.get("model", {}).get("lstm")
  if model > 1 and lstm is not None and lstm.hidden_size % model:
    raise ConfigError(
      f"model.lstm.hidden_size={lstm.hidden_size} is not divisible by the model "
      f"axis ({model}) of parallel.mesh_shape: tensor parallelism gives every "
      "device hidden_size/model columns of each of the 4 gates"
    )


def state_shardings(mesh: Mesh, abstract: Any, shard_opt_state: bool = False) -> Any:
  """Shardings of a `steps.TrainState`: parameters and optimizer state by
  `sharding.RULES` (`shard_opt_state`: the optimizer state also split over
  "data", ZeRO-1), the stateful carry split over "data", the rest
  replicated.

  Raises:
    ConfigError: a large leaf would be replicated (`sharding.tree_shardings`).
  """
  repl = replicated(mesh)
  params = sharding.tree_shardings(mesh, abstract.params, "params/")  # named first
  opt_state = sharding.tree_shardings(
    mesh, abstract.opt_state, "opt_state/", zero1=shard_opt_state
  )
  return jax.tree.map(lambda _: repl, abstract).replace(
    params=params,
    opt_state=opt_state,
    carry=batch_sharding(mesh, abstract.carry),
  )


def jit(fn: Callable, mesh: Mesh, **kwargs: Any) -> Callable:
  """`jax.jit(fn, **kwargs)`, traced and run under `jax.set_mesh(mesh)`.

  The mesh context is what the LSTM's tensor-parallel constraints (a model
  built with `model_axis` > 1, `lstm_jax.ops.tensor_parallel`) resolve
  against while tracing; with "model" = 1 it changes nothing.
  """
  jitted = jax.jit(fn, **kwargs)

  def call(*args: Any) -> Any:
    with mesh_context(mesh):
      return jitted(*args)

  call.jitted = jitted
  return call


def mesh_context(mesh: Mesh) -> Any:
  """`jax.set_mesh(mesh)` where "model" > 1 (tracing needs it), else nothing."""
  if mesh.shape["model"] == 1:
    return contextlib.nullcontext()
  return jax.set_mesh(mesh)


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
