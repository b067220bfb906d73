r"""Sample text from a trained char-LM: `python -m lstm_jax.sample --workdir=...`.

Opens the run read-only (`lstm_jax.runs.open_run`: safe while it is still
training) and generates with `lstm_jax.generate.sample_text`; `--help` prints
the user's page (`_USAGE` and the flags).
"""

from __future__ import annotations

import os
import sys

import jax
from absl import app, flags

from lstm_jax import cli, errors, generate, runs
from lstm_jax.data.text import Vocab
from lstm_jax.tasks.charlm import VOCAB_FILE


def _define_flags() -> None:
  # Defined only when run as a program: importing this module must not add
  # flags to the global registry.
  flags.DEFINE_string(
    "workdir", None, "Run directory of a char-LM training run.", required=True
  )
  flags.DEFINE_string("prompt", "The ", "Text to continue (corpus characters).")
  flags.DEFINE_integer("length", 300, "Characters to generate.")
  flags.DEFINE_float("temperature", 0.8, "Softmax temperature; 0 = greedy.")
  flags.DEFINE_integer("seed", 0, "Sampling seed (same seed, same text).")
  flags.DEFINE_enum(
    "checkpoint", "latest", ["latest", "best"], "Which checkpoint to sample."
  )


_USAGE = """\
usage: python -m lstm_jax.sample --workdir=DIR [--prompt=TEXT] [--length=N]
                                 [--temperature=T] [--seed=S]
                                 [--checkpoint=latest|best] [--verbosity=0]

Continues a prompt with a character language model trained by
`python -m lstm_jax.main --config=experiments/charlm.py --workdir=DIR`. The run
is opened read-only, so it can be sampled while it is still training. The
text goes to stdout, the step and temperature to stderr.

Example:
  python -m lstm_jax.sample --workdir=runs/charlm --prompt="def " --length=300 --temperature=0.8"""


def _help_page() -> str:
  names = ["workdir", "prompt", "length", "temperature", "seed", "checkpoint"]
  return f"{_USAGE}\n\nFlags:\n{cli.flag_lines(names)}{cli.COMMON_FLAGS}"


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  cli.quiet_logs()
  f = flags.FLAGS
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
  cli.run(main, _help_page)
