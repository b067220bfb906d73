"""`parallel.strategy=pmap`: the classic data-parallel step with `jax.pmap`.

For runtimes where sharded `jit` is not an option. Each local device runs
`steps.make_train_step(..., axis_name=AXIS)` on its B/D rows; gradients,
loss and metrics are combined with `lax.psum` inside the step (the
token-weighted mean of `steps.make_train_step`, which is `lax.pmean` when
every device holds as many tokens), so all devices apply the same update.

The loop keeps one `TrainState` layout for both strategies (the one of
`parallel.state_shardings`, which checkpoints and evaluation use): this
wrapper maps the state's per-row carry and the batch to `[D, B/D, ...]` on
the way in and back on the way out; parameters, optimizer state and scalars
are broadcast (`in_axes=None`) and come out replicated (`out_axes=None`).
Dropout masks are drawn per device, so they differ from `jit`'s (which
draws one mask for the global batch): the two strategies agree exactly with
dropout 0.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np

AXIS = "devices"


def _split(tree: Any, n: int) -> Any:
  return jax.tree.map(lambda x: x.reshape(n, x.shape[0] // n, *x.shape[1:]), tree)


def _merge(tree: Any) -> Any:
  return jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:]), tree)


def make(step: Callable, state_shardings: Any, devices: list[Any]) -> Callable:
  """`call(state, batch) -> (state, metrics, loss)` running `step` (built with
  `axis_name=AXIS`) under `jax.pmap` on `devices`.

  Args:
    step: the per-device train step.
    state_shardings: where the returned state goes (the loop's layout).
    devices: the local devices (the mesh's, in order).
  """
  n = len(devices)

  def axes(state):  # carry rows are mapped, everything else broadcast
    return jax.tree.map(lambda _: None, state).replace(
      carry=jax.tree.map(lambda _: 0, state.carry)
    )

  compiled: dict[str, Callable] = {}

  def call(state, batch):
    if "fn" not in compiled:
      state_axes = axes(state)
      compiled["fn"] = jax.pmap(
        step,
        axis_name=AXIS,
        in_axes=(state_axes, 0),
        out_axes=(state_axes, None, None),
        devices=devices,
      )
    host = jax.tree.map(np.asarray, (state.carry, batch))  # small: rows only
    carry, batch = _split(host, n)
    new, metrics, loss = compiled["fn"](state.replace(carry=carry), batch)
    new = new.replace(carry=_merge(jax.tree.map(np.asarray, new.carry)))
    return jax.device_put(new, state_shardings), metrics, loss

  return call
