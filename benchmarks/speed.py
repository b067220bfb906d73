"""LSTM speed: lstm_jax against Flax, Keras 3 (JAX backend) and PyTorch.

Usage::

  python benchmarks/speed.py                  # all shapes, 7 rounds, all cores
  python benchmarks/speed.py --quick          # 3 rounds (about 3.5 minutes on 2 busy vCPUs)
  python benchmarks/speed.py --shapes 32,128,128,256 --rounds 9
  python benchmarks/speed.py --threads 1 --cpu-time   # one pinned core, CPU time

The last form measures every implementation on one core by process CPU time,
which other processes on a shared machine disturb far less than wall-clock
time (multi-threaded PyTorch in particular collapses when a core is busy).

One process, one layer, float32, inputs `[batch, time, features]`. For every
shape (batch B, time T, input features I, hidden H) it reports tokens/s
(B * T / seconds) of

  forward    the outputs (PyTorch under `torch.no_grad()`);
  fwd+bwd    the gradient of `sum(outputs)` w.r.t. the weights and the inputs
             (what a training step needs; PyTorch: forward + `loss.backward()`);

for lstm_jax's default (`impl="auto"`) and reference paths, Flax
`nn.RNN(nn.OptimizedLSTMCell)`, Keras 3's `keras.layers.LSTM` (JAX backend, a
jitted `stateless_call`), PyTorch `nn.LSTM` (oneDNN, `torch.set_num_threads` =
JAX's CPU count) and the matmul-only bound: the same matmul FLOPs as a few large
matmuls without recurrence (what an ideal LSTM could reach).

Timing: every callable is compiled and warmed up first; then in each round every
implementation runs back to back, so a change in machine load hits all of them
alike, and the median over rounds is reported. Ratios are fwd+bwd tokens/s over
PyTorch's and Flax's. Compile time is `jit(...).lower(...).compile()` of the
fwd+bwd function; for lstm_jax it is also shown at T=64 and T=1024 to show that
it does not grow with the sequence length (the loop is not unrolled).

This is a benchmark, not a test: numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "jax")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import flax.linen as nn
import jax
import jax.numpy as jnp

import lstm_jax

SHAPES = ((16, 64, 32, 64), (32, 128, 128, 256), (64, 256, 256, 512))


def _block(tree):
  for leaf in jax.tree.leaves(tree):
    if hasattr(leaf, "block_until_ready"):
      leaf.block_until_ready()
  return tree


class Impl:
  """Forward and fwd+bwd callables (no arguments) and a compile time."""

  def __init__(self, name, fwd, fwdbwd, compile_s=None):
    self.name, self.fwd, self.fwdbwd, self.compile_s = name, fwd, fwdbwd, compile_s


# fwd+bwd differentiates w.r.t. the parameters only, as a training step of a
# first layer does; `--input-grad` adds the input gradient (for stacked layers).
INPUT_GRAD = False


def _jax_impl(name, apply, params, x):
  """`apply(params, x) -> ys`; jits forward and the grad of sum(ys)."""
  fwd = jax.jit(apply)
  argnums = (0, 1) if INPUT_GRAD else 0
  grad = jax.jit(jax.grad(lambda p, x: jnp.sum(apply(p, x)), argnums=argnums))
  t0 = time.perf_counter()
  grad_c = grad.lower(params, x).compile()
  compile_s = time.perf_counter() - t0
  fwd_c = fwd.lower(params, x).compile()
  return Impl(
    name,
    lambda: _block(fwd_c(params, x)),
    lambda: _block(grad_c(params, x)),
    compile_s,
  )


def lstm_jax_impl(shape, impl="auto", name=None, **kwargs):
  b, t, i, h = shape
  model = lstm_jax.LSTM(h, impl=impl, **kwargs)
  x = jax.random.normal(jax.random.key(0), (b, t, i))
  params = model.init(jax.random.key(1), x)
  return _jax_impl(
    name or f"lstm_jax ({impl})", lambda p, x: model.apply(p, x)[0], params, x
  )


def flax_impl(shape):
  b, t, i, h = shape
  model = nn.RNN(nn.OptimizedLSTMCell(h))
  x = jax.random.normal(jax.random.key(0), (b, t, i))
  params = model.init(jax.random.key(1), x)
  return _jax_impl("flax OptimizedLSTMCell", model.apply, params, x)


_SKIPPED: set[str] = set()


def _skip(row: str, why: str) -> None:
  """Says once per run why a peer's row is missing from the tables."""
  if row not in _SKIPPED:
    _SKIPPED.add(row)
    print(f"note: no {row} row: {why}", flush=True)


def keras_impl(shape):
  try:
    import keras
  except Exception as e:  # noqa: BLE001 (not installed, or installed without a backend)
    _skip("keras", f"keras does not import ({e}); pip install -e '.[bench]' adds it")
    return None
  if keras.backend.backend() != "jax":
    _skip("keras", f"its backend is {keras.backend.backend()!r}, not 'jax'")
    return None
  b, t, i, h = shape
  layer = keras.layers.LSTM(h, return_sequences=True)
  layer.build((b, t, i))
  trainable = [v.value for v in layer.trainable_variables]
  fixed = [v.value for v in layer.non_trainable_variables]
  x = jax.random.normal(jax.random.key(0), (b, t, i))

  def apply(tv, x):
    return layer.stateless_call(tv, fixed, x)[0]

  return _jax_impl(f"keras {keras.__version__} LSTM", apply, trainable, x)


def matmul_bound_impl(shape, chunk=16):
  """The LSTM's matmul FLOPs with no recurrence, no gates and no big buffers.

  Forward: `[x_t, h_t] @ [w_ih; w_hh]` for all steps; backward adds
  `d_gates @ w_hh^T` and the weight gradient `[x, h]^T @ d_gates` (and
  `d_gates @ w_ih^T` with --input-grad). The steps are grouped `chunk` at a
  time into [chunk * B, .] matmuls inside a loop, so no [T, B, 4H] array is
  materialised: an upper bound for any LSTM on this machine.
  """
  b, t, i, h = shape
  chunk = math.gcd(chunk, t)
  n = t // chunk
  k = jax.random.split(jax.random.key(0), 3)
  xh = jax.random.normal(k[0], (n, chunk * b, i + h))
  w = jax.random.normal(k[1], (i + h, 4 * h)) / (i + h) ** 0.5

  @jax.jit
  def fwd(xh, w):
    def body(acc, xc):
      return acc + jnp.sum(xc @ w, axis=0), None

    return jax.lax.scan(body, jnp.zeros((4 * h,)), xh)[0]

  @jax.jit
  def fwdbwd(xh, w):
    w_hh_t = w[i:].T
    w_ih_t = w[:i].T

    def body(acc, xc):
      dw, dsum = acc
      g = xc @ w  # stands in for d_gates (same shape)
      d = jnp.sum(g @ w_hh_t, axis=0)
      if INPUT_GRAD:
        d = d + jnp.sum(g @ w_ih_t)
      return (dw + xc.T @ g, dsum + d), None

    init = (jnp.zeros_like(w), jnp.zeros((h,)))
    return jax.lax.scan(body, init, xh)[0]

  fwd_c, fwdbwd_c = fwd.lower(xh, w).compile(), fwdbwd.lower(xh, w).compile()
  return Impl(
    "matmul-only bound",
    lambda: _block(fwd_c(xh, w)),
    lambda: _block(fwdbwd_c(xh, w)),
  )


def torch_impl(shape, threads):
  try:
    import torch
  except ImportError as e:
    _skip("torch", f"torch does not import ({e}); pip install -e '.[bench]' adds it")
    return None
  torch.set_num_threads(threads)
  b, t, i, h = shape
  lstm = torch.nn.LSTM(i, h, batch_first=True)
  x = torch.randn(b, t, i)
  xg = x.clone().requires_grad_(INPUT_GRAD)

  def fwd():
    with torch.no_grad():
      return lstm(x)[0]

  def fwdbwd():
    lstm.zero_grad(set_to_none=True)
    xg.grad = None
    lstm(xg)[0].sum().backward()

  return Impl(f"torch {torch.__version__.split('+')[0]} nn.LSTM", fwd, fwdbwd)


# Wall-clock time by default; `--cpu-time` switches to this process's CPU time,
# which a busy machine disturbs much less (meaningful with --threads 1 only).
CLOCK = time.perf_counter


def _time_once(fn, min_s):
  """Seconds per call: calls `fn` until `min_s` has passed (at least once)."""
  n, t0 = 0, CLOCK()
  while True:
    fn()
    n += 1
    elapsed = CLOCK() - t0
    if elapsed >= min_s:
      return elapsed / n


def measure(impls, rounds, min_s, warmup=2):
  """{name: (fwd seconds, fwdbwd seconds)}, medians over interleaved rounds."""
  for im in impls:
    for _ in range(warmup):
      im.fwd(), im.fwdbwd()
  times = {im.name: ([], []) for im in impls}
  for _ in range(rounds):
    for im in impls:
      times[im.name][0].append(_time_once(im.fwd, min_s))
      times[im.name][1].append(_time_once(im.fwdbwd, min_s))
  return {
    k: (statistics.median(f), statistics.median(b)) for k, (f, b) in times.items()
  }


def compile_growth(b, i, h, lengths=(64, 1024)):
  """Compile seconds of lstm_jax's default fwd+bwd at each sequence length."""
  out = {}
  for t in lengths:
    model = lstm_jax.LSTM(h)
    x = jnp.zeros((b, t, i))
    params = jax.eval_shape(model.init, jax.random.key(0), x)
    grad = jax.jit(
      jax.grad(lambda p, x: jnp.sum(model.apply(p, x)[0]), argnums=(0, 1))  # noqa: B023
    )
    t0 = time.perf_counter()
    grad.lower(params, x).compile()
    out[t] = time.perf_counter() - t0
  return out


def build(shape, threads, skip):
  makers = [
    ("lstm_jax", lambda: lstm_jax_impl(shape)),
    ("reference", lambda: lstm_jax_impl(shape, impl="reference")),
    ("flax", lambda: flax_impl(shape)),
    ("keras", lambda: keras_impl(shape)),
    ("torch", lambda: torch_impl(shape, threads)),
    ("bound", lambda: matmul_bound_impl(shape)),
  ]
  impls = []
  for key, make in makers:
    if key not in skip:
      im = make()
      if im is not None:
        impls.append(im)
  return impls


def report(shape, impls, results):
  b, t, i, h = shape
  tokens = b * t
  print(f"\n## B{b} T{t} I{i} H{h}  (tokens/s, median)\n")
  print(
    "| implementation | forward | fwd+bwd | fwd+bwd vs torch | fwd+bwd vs flax "
    "| compile s |"
  )
  print("|---|---:|---:|---:|---:|---:|")
  ref = {}
  for im in impls:
    if im.name.startswith("torch"):
      ref["torch"] = results[im.name][1]
    if im.name.startswith("flax"):
      ref["flax"] = results[im.name][1]
  for im in impls:
    f, fb = results[im.name]
    ratios = [f"{ref[k] / fb:.2f}x" if k in ref else "-" for k in ("torch", "flax")]
    cs = "-" if im.compile_s is None else f"{im.compile_s:.2f}"
    print(
      f"| {im.name} | {tokens / f:,.0f} | {tokens / fb:,.0f} | {ratios[0]} "
      f"| {ratios[1]} | {cs} |"
    )
  sys.stdout.flush()


def _single_core(threads):
  """`--threads 1`: one XLA thread and this process pinned to one CPU.

  Must run before the first JAX computation (which creates XLA's CPU client).
  YNNPACK dots ignore the XLA thread flags, so the pinning is what makes it one
  core; with `--cpu-time` the result is then robust to other load.
  """
  if threads != 1:
    return
  os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "")
    + " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
  )
  if hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true", help="3 rounds, short timings")
  parser.add_argument(
    "--shapes",
    nargs="+",
    default=None,
    help="B,T,I,H per shape (default: the three standard shapes)",
  )
  parser.add_argument("--rounds", type=int, default=None)
  parser.add_argument(
    "--skip",
    nargs="*",
    default=(),
    choices=("lstm_jax", "reference", "flax", "keras", "torch", "bound"),
  )
  parser.add_argument("--no-compile-growth", action="store_true")
  parser.add_argument(
    "--input-grad", action="store_true", help="fwd+bwd also returns d inputs"
  )
  parser.add_argument(
    "--cpu-time",
    action="store_true",
    help="time with process CPU time (robust to a busy machine; use --threads 1)",
  )
  parser.add_argument(
    "--threads",
    type=int,
    default=None,
    help="PyTorch threads (default: all CPUs); 1 also makes XLA single-threaded",
  )
  args = parser.parse_args(argv)
  global INPUT_GRAD, CLOCK
  _single_core(args.threads)
  INPUT_GRAD = args.input_grad
  if args.cpu_time:
    CLOCK = time.process_time
  shapes = SHAPES
  if args.shapes:
    shapes = [tuple(int(v) for v in s.split(",")) for s in args.shapes]
  rounds = args.rounds or (3 if args.quick else 7)
  min_s = 0.05 if args.quick else 0.2
  threads = args.threads or os.cpu_count() or 1
  print(
    f"jax {jax.__version__} ({jax.default_backend()}), {threads} CPUs, "
    f"{rounds} rounds, float32, load average {os.getloadavg()[0]:.1f}"
  )
  for shape in shapes:
    impls = build(shape, threads, set(args.skip))
    results = measure(impls, rounds, min_s, warmup=1 if args.quick else 2)
    report(shape, impls, results)
  if not args.no_compile_growth:
    b, _, i, h = shapes[0]
    growth = compile_growth(b, i, h)
    print(
      f"\nlstm_jax (auto) fwd+bwd compile time, B{b} I{i} H{h}: "
      + ", ".join(f"T={t}: {s:.2f} s" for t, s in growth.items())
    )
  print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
  main()
