r"""Does a config fit a device? Per-device memory of its compiled train step.

  python benchmarks/fit.py experiments/big_lstm.py --mesh 2,8 --devices 16 --hbm 32
  python benchmarks/fit.py experiments/big_lstm.py --mesh 1,8 --devices 8 --hbm 80 \
      --peak-tflops 989

On `--devices` simulated CPU devices (`--xla_force_host_platform_device_count`),
nothing allocated: the train state comes from `jax.eval_shape`, its
shardings from `lstm_jax.parallel.sharding` (so a vocabulary padded to the
"model" axis, and a refusal of any large matrix that would be replicated),
and the train step (the trainer's: `steps.make_train_step`, state donated)
is lowered and compiled for the mesh. Printed, per device:

* params / optimizer state: bytes of each leaf's shard, summed;
* the compiled step's `memory_analysis()`: arguments (state + batch),
  outputs, aliased (donated state reused for the new state), temporaries
  (activations, gradients, collectives' buffers); peak = arguments +
  outputs - aliased + temporaries;
* FITS / DOES NOT FIT against `--hbm` GiB;
* FLOPs per token, counted from the config (`train_flops_per_token`: 6 x
  the matmul multiply-adds, 2 forward + 4 backward; elementwise work and
  the embedding lookup left out), beside XLA's own count (the compiled
  step's `cost_analysis()`, per device, times the devices, over the
  tokens; XLA:CPU's count of a program with while loops is not reliable:
  read it as a cross-check only), and the step time at `--mfu` of
  `--peak-tflops` per device from the counted FLOPs.

These are XLA:CPU buffer assignments: TPU and GPU compilers fuse, remat and
lay out differently (and the LSTM takes other kernels there), so the peak is
an estimate, not a measurement of the accelerator.

The data are not read: the vocabulary size is `--vocab` or the experiment
module's `VOCAB_SIZE` (the BIG LSTM's 793,471 words), and the batch is
zeros of `data.batch_size` x `data.seq_len`.
"""

from __future__ import annotations

import argparse
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
GIB = 1024**3


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("config", help="experiments/<task>.py[:variant]")
  p.add_argument("--mesh", default="2,8", help="data,model (default 2,8)")
  p.add_argument("--devices", type=int, default=16, help="simulated devices")
  p.add_argument("--hbm", type=float, default=32.0, help="GiB per device")
  p.add_argument("--vocab", type=int, default=None, help="vocabulary size")
  p.add_argument("--peak-tflops", type=float, default=275.0, help="per device")
  p.add_argument("--mfu", type=float, default=0.5, help="model FLOPs utilisation")
  p.add_argument(
    "--set", action="append", default=[], metavar="KEY=VALUE", help="config override"
  )
  return p.parse_args(argv)


def _override(config, item: str) -> None:
  import ast

  key, _, value = item.partition("=")
  *sections, name = key.split(".")
  node = config
  for section in sections:
    node = node[section]
  try:
    node[name] = ast.literal_eval(value)
  except (ValueError, SyntaxError):
    node[name] = value


def train_flops_per_token(config, vocab: int) -> float:
  """6 x the matmul multiply-adds of one token in a train step.

  Per LSTM layer `(input + recurrent) * 4H` (+ `H * P` with a projection);
  the output layer `D * V` (full), `D * (S + 1)` (sampled: the target and S
  candidates) or the adaptive softmax's head, projections and clusters.
  """
  m, lstm = config.model, config.model.lstm
  hidden, proj = lstm.hidden_size, lstm.proj_size or lstm.hidden_size
  macs, width = 0, m.embed_dim
  for _ in range(lstm.num_layers):
    macs += (width + proj) * 4 * hidden + (hidden * proj if lstm.proj_size else 0)
    width = proj
  if m.softmax == "sampled":
    macs += width * (m.num_samples + 1)
  elif m.softmax == "adaptive":
    edges = [0, *m.cutoffs, vocab]
    macs += width * (m.cutoffs[0] + len(m.cutoffs))
    for i in range(len(m.cutoffs)):
      d = max(1, int(width // m.div_value ** (i + 1)))
      macs += width * d + d * (edges[i + 2] - edges[i + 1])
  else:
    macs += width * vocab
  return 6.0 * macs


def fit(args: argparse.Namespace) -> dict[str, float]:
  """Compiles the train step for the mesh; returns the per-device figures.

  Raises:
    ConfigError: a bad mesh, a matrix that would be replicated, ...
  """
  import functools
  import importlib.util

  import jax
  import numpy as np

  from lstm_jax import tasks
  from lstm_jax.cli import experiment
  from lstm_jax.errors import ConfigError
  from lstm_jax.parallel import mesh as mesh_lib
  from lstm_jax.training import build, optim, steps

  config = experiment.load(args.config)
  try:
    mesh_shape = tuple(int(s) for s in args.mesh.split(","))
  except ValueError:
    raise ConfigError(
      f"--mesh must be two integers data,model, got {args.mesh!r}"
    ) from None
  config.parallel.mesh_shape = mesh_shape
  for item in args.set:
    _override(config, item)
  vocab = args.vocab
  if vocab is None:
    path = args.config.partition(":")[0]
    spec = importlib.util.spec_from_file_location("fit_experiment", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    vocab = getattr(module, "VOCAB_SIZE", None)
  if vocab is None:
    raise ConfigError(f"{args.config} has no VOCAB_SIZE; pass --vocab")
  mesh = mesh_lib.make_mesh(mesh_shape)
  task = tasks.get_task(config.task)
  task.validate(config)
  model = task.make_model(config, {"vocab_size": int(vocab)})
  model = build.with_model_axis(model, mesh.shape["model"])
  tx, _ = optim.make_optimizer(config.optim, config.train.steps)
  b, t = config.data.batch_size, config.data.seq_len
  ids = np.zeros((b, t), np.int32)
  batch = {"inputs": ids, "targets": ids, "mask": np.ones((b, t), bool)}
  batch["segment_ids"] = np.ones((b, t), np.int32)
  mesh_lib.check_batch_size(mesh, "data.batch_size", b)
  mesh_lib.check_config(config, mesh, b)
  init = functools.partial(steps.create_train_state, model, tx, config, batch)
  with mesh_lib.mesh_context(mesh):  # the LSTM's constraints name the mesh axes
    abstract = jax.eval_shape(init, jax.random.key(0))
  state_sh = mesh_lib.state_shardings(mesh, abstract, config.parallel.shard_opt_state)
  batch_sh = mesh_lib.batch_sharding(mesh, batch)
  repl = mesh_lib.replicated(mesh)
  step = mesh_lib.jit(
    steps.make_train_step(
      model,
      task.loss_and_metrics,
      tx,
      grad_accum_steps=config.train.grad_accum_steps,
      token_metric=task.token_metric,
    ),
    mesh,
    in_shardings=(state_sh, batch_sh),
    out_shardings=(state_sh, repl, repl),
    donate_argnums=0,
  )

  def shard_bytes(tree, shardings) -> int:
    def one(leaf, sh):
      return int(np.prod(sh.shard_shape(leaf.shape))) * leaf.dtype.itemsize

    return sum(jax.tree.leaves(jax.tree.map(one, tree, shardings)))

  with mesh_lib.mesh_context(mesh):
    compiled = step.jitted.lower(abstract, batch).compile()
  mem = compiled.memory_analysis()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, list) else cost
  n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(abstract.params))
  devices = len(mesh.devices.flat)
  flops_step = float(cost.get("flops", 0.0)) * devices
  peak = (
    mem.argument_size_in_bytes
    + mem.output_size_in_bytes
    - mem.alias_size_in_bytes
    + mem.temp_size_in_bytes
  )
  return {
    "parameters": n_params,
    "vocab_rows": _vocab_rows(abstract.params),
    "params": shard_bytes(abstract.params, state_sh.params),
    "optimizer": shard_bytes(abstract.opt_state, state_sh.opt_state),
    "arguments": mem.argument_size_in_bytes,
    "outputs": mem.output_size_in_bytes,
    "aliased": mem.alias_size_in_bytes,
    "temporaries": mem.temp_size_in_bytes,
    "peak": peak,
    "flops_per_token": train_flops_per_token(config, int(vocab)),
    "xla_flops_per_token": flops_step / (b * t),
    "step_s": train_flops_per_token(config, int(vocab))
    * b
    * t
    / (devices * args.peak_tflops * 1e12 * args.mfu),
    "tokens": b * t,
  }


def _vocab_rows(params) -> int:
  """Rows of the input embedding (the padded vocabulary), or 0."""
  import jax

  from lstm_jax.util.treepath import path_name

  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    if path_name(path).endswith("embedding"):
      return int(leaf.shape[0])
  return 0


def main(argv: list[str] | None = None) -> int:
  args = parse_args(argv)
  flags = os.environ.get("XLA_FLAGS", "")
  os.environ["XLA_FLAGS"] = (
    f"{flags} --xla_force_host_platform_device_count={args.devices}".strip()
  )
  os.environ["JAX_PLATFORMS"] = "cpu"
  from lstm_jax.errors import LstmJaxError

  try:
    r = fit(args)
  except LstmJaxError as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  fits = r["peak"] <= args.hbm * GIB
  gib = lambda x: f"{x / GIB:.2f} GiB"  # noqa: E731
  print(
    f"{args.config} on mesh {args.mesh} ({args.devices} devices), "
    f"{r['parameters']:,} parameters, vocabulary rows {r['vocab_rows']:,}"
  )
  print(f"  params / device      {gib(r['params'])}")
  print(f"  optimizer / device   {gib(r['optimizer'])}")
  print(f"  arguments            {gib(r['arguments'])}")
  print(f"  outputs              {gib(r['outputs'])} ({gib(r['aliased'])} aliased)")
  print(f"  temporaries          {gib(r['temporaries'])}")
  print(
    f"  peak / device        {gib(r['peak'])} of {args.hbm:g} GiB: "
    f"{'FITS' if fits else 'DOES NOT FIT'}"
  )
  print(
    f"  FLOPs / token        {r['flops_per_token'] / 1e9:.3f} GFLOP counted, "
    f"{r['xla_flops_per_token'] / 1e9:.3f} by XLA:CPU ({r['tokens']:,} tokens a step)"
  )
  print(
    f"  step at {args.mfu:.0%} MFU    {r['step_s'] * 1e3:.1f} ms "
    f"({args.peak_tflops:g} TFLOP/s per device)"
  )
  print("  (XLA:CPU buffer estimates, not accelerator measurements)")
  return 0 if fits else 2


if __name__ == "__main__":
  sys.exit(main())
