"""Names of pytree leaves, shared by the sharding rules and the checkpoint checksums.

A leaf's name is its key path joined with "/": "params/lstm/layer_0_fwd/w_ih".
`parallel/sharding.py` matches these names against its rules, and
`workdir/fingerprint.py` stores each leaf's checksum under its name in every
checkpoint, so the names are part of the saved format: changing them makes
older checkpoints fail verification.
"""

from __future__ import annotations

from typing import Any


def path_name(path: tuple[Any, ...]) -> str:
  """A key path as "params/lstm/w_ih", for a dataclass, dict or list path alike.

  A state restored without a target comes back as nested dicts and lists, so
  the names must not depend on the container type.

  Args:
    path: a key path from `jax.tree_util.tree_flatten_with_path`
      (`DictKey`, `GetAttrKey`, `SequenceKey` entries, or anything else,
      named by `str`).

  Returns:
    The entries' keys, attribute names or indices joined with "/".
  """
  parts = []
  for entry in path:
    for attr in ("key", "name", "idx"):
      if hasattr(entry, attr):
        parts.append(str(getattr(entry, attr)))
        break
    else:
      parts.append(str(entry))
  return "/".join(parts)
