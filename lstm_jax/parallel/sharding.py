"""Which device holds which part of each parameter: one table, applied once.

`RULES` maps a parameter path (a regular expression searched in the
"/"-joined path, so it matches a parameter and its optimizer moments alike)
to a `PartitionSpec` over the mesh axes ("data", "model"). The first matching
rule wins; a leaf whose shape the spec does not divide is replicated.

Tensor parallelism of the LSTM ("model" > 1). The stored layout of `w_ih
[I, 4H]`, `w_hh [H, 4H]` and `bias [4H]` is PyTorch's packed `[i|f|g|o]`
(checkpoints and `convert.py` rely on it), and it is stored split over
"model" along 4H: that is what shrinks the memory. The scan computes on a
gate view instead, in which every device holds H/model columns of EVERY gate
(`lstm_jax.ops.tensor_parallel`, enabled by the LSTM's `model_axis`); the
reshuffle from the stored to the computed layout happens once per call,
outside the time loop. benchmarks/README.md has the counts of the compiled
while-loop body.

Embedding and softmax matrices are split over "model" only when large
(`LARGE` elements): a char-LM's 100 x 64 embedding is not worth a collective.
Their vocabulary axis must then be a multiple of "model": a task model pads
its vocabulary to `padded_vocab(...)` rows, and its output layer sets the
padding's logits to -inf (`lstm_jax.ops.softmax.mask_padding`), so losses and
metrics are those of the real words. (The One Billion Word vocabulary,
793,471 = 7 x 263 x 431 words, divides no power of two: unpadded, its
embedding and softmax would be replicated on every device.)

No silent replication: on a mesh with "model" > 1, a leaf of more than
`REPLICATION_LIMIT` elements that no rule splits is a `ConfigError` naming
its path, shape and the mesh (`tree_shardings`).

ZeRO-1 (`parallel.shard_opt_state`, `zero1=True`): optimizer-state leaves
are also split over "data", on their first axis that the rule leaves whole
and "data" divides; each device then updates its slice of the moments, and
XLA gathers the updated parameters (which stay replicated over "data").
"""

from __future__ import annotations

import re
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from lstm_jax.errors import ConfigError
from lstm_jax.ops.tensor_parallel import DATA, MODEL
from lstm_jax.util.treepath import path_name

P = PartitionSpec
# Embedding / softmax matrices with at least this many elements are split.
LARGE = 1_000_000
# With "model" > 1, a replicated leaf larger than this is refused.
REPLICATION_LIMIT = 1_000_000

# (path pattern, spec, only if large). Paths look like
# "params/lstm/layer_0_fwd/w_ih" or "opt_state/.../mu/lstm/layer_0_fwd/w_ih".
_LSTM = r"(^|/)layer_\d+_(fwd|bwd)/"
RULES: tuple[tuple[str, PartitionSpec, bool], ...] = (
  (_LSTM + r"(w_ih|w_hh)$", P(None, MODEL), False),  # [I or H, 4H]: gate columns
  (_LSTM + r"(bias|ln_ih_scale|ln_hh_scale)$", P(MODEL), False),  # [4H]
  (_LSTM + r"(ln_c_scale|ln_c_bias)$", P(MODEL), False),  # [H]
  (_LSTM + r"peephole$", P(None, MODEL), False),  # [3, H]
  (_LSTM + r"w_proj$", P(MODEL, None), False),  # [H, P]: rows of h
  (r"(^|/)embed/embedding$", P(MODEL, None), True),  # [V, E]: vocabulary rows
  (r"(^|/)(out_embed|out/weights)$", P(MODEL, None), True),  # [V, D]: rows
  (r"(^|/)out/kernel$", P(None, MODEL), True),  # [D, V]: vocabulary columns
  (r"(^|/)(out/bias|out_bias)$", P(MODEL), True),  # [V]
  # Adaptive softmax: the head [D, c_0 + n] and each cluster's [d_i, size_i].
  (r"(^|/)(head_kernel|tail_\d+_out)$", P(None, MODEL), True),
)


def spec_for(name: str, shape: tuple[int, ...], model: int) -> PartitionSpec:
  """The spec of the leaf at path `name` with `shape` on a "model" axis of
  size `model`: the first matching rule, or replicated."""
  if model == 1:
    return P()
  for pattern, spec, only_large in RULES:
    if not re.search(pattern, name):
      continue
    if len(spec) != len(shape) or (only_large and np.prod(shape) < LARGE):
      return P()
    if any(axis and size % model for axis, size in zip(spec, shape)):
      return P()
    return spec
  return P()


def padded_vocab(vocab_size: int, width: int, model: int) -> int:
  """Rows to store for a `[vocab_size, width]` embedding or softmax matrix
  on a "model" axis of size `model`: the next multiple of `model` when the
  matrix is large enough to be split (`LARGE`), else `vocab_size`."""
  if model <= 1 or vocab_size * width < LARGE:
    return vocab_size
  return -(-vocab_size // model) * model


def model_axis(mesh_shape: Any, device_count: int) -> int:
  """Size of "model" that `parallel.mesh_shape` gives on `device_count`
  devices (a -1 entry takes the rest), before the mesh exists."""
  data, model = (int(s) for s in mesh_shape)
  if model == -1:
    return max(device_count // max(data, 1), 1)
  return max(model, 1)


def _add_data(spec: PartitionSpec, shape: tuple[int, ...], data: int) -> PartitionSpec:
  """`spec` with "data" on the first axis it leaves whole and `data` divides."""
  full = list(spec) + [None] * (len(shape) - len(spec))
  for i, (axis, size) in enumerate(zip(full, shape)):
    if axis is None and size % data == 0 and size >= data:
      full[i] = DATA
      return P(*full)
  return spec


def tree_shardings(mesh: Mesh, tree: Any, prefix: str = "", zero1: bool = False) -> Any:
  """`NamedSharding`s for every leaf of `tree` (arrays or ShapeDtypeStructs)
  by `RULES`; `prefix` is prepended to each leaf's path. `zero1`: also split
  over "data" (optimizer state, see the module docstring).

  Raises:
    ConfigError: with "model" > 1, a leaf over `REPLICATION_LIMIT` elements
      that would be replicated (named with its shape and the mesh).
  """
  model, data = mesh.shape[MODEL], mesh.shape.get(DATA, 1)

  def one(path, leaf):
    name, shape = prefix + path_name(path), tuple(np.shape(leaf))
    spec = spec_for(name, shape, model)
    if model > 1 and spec == P() and np.prod(shape) > REPLICATION_LIMIT:
      raise ConfigError(
        f"{name} {shape} ({int(np.prod(shape)):,} elements) would be replicated "
        f"on every device of the mesh {dict(mesh.shape)}: no sharding rule "
        f"splits it over 'model'={model} (a vocabulary axis must be a "
        "multiple of it: pad the vocabulary, lstm_jax.parallel.sharding."
        "padded_vocab; an LSTM width must be divisible by it), or use "
        "parallel.mesh_shape=(-1, 1)"
      )
    if zero1 and data > 1:
      spec = _add_data(spec, shape, data)
    return NamedSharding(mesh, spec)

  return jax.tree_util.tree_map_with_path(one, tree)


def describe(mesh: Mesh, tree: Any) -> list[tuple[str, tuple[int, ...], str]]:
  """(path, shape, spec) of every leaf: the table as applied, for logs/docs."""
  shardings = tree_shardings(mesh, tree)
  flat = jax.tree_util.tree_flatten_with_path(tree)[0]
  return [
    (path_name(p), tuple(np.shape(x)), str(s.spec))
    for (p, x), s in zip(flat, jax.tree.leaves(shardings))
  ]
