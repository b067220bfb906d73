r"""Command line: sample text from a trained character LM.

  python -m lstm_jax.sample --workdir=runs/charlm --prompt="def " \
      --length=300 --temperature=0.8 [--seed=0] [--checkpoint=latest|best]

Opens the run read-only (`lstm_jax.runs.open_run`: safe while it is still
training) and generates with `lstm_jax.generate.sample_text`.
"""

from __future__ import annotations

import os
import sys

import jax
from absl import app, flags, logging

from lstm_jax import errors, generate, runs
from lstm_jax.data.text import Vocab
from lstm_jax.tasks.charlm import VOCAB_FILE


def _define_flags() -> None:
  # Defined only when run as a program: importing this module must not add
  # flags to the global registry.
  flags.DEFINE_string("workdir", None, "Directory of a training run.", required=True)
  flags.DEFINE_string("prompt", "The ", "Text to continue (non-empty).")
  flags.DEFINE_integer("length", 300, "Characters to generate.")
  flags.DEFINE_float("temperature", 0.8, "0 = greedy (argmax).")
  flags.DEFINE_integer("seed", 0, "Sampling seed.")
  flags.DEFINE_enum("checkpoint", "latest", ["latest", "best"], "Which checkpoint.")


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  f = flags.FLAGS
  if not f["verbosity"].present:
    # As in `lstm_jax.main`: Orbax logs ~30 INFO lines per restore, and warns
    # on every read-only open; warnings of our own (a step skipped as
    # unreadable) still show. --verbosity=0 shows everything.
    logging.set_verbosity(logging.WARNING)
    logging.get_absl_logger().addFilter(
      lambda record: "is read only" not in record.getMessage()
    )
  try:
    if not os.path.isfile(os.path.join(f.workdir, VOCAB_FILE)):
      raise errors.LstmJaxError(
        f"{f.workdir} does not hold a trained char-LM run ({VOCAB_FILE} is "
        "missing); train one with `python -m lstm_jax.main "
        f"--config=experiments/charlm.py --workdir={f.workdir}`."
      )
    run = runs.open_run(f.workdir, f.checkpoint)
    vocab = Vocab(run.read_asset(VOCAB_FILE)["chars"])
    text = generate.sample_text(
      run.params,
      run.model,
      vocab,
      f.prompt,
      f.length,
      f.temperature,
      jax.random.key(f.seed),
    )
  except errors.LstmJaxError as e:
    sys.exit(f"error: {e}")
  print(f"# {f.workdir} step {run.step}, temperature {f.temperature}", file=sys.stderr)
  print(f.prompt + text)


if __name__ == "__main__":
  _define_flags()
  app.run(main)
