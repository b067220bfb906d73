"""LSTM speed on a GPU: lstm_jax's Pallas, cuDNN and fused paths, Flax, PyTorch.

Usage::

  python benchmarks/speed_gpu.py              # on a GPU: all shapes, f32 and bf16
  python benchmarks/speed_gpu.py --dry-run    # tiny shapes, any backend (a test)

One process, one layer, inputs `[batch, time, features]`, shapes (B, T, I, H)
B64 T512 I512 H1024, B16 T1024 I256 H256 and the char-LM default layer
(B64 T128 I64 H384, experiments/charlm.py), each in float32 and with bfloat16
matmuls. For each it prints one Markdown row per implementation:

  tokens/s   fwd+bwd: the gradient of `sum(outputs)` w.r.t. the weights,
             B * T / seconds (median over interleaved rounds, as speed.py);
  peak MiB   JAX: the compiled fwd+bwd's temporaries plus outputs
             (`memory_analysis`); PyTorch: `max_memory_allocated` during one
             fwd+bwd above what was allocated before it.

Implementations: `lstm_jax.LSTM(impl=...)` for "pallas", "cudnn" and "fused"
(the column "runs" names what actually ran: a path that cannot take the call
falls back, see lstm_jax/kernels/dispatch.py); Flax `nn.RNN(nn.OptimizedLSTMCell)`;
PyTorch `nn.LSTM` on CUDA (cuDNN) when a CUDA device is visible to torch, else
on CPU. bfloat16: lstm_jax `dtype=bfloat16` (bf16 matmuls, f32 carry), Flax
`OptimizedLSTMCell(dtype=bfloat16)`, PyTorch the module and input in bfloat16.

Budget: compile + 2 warm-up calls + 3 rounds of >= 0.2 s per implementation,
about 3 minutes on one GPU (an estimate, not measured).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import flax.linen as nn
import jax
import jax.numpy as jnp

import lstm_jax
from lstm_jax.kernels import dispatch

SHAPES = ((64, 512, 512, 1024), (16, 1024, 256, 256), (64, 128, 64, 384))
DRY_SHAPES = ((4, 6, 5, 16),)
DTYPES = {"f32": None, "bf16": jnp.bfloat16}
IMPLS = ("pallas", "cudnn", "fused")


class Row:
  """One implementation at one shape: a fwd+bwd callable and its memory."""

  def __init__(self, name, runs, step, peak_mib, compile_s=None):
    self.name, self.runs, self.step = name, runs, step
    self.peak_mib, self.compile_s = peak_mib, compile_s


def _block(tree):
  for leaf in jax.tree.leaves(tree):
    if hasattr(leaf, "block_until_ready"):
      leaf.block_until_ready()
  return tree


def _jax_row(name, runs, apply, params, x):
  grad = jax.jit(jax.grad(lambda p, x: jnp.sum(apply(p, x).astype(jnp.float32))))
  t0 = time.perf_counter()
  compiled = grad.lower(params, x).compile()
  compile_s = time.perf_counter() - t0
  mem = compiled.memory_analysis()
  peak = None
  if mem is not None:
    peak = (mem.temp_size_in_bytes + mem.output_size_in_bytes) / 2**20
  return Row(name, runs, lambda: _block(compiled(params, x)), peak, compile_s)


def lstm_jax_row(shape, impl, dtype):
  b, t, i, h = shape
  model = lstm_jax.LSTM(h, impl=impl, dtype=dtype)
  x = jax.random.normal(jax.random.PRNGKey(0), (b, t, i))
  params = model.init(jax.random.PRNGKey(1), x)
  layer = params["params"]["layer_0_fwd"]
  kwargs = {"dtype": dtype} if dtype is not None else {}
  runs = dispatch.choose(impl, layer, x.shape, kwargs)
  return _jax_row(
    f"lstm_jax {impl}", runs, lambda p, x: model.apply(p, x)[0], params, x
  )


def flax_row(shape, dtype):
  b, t, i, h = shape
  model = nn.RNN(nn.OptimizedLSTMCell(h, dtype=dtype))
  x = jax.random.normal(jax.random.PRNGKey(0), (b, t, i))
  params = model.init(jax.random.PRNGKey(1), x)
  return _jax_row("flax OptimizedLSTMCell", "scan", model.apply, params, x)


def torch_row(shape, dtype):
  try:
    import torch
  except ImportError:
    return None
  cuda = torch.cuda.is_available()
  device = "cuda" if cuda else "cpu"
  tdtype = torch.bfloat16 if dtype is not None else torch.float32
  b, t, i, h = shape
  lstm = torch.nn.LSTM(i, h, batch_first=True).to(device=device, dtype=tdtype)
  x = torch.randn(b, t, i, device=device, dtype=tdtype)

  def step():
    lstm.zero_grad(set_to_none=True)
    lstm(x)[0].float().sum().backward()
    if cuda:
      torch.cuda.synchronize()

  peak = None
  if cuda:
    step()  # the first call allocates cuDNN's workspace
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    step()
    peak = (torch.cuda.max_memory_allocated() - before) / 2**20
  runs = "cuDNN" if cuda else "CPU (oneDNN)"
  return Row(f"torch {torch.__version__.split('+')[0]} nn.LSTM", runs, step, peak)


def _time_once(fn, min_s):
  n, t0 = 0, time.perf_counter()
  while True:
    fn()
    n += 1
    elapsed = time.perf_counter() - t0
    if elapsed >= min_s:
      return elapsed / n


def measure(rows, rounds, min_s, warmup=2):
  """{name: fwd+bwd seconds}, medians over interleaved rounds."""
  for row in rows:
    for _ in range(warmup):
      row.step()
  times = {row.name: [] for row in rows}
  for _ in range(rounds):
    for row in rows:
      times[row.name].append(_time_once(row.step, min_s))
  return {k: statistics.median(v) for k, v in times.items()}


def build(shape, dtype):
  rows = [lstm_jax_row(shape, impl, dtype) for impl in IMPLS]
  rows.append(flax_row(shape, dtype))
  rows.append(torch_row(shape, dtype))
  return [r for r in rows if r is not None]


def report(shape, dname, rows, seconds):
  b, t, i, h = shape
  lines = [
    f"\n### B{b} T{t} I{i} H{h} {dname}\n",
    "| implementation | runs | fwd+bwd tokens/s | peak MiB | compile s |",
    "|---|---|---:|---:|---:|",
  ]
  for row in rows:
    tok = b * t / seconds[row.name]
    peak = "n/a" if row.peak_mib is None else f"{row.peak_mib:.1f}"
    comp = "" if row.compile_s is None else f"{row.compile_s:.1f}"
    lines.append(f"| {row.name} | {row.runs} | {tok:,.0f} | {peak} | {comp} |")
  return "\n".join(lines)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--dry-run", action="store_true", help="tiny shapes, 1 round")
  parser.add_argument("--shapes", nargs="+", default=None, help="B,T,I,H")
  parser.add_argument("--dtypes", nargs="+", default=list(DTYPES), choices=DTYPES)
  parser.add_argument("--rounds", type=int, default=None)
  parser.add_argument("--min-s", type=float, default=None)
  args = parser.parse_args(argv)
  shapes = DRY_SHAPES if args.dry_run else SHAPES
  if args.shapes:
    shapes = [tuple(int(v) for v in s.split(",")) for s in args.shapes]
  rounds = args.rounds or (1 if args.dry_run else 3)
  min_s = args.min_s if args.min_s is not None else (0.0 if args.dry_run else 0.2)
  devices = jax.devices()
  print(f"# LSTM fwd+bwd on {devices[0].device_kind} ({jax.default_backend()})")
  print(f"jax {jax.__version__}; {rounds} rounds of >= {min_s} s; median")
  start = time.perf_counter()
  out = []
  for shape in shapes:
    for dname in args.dtypes:
      rows = build(shape, DTYPES[dname])
      table = report(shape, dname, rows, measure(rows, rounds, min_s))
      print(table, flush=True)
      out.append(table)
  print(f"\ntotal {time.perf_counter() - start:.0f} s")
  return "\n".join(out)


if __name__ == "__main__":
  main()
