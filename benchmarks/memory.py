"""Memory of one LSTM layer's gradient: XLA's compiled temporary buffer sizes.

Usage::

  python benchmarks/memory.py [--shapes B,T,I,H ...]

For each shape, the temporary memory (`compiled.memory_analysis()
.temp_size_in_bytes`, MiB) of `jit(grad(sum(lstm(params, x))))` w.r.t. the
parameters, for lstm_jax's fused path with and without remat, the reference
path with and without remat, and Flax `nn.RNN(nn.OptimizedLSTMCell)`. Nothing is
run, only compiled. On XLA:CPU the temporaries are allocated on every call, so
they are also a speed matter (see lstm_jax/kernels/fused/scan.py).
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import flax.linen as nn
import jax
import jax.numpy as jnp

from lstm_jax.kernels import dispatch

SHAPES = ((16, 64, 32, 64), (32, 128, 128, 256), (64, 256, 256, 512))


def temp_mib(loss, params, x):
  compiled = jax.jit(jax.grad(loss)).lower(params, x).compile()
  return compiled.memory_analysis().temp_size_in_bytes / 2**20


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--shapes", nargs="+", default=None, help="B,T,I,H")
  args = parser.parse_args(argv)
  shapes = SHAPES
  if args.shapes:
    shapes = [tuple(int(v) for v in s.split(",")) for s in args.shapes]
  rows = {
    "lstm_jax fused": {"impl": "fused"},
    "lstm_jax fused, remat": {"impl": "fused", "remat": True},
    "lstm_jax reference": {"impl": "reference"},
    "lstm_jax reference, remat": {"impl": "reference", "remat": True},
  }
  print(f"jax {jax.__version__} ({jax.default_backend()}); gradient temporaries, MiB\n")
  print(
    "| implementation | "
    + " | ".join(f"B{b} T{t} I{i} H{h}" for b, t, i, h in shapes)
    + " |"
  )
  print("|---|" + "---:|" * len(shapes))
  table = {name: [] for name in [*rows, "flax OptimizedLSTMCell"]}
  for b, t, i, h in shapes:
    x = jnp.zeros((b, t, i))
    params = {
      "w_ih": jnp.zeros((i, 4 * h)),
      "w_hh": jnp.zeros((h, 4 * h)),
      "bias": jnp.zeros((4 * h,)),
    }
    for name, kw in rows.items():

      def loss(p, x, kw=kw):
        return jnp.sum(dispatch.lstm_scan(p, x, **kw)[0])

      table[name].append(temp_mib(loss, params, x))
    model = nn.RNN(nn.OptimizedLSTMCell(h))
    fparams = jax.eval_shape(model.init, jax.random.key(0), x)
    fparams = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), fparams)
    table["flax OptimizedLSTMCell"].append(
      temp_mib(lambda p, x, m=model: jnp.sum(m.apply(p, x)), fparams, x)
    )
  for name, values in table.items():
    print(f"| {name} | " + " | ".join(f"{v:.1f}" for v in values) + " |")


if __name__ == "__main__":
  main()
