"""Step-time cost of each regulariser (fwd+bwd) against none, same process.

  python benchmarks/regularisation.py                 # B32 T128 I128 H256, 7 rounds
  python benchmarks/regularisation.py --shape 16,64,64,128 --rounds 5

Each row is `lstm_jax.LSTM(H, num_layers=2)` in training mode with one method
on (the rates are typical AWD-LSTM values; the cost hardly depends on them):
the gradient of `sum(outputs) + penalties` w.r.t. the parameters, under jit,
with a fresh dropout key every call (so the masks are sampled every step, as
in training). Every function is compiled and warmed up first; each round runs
all rows back to back and the median over rounds is reported, with the ratio
to the no-regularisation row. The `reference` rows show what the same method
costs on JAX autodiff of `lax.scan`, the path a remedy must not fall back to.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp

from lstm_jax.nn.layers import LSTM

METHODS = {
  "none": {},
  "variational in/between/out 0.2/0.3/0.4": dict(
    input_dropout=0.2, hidden_dropout=0.3, output_dropout=0.4
  ),
  "recurrent dropout 0.25": dict(recurrent_dropout=0.25),
  "zoneout c/h 0.15/0.05": dict(zoneout_cell=0.15, zoneout_hidden=0.05),
  "weight-drop 0.5": dict(weight_drop=0.5),
  "AR/TAR 2/1": dict(ar_alpha=2.0, tar_beta=1.0),
}
ALL = {k: v for d in METHODS.values() for k, v in d.items()}


def _step_fn(model, x):
  def loss(params, key):
    (y, _), pen = model.apply(
      {"params": params},
      x,
      deterministic=False,
      rngs={"dropout": key},
      mutable=["penalties"],
    )
    return jnp.sum(y) + sum(jax.tree.leaves(pen), 0.0)

  return jax.jit(jax.grad(loss))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--shape", default="32,128,128,256", help="B,T,I,H")
  parser.add_argument("--rounds", type=int, default=7)
  parser.add_argument("--calls", type=int, default=3, help="calls per timing")
  args = parser.parse_args()
  b, t, i, h = (int(v) for v in args.shape.split(","))
  x = jax.random.normal(jax.random.key(0), (b, t, i))
  rows = {f"fused: {k}": (v, "auto") for k, v in METHODS.items()}
  rows["fused: all of the above"] = (ALL, "auto")
  rows["reference: none"] = ({}, "reference")
  rows["reference: all of the above"] = (ALL, "reference")
  params = LSTM(h, num_layers=2).init(jax.random.key(1), x)["params"]
  fns = {}
  for name, (kw, impl) in rows.items():
    fns[name] = _step_fn(LSTM(h, num_layers=2, impl=impl, **kw), x)
    jax.block_until_ready(fns[name](params, jax.random.key(2)))  # compile, warm
  times = {name: [] for name in rows}
  for r in range(args.rounds):
    for name, fn in fns.items():
      start = time.perf_counter()
      for c in range(args.calls):
        out = fn(params, jax.random.key(100 * r + c))
      jax.block_until_ready(out)
      times[name].append((time.perf_counter() - start) / args.calls)
  base = statistics.median(times["fused: none"])
  print(f"B{b} T{t} I{i} H{h}, 2 layers, fwd+bwd, median of {args.rounds} rounds")
  print("| method | ms / step | vs none (fused) | tokens/s |")
  print("|---|---:|---:|---:|")
  for name in rows:
    med = statistics.median(times[name])
    print(f"| {name} | {1e3 * med:.1f} | {med / base:.2f}x | {b * t / med:,.0f} |")


if __name__ == "__main__":
  main()
