"""Population mode's throughput: K trials in one vmapped step against the same
K trials trained one after another with the ordinary step, same process.

Usage::

  python benchmarks/population.py              # K = 1, 4, 16; 20 timed steps
  python benchmarks/population.py --steps 10 --ks 1,4

The model is the tiny char-LM (`experiments/charlm.py:tiny`: 1 x 64 LSTM,
batch 16 x 32 characters, float32). Members differ in learning rate, weight
decay, dropout and seed. For each K it reports member-steps/s (training
steps of one trial per second, summed over the trials) of

  one by one   the ordinary jitted train step (`steps.make_train_step` with
               `optim.make_optimizer`), trials run one after another; every
               trial has the same shapes, so this rate does not depend on K
               and is measured on the first min(K, 2) trials (each compiles
               its own step: its learning rate is a constant of it, a cost
               not counted here);
  population   one vmapped step over the K stacked members.

Compilation is excluded (every step is compiled and run twice first); the
median of `--rounds` rounds is reported, the two kinds alternating in each
round so that changes in machine load hit both. A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from experiments import charlm
from lstm_jax import tasks
from lstm_jax.sweep import population
from lstm_jax.sweep import spec as sweep_spec
from lstm_jax.training import optim, steps


def _trials(k: int):
  config = charlm.get_config("tiny")
  members = [
    {
      "optim.learning_rate": 1e-2 * (0.7**i),
      "optim.weight_decay": 0.05 * (i % 3),
      "model.lstm.dropout": 0.1 * (i % 4),
      "seed": i,
    }
    for i in range(k)
  ]
  taken: set[str] = set()
  return [sweep_spec.make_trial(config, m, taken) for m in members]


def _ordinary(trial):
  cfg = trial.config
  task = tasks.get_task(cfg.task)
  data = task.make_datasets(cfg)
  model = task.make_model(cfg, data.info)
  tx, _ = optim.make_optimizer(cfg.optim, cfg.train.steps)
  state = steps.create_train_state(
    model, tx, cfg, data.train_batch(0), jax.random.key(cfg.seed)
  )
  step = jax.jit(
    steps.make_train_step(model, task.loss_and_metrics, tx), donate_argnums=0
  )
  batch = jax.tree.map(jnp.asarray, data.train_batch(0))
  return step, state, batch


def _time(fn, n: int) -> float:
  start = time.perf_counter()
  for _ in range(n):
    fn()
  return time.perf_counter() - start


def bench(k: int, n_steps: int, rounds: int) -> dict[str, float]:
  trials = _trials(k)
  ordinary = [_ordinary(t) for t in trials[:2]]
  states = [o[1] for o in ordinary]
  pop = population.build(trials)
  pstate = population.stack([pop["init"](i) for i in range(k)])
  pbatch = population.stack([d.train_batch(0) for d in pop["datasets"]])
  keep = jnp.asarray(population.keep_probs(trials))
  active = jnp.ones(k, bool)
  box = {"p": pstate}

  def one_by_one():
    for i, (step, _, batch) in enumerate(ordinary):
      for _ in range(n_steps):
        states[i], _, loss = step(states[i], batch)
      loss.block_until_ready()

  def vmapped():
    for _ in range(n_steps):
      box["p"], _, loss = pop["train_step"](box["p"], pbatch, keep, active)
    loss.block_until_ready()

  for fn in (one_by_one, vmapped):  # compile and warm up
    _time(fn, 1)
  seq, vec = [], []
  for _ in range(rounds):
    seq.append(_time(one_by_one, 1))
    vec.append(_time(vmapped, 1))
  seq_rate = len(ordinary) * n_steps / statistics.median(seq)
  vec_rate = k * n_steps / statistics.median(vec)
  return {
    "k": k,
    "one_by_one": seq_rate,
    "population": vec_rate,
    "speedup": vec_rate / seq_rate,
  }


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--ks", default="1,4,16")
  parser.add_argument("--steps", type=int, default=20)
  parser.add_argument("--rounds", type=int, default=3)
  args = parser.parse_args()
  print(f"JAX {jax.__version__} on {jax.default_backend()}, {os.cpu_count()} CPUs")
  print("| K | one by one (member-steps/s) | population (member-steps/s) | speed-up |")
  print("|---|---|---|---|")
  for k in (int(x) for x in args.ks.split(",")):
    r = bench(k, args.steps, args.rounds)
    print(
      f"| {k} | {r['one_by_one']:.1f} | {r['population']:.1f} | {r['speedup']:.2f}x |"
    )


if __name__ == "__main__":
  main()
