"""Peak memory of loading a big character corpus, against its size.

Usage::

  python benchmarks/corpus_memory.py [--mb 50 200] [--unicode] [--repo DIR]

For each size, writes a seeded random ASCII text (30 letters,
spaces and newlines; with --unicode, two of the letters become "é" and "∑")
to a temporary file, then in a fresh subprocess builds the char-LM datasets
exactly as training does (`tasks.charlm.make_datasets`: read, hash, vocabulary,
encoding, splits) and reads a train batch and an eval batch. It prints the
process's peak RSS (`ru_maxrss`) above its RSS right before loading, divided
by the file size. Figures: benchmarks/README.md ("Corpus memory").
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_CHILD = r"""
import resource, sys, time
sys.path.insert(0, {repo!r})
from experiments import charlm
from lstm_jax.tasks import charlm as task

def rss_mb():
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith("VmRSS:"):
        return int(line.split()[1]) / 1024

config = charlm.get_config()
config.data.path = {path!r}
config.sample.length = 0  # the prompt "The " may not be in a --unicode corpus
before = rss_mb()
start = time.perf_counter()
datasets = task.make_datasets(config)
datasets.train_batch(0)
next(iter(datasets.eval_batches()))
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(before, peak, rss_mb(), seconds, datasets.info["vocab_size"])
"""


def _write_corpus(path: str, mb: int, unicode: bool) -> None:
  rng = np.random.default_rng(0)
  # 30 letters, space (1 in 6) and newline (1 in 100): 32 distinct characters.
  alphabet = np.frombuffer(b"abcdefghijklmnopqrstuvwxyzTHE. \n", np.uint8)
  p = np.full(len(alphabet), (1 - 1 / 6 - 1 / 100) / 30)
  p[-2], p[-1] = 1 / 6, 1 / 100
  with open(path, "wb") as f:
    for _ in range(mb):
      chunk = rng.choice(alphabet, size=1_000_000, p=p).tobytes()
      if unicode:  # one character in 1000 becomes a 2- or 3-byte one
        chunk = chunk.replace(b"T", "\u00e9".encode()).replace(b"H", "\u2211".encode())
      f.write(chunk)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--mb", type=int, nargs="+", default=[50, 200])
  parser.add_argument("--unicode", action="store_true")
  parser.add_argument(
    "--repo", default=REPO, help="checkout to measure (e.g. an older commit's)"
  )
  args = parser.parse_args()
  print("corpus MB | RSS before MB | peak MB | peak - before | ratio to file | s")
  for mb in args.mb:
    with tempfile.TemporaryDirectory() as tmp:
      path = os.path.join(tmp, "corpus.txt")
      _write_corpus(path, mb, args.unicode)
      size = os.path.getsize(path) / 2**20
      out = subprocess.run(
        [sys.executable, "-c", _CHILD.format(repo=args.repo, path=path)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
      ).stdout.split()
      before, peak, _, seconds, _ = map(float, out)
      print(
        f"{size:9.0f} | {before:13.0f} | {peak:7.0f} | {peak - before:13.0f} | "
        f"{(peak - before) / size:13.2f} | {seconds:.1f}"
      )


if __name__ == "__main__":
  main()
