"""Vocabulary padding, the refusal to replicate large matrices, ZeRO-1 specs
(lstm_jax/parallel/sharding.py), on abstract meshes: no devices needed."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from jax.sharding import AbstractMesh
from jax.sharding import PartitionSpec as P

from lstm_jax.errors import ConfigError
from lstm_jax.parallel import sharding

BILLION_WORD_VOCAB = 793_471  # = 7 x 263 x 431: no power of two divides it


def _leaf(*shape):
  return jax.ShapeDtypeStruct(shape, np.float32)


def _specs(mesh, tree, prefix="params/", zero1=False):
  shardings = sharding.tree_shardings(mesh, tree, prefix, zero1=zero1)
  return jax.tree.map(lambda s: s.spec, shardings)


def test_padded_vocab_is_the_next_multiple_of_the_model_axis_for_large_matrices():
  assert sharding.padded_vocab(BILLION_WORD_VOCAB, 1024, 8) == 793_472
  assert sharding.padded_vocab(BILLION_WORD_VOCAB, 1024, 16) == 793_472  # 2**7 x 6199
  assert sharding.padded_vocab(BILLION_WORD_VOCAB, 1024, 256) == 793_600
  assert sharding.padded_vocab(BILLION_WORD_VOCAB, 1024, 1) == BILLION_WORD_VOCAB
  # Small matrices are replicated anyway: no padding.
  assert sharding.padded_vocab(101, 64, 8) == 101
  assert sharding.model_axis((2, 8), 16) == 8
  assert sharding.model_axis((2, -1), 16) == 8
  assert sharding.model_axis((-1, 4), 16) == 4


def test_padded_vocabulary_matrices_are_split_by_rows_or_columns():
  mesh = AbstractMesh((2, 8), ("data", "model"))
  v = sharding.padded_vocab(BILLION_WORD_VOCAB, 1024, 8)
  tree = {
    "embed": {"embedding": _leaf(v, 1024)},
    "out_embed": _leaf(v, 1024),
    "out": {"head_kernel": _leaf(1024, 40_000), "tail_0_out": _leaf(256, 200_000)},
  }
  specs = _specs(mesh, tree)
  assert specs["embed"]["embedding"] == P("model", None)
  assert specs["out_embed"] == P("model", None)
  assert specs["out"]["head_kernel"] == P(None, "model")
  assert specs["out"]["tail_0_out"] == P(None, "model")


@pytest.mark.parametrize(
  "name,shape",
  [
    ("out_embed", (BILLION_WORD_VOCAB, 1024)),
    ("embed/embedding", (BILLION_WORD_VOCAB, 1024)),
    ("some_dense/kernel", (2048, 2048)),  # no rule at all
  ],
)
def test_a_large_matrix_that_would_be_replicated_is_refused(name, shape):
  mesh = AbstractMesh((2, 8), ("data", "model"))
  tree = {}
  node = tree
  *parents, last = name.split("/")
  for part in parents:
    node = node.setdefault(part, {})
  node[last] = _leaf(*shape)
  with pytest.raises(ConfigError) as err:
    _specs(mesh, tree)
  message = str(err.value)
  assert f"params/{name}" in message and str(shape) in message
  assert "{'data': 2, 'model': 8}" in message
  # Data parallelism replicates on purpose: no refusal there.
  _specs(AbstractMesh((16, 1), ("data", "model")), tree)


def test_zero1_adds_the_data_axis_to_optimizer_state_only_where_it_divides():
  mesh = AbstractMesh((2, 8), ("data", "model"))
  tree = {
    "embed": {"embedding": _leaf(793_472, 1024)},
    "lstm": {"layer_0_fwd": {"w_hh": _leaf(1024, 32768), "bias": _leaf(32768)}},
    "odd": _leaf(3, 5),
    "count": _leaf(),
  }
  plain = _specs(mesh, tree, "opt_state/")
  zero = _specs(mesh, tree, "opt_state/", zero1=True)
  assert plain["embed"]["embedding"] == P("model", None)
  assert zero["embed"]["embedding"] == P("model", "data")
  assert zero["lstm"]["layer_0_fwd"]["w_hh"] == P("data", "model")
  assert zero["lstm"]["layer_0_fwd"]["bias"] == P("model")  # no free axis
  assert zero["odd"] == P() and zero["count"] == P()
