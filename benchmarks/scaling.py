"""Scaling figures: sharded memory, collectives of the recurrence, step time.

  python benchmarks/scaling.py            # all three (subprocesses per device count)
  python benchmarks/scaling.py memory     # per-device params + Adam state, 2 x 4096
  python benchmarks/scaling.py hlo        # collectives in the compiled loop bodies
  python benchmarks/scaling.py time       # data-parallel step time, 1/2/4/8 devices

* memory: `jax.eval_shape` of the train state of a 2-layer, hidden-4096 LSTM
  language model (nothing is allocated), sharded by `lstm_jax.parallel.sharding.RULES`
  on a (1, model) mesh of CPU devices, model = 1, 2, 4; bytes of one device's
  shard of every leaf of params and optimizer state.
* hlo: the tiny char-LM's train step compiled for mesh (2, 4); the number of
  all-gather / all-reduce / collective-permute / all-to-all / reduce-scatter
  ops inside each while-loop body (the time loops of the forward and the
  backward LSTM pass), i.e. per step of the recurrence.
* time: the tiny char-LM's jitted train step (global batch 32), median of
  20 steps, on a (D, 1) mesh of D = 1, 2, 4, 8 forced CPU devices.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
COLLECTIVES = (
  "all-gather",
  "all-reduce",
  "collective-permute",
  "all-to-all",
  "reduce-scatter",
)


def _setup(overrides: dict[str, object], mesh_shape: tuple[int, int]):
  import jax

  from experiments import charlm
  from lstm_jax.parallel import mesh as mesh_lib
  from lstm_jax.training import build

  config = charlm.get_config("tiny")
  for key, value in overrides.items():
    section, *rest = key.split(".")
    node = config[section]
    for name in rest[:-1]:
      node = node[name]
    node[rest[-1]] = value
  built = build.build(config, model_axis=mesh_shape[1])
  n = mesh_shape[0] * mesh_shape[1]
  mesh = mesh_lib.make_mesh(mesh_shape, jax.devices()[:n])
  with mesh_lib.mesh_context(mesh):  # the LSTM's constraints name the mesh axes
    abstract = built.abstract_state()
  state_sh = mesh_lib.state_shardings(mesh, abstract)
  task, model, tx, datasets = built.task, built.model, built.tx, built.datasets
  return (
    jax,
    config,
    task,
    model,
    tx,
    mesh,
    datasets,
    built.init_state,
    abstract,
    state_sh,
  )


def memory() -> None:
  import numpy as np

  print("| model axis | params / device | Adam state / device | total / device |")
  print("| --- | --- | --- | --- |")
  for model_size in (1, 2, 4):
    jax, *_, abstract, state_sh = _setup(
      {"model.lstm.hidden_size": 4096, "model.lstm.num_layers": 2},
      (1, model_size),
    )

    def mib(tree, shardings, leaves=jax.tree.leaves):
      total = 0
      for leaf, sh in zip(leaves(tree), leaves(shardings)):
        total += np.prod(sh.shard_shape(leaf.shape)) * leaf.dtype.itemsize
      return total / 2**20

    p = mib(abstract.params, state_sh.params)
    o = mib(abstract.opt_state, state_sh.opt_state)
    print(f"| {model_size} | {p:.1f} MiB | {o:.1f} MiB | {p + o:.1f} MiB |")


def _bodies(hlo: str) -> dict[str, str]:
  """Computation name -> text, for each while loop's body."""
  comps = {}
  for m in re.finditer(r"^(?:ENTRY )?%?([\w.\-]+) .*?\{\n(.*?)\n\}", hlo, re.M | re.S):
    comps[m.group(1)] = m.group(2)
  names = re.findall(r"body=%?([\w.\-]+)", hlo)
  return {n: comps.get(n, "") for n in names}


def hlo(mesh_shape: tuple[int, int] = (2, 4)) -> None:
  jax, config, task, model, tx, mesh, datasets, init, abstract, state_sh = _setup(
    {"model.lstm.dropout": 0.0}, mesh_shape
  )
  from lstm_jax.parallel import mesh as mesh_lib
  from lstm_jax.training import steps

  batch = datasets.train_batch(0)
  repl = mesh_lib.replicated(mesh)
  step = mesh_lib.jit(
    steps.make_train_step(model, task.loss_and_metrics, tx),
    mesh,
    in_shardings=(state_sh, mesh_lib.batch_sharding(mesh, batch)),
    out_shardings=(state_sh, repl, repl),
  )
  with mesh_lib.mesh_context(mesh):
    text = step.jitted.lower(abstract, batch).compile().as_text()
  print(f"mesh {mesh_shape}, hidden {config.model.lstm.hidden_size}:")
  print("| while body | " + " | ".join(COLLECTIVES) + " |")
  print("| --- " * (len(COLLECTIVES) + 1) + "|")
  for name, body in _bodies(text).items():
    counts = [len(re.findall(rf"\b{op}(-start)?\(", body)) for op in COLLECTIVES]
    print(f"| {name} | " + " | ".join(map(str, counts)) + " |")
  whole = [len(re.findall(rf"\b{op}(-start)?\(", text)) for op in COLLECTIVES]
  print("| (whole step) | " + " | ".join(map(str, whole)) + " |")


def step_time(devices: int) -> None:
  jax, config, task, model, tx, mesh, datasets, init, abstract, state_sh = _setup(
    {"data.batch_size": 32}, (devices, 1)
  )
  import numpy as np

  from lstm_jax.parallel import mesh as mesh_lib
  from lstm_jax.training import steps

  batch = datasets.train_batch(0)
  batch_sh = mesh_lib.batch_sharding(mesh, batch)
  repl = mesh_lib.replicated(mesh)
  step = jax.jit(
    steps.make_train_step(model, task.loss_and_metrics, tx),
    in_shardings=(state_sh, batch_sh),
    out_shardings=(state_sh, repl, repl),
    donate_argnums=0,
  )
  state = jax.jit(init, out_shardings=state_sh)(jax.random.key(0))
  times = []
  for i in range(25):
    b = mesh_lib.put_batch(datasets.train_batch(i), batch_sh)
    t0 = time.perf_counter()
    state, _, loss = step(state, b)
    jax.block_until_ready(loss)
    times.append(time.perf_counter() - t0)
  print(f"| {devices} | {1e3 * np.median(times[5:]):.1f} ms |", flush=True)


def _sub(arg: str, devices: int) -> None:
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
  subprocess.run([sys.executable, __file__, arg], env=env, check=True)


if __name__ == "__main__":
  what = sys.argv[1] if len(sys.argv) > 1 else "all"
  if what == "memory":
    memory()
  elif what == "hlo":
    hlo()
  elif what.startswith("time-"):
    step_time(int(what.split("-")[1]))
  else:
    if what in ("all",):
      _sub("memory", 4)
      _sub("hlo", 8)
    print("| devices | step time (median) |\n| --- | --- |", flush=True)
    for d in (1, 2, 4, 8):
      _sub(f"time-{d}", d)
