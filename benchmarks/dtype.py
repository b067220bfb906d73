"""Step time of the default char-LM in float32 and in bfloat16, on this machine.

Usage::

  python benchmarks/dtype.py               # 7 rounds of 5 steps per dtype
  python benchmarks/dtype.py --rounds 3 --steps 3
  python benchmarks/dtype.py --cpu-time    # process CPU time, not wall clock

The model and the training step are those of `experiments/charlm.py` (2 layers
of H=384, batch 64, T=128: forward, backward and the optimizer update, built by
`training.build` as the trainer builds them), once with `model.lstm.dtype =
"float32"` and once with "bfloat16". Both steps are compiled and warmed up
first; then each round times the two back to back (alternating which goes
first), so that a change in machine load hits both alike, and the median per
dtype is reported (wall clock, or with `--cpu-time` the process's CPU time
over all threads, which other jobs on a shared machine disturb less), with
their ratio, the CPU's bfloat16 flags and what
`dtype="auto"` chooses here (`lstm_jax/nn/dtypes.py`).

This is a benchmark, not a test: the numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax

from lstm_jax.nn import dtypes
from lstm_jax.training import build
from lstm_jax.training.steps import make_train_step

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMES = ("float32", "bfloat16")


def _charlm_config(dtype: str):
  path = os.path.join(ROOT, "experiments", "charlm.py")
  spec = importlib.util.spec_from_file_location("charlm_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config("")
  config.model.lstm.dtype = dtype
  return config


def _step(dtype: str):
  """A jitted train step of the default char-LM in `dtype`, its state, a
  batch, and the config."""
  config = _charlm_config(dtype)
  built = build.build(config)
  state = jax.jit(built.init_state)(jax.random.key(config.seed))
  step = jax.jit(
    make_train_step(
      built.model, built.task.loss_and_metrics, built.tx,
      token_metric=built.task.token_metric,
    ),
    donate_argnums=0,
  )  # fmt: skip
  return step, state, built.datasets.train_batch(0), config


def main(argv: list[str] | None = None) -> dict[str, float]:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--rounds", type=int, default=7)
  parser.add_argument("--steps", type=int, default=5, help="steps per timing")
  parser.add_argument("--cpu-time", action="store_true", help="process CPU time")
  args = parser.parse_args(argv)
  clock = time.process_time if args.cpu_time else time.perf_counter
  runs = {name: _step(name) for name in NAMES}
  states = {}
  for name, (step, state, batch, _) in runs.items():
    for _ in range(2):  # compile, then one warm step
      state, _, loss = step(state, batch)
    jax.block_until_ready(loss)
    states[name] = state
  times: dict[str, list[float]] = {name: [] for name in NAMES}
  for r in range(args.rounds):
    for name in NAMES if r % 2 == 0 else NAMES[::-1]:
      step, _, batch, _ = runs[name]
      state = states[name]
      start = clock()
      for _ in range(args.steps):
        state, _, loss = step(state, batch)
      jax.block_until_ready(loss)
      times[name].append((clock() - start) / args.steps)
      states[name] = state
  median = {name: statistics.median(t) for name, t in times.items()}
  config = runs["float32"][3]
  flags = sorted(dtypes.cpu_flags() & {"avx2", "avx512f", *dtypes.BF16_CPU_FLAGS})
  auto, reason = dtypes.auto_dtype()
  print(
    f"default char-LM train step ({config.model.lstm.num_layers} x "
    f"H={config.model.lstm.hidden_size}, B{config.data.batch_size} "
    f"T{config.data.seq_len}), median of {args.rounds} rounds of {args.steps} "
    f"steps, {'CPU time' if args.cpu_time else 'wall clock'}, "
    f"{jax.default_backend()}, {os.cpu_count()} CPUs"
  )
  print(f"CPU flags: {' '.join(flags) or '(none of avx2, avx512f, bf16)'}")
  for name in NAMES:
    print(f"  {name:9s} {median[name] * 1e3:8.1f} ms/step")
  ratio = median["bfloat16"] / median["float32"]
  print(f"  bfloat16 / float32 step time: {ratio:.2f}")
  fastest = min(NAMES, key=median.get)
  print(f'dtype "auto" chooses {auto} ({reason}); the faster here: {fastest}')
  return {**median, "ratio": ratio}


if __name__ == "__main__":
  main()
