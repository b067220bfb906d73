r"""Sample text from a trained char-LM: `python -m lstm_jax.sample --workdir=...`.

Opens the run read-only (`lstm_jax.runs.reader.open_run`: safe while it is still
training) and generates with `lstm_jax.models.generate.sample_text`; `--help` prints
the user's page (`_USAGE` and the flags).
"""

from __future__ import annotations

import logging as logging_std
import os
import sys
from typing import Any

import jax
from absl import app, flags

from lstm_jax import errors
from lstm_jax.cli import common as cli
from lstm_jax.data.text import Vocab
from lstm_jax.models import generate
from lstm_jax.runs import reader
from lstm_jax.tasks.charlm import VOCAB_FILE
from lstm_jax.workdir import orbax_compat, rundir


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


def _read_vocab(workdir: str) -> list[str]:
  """The characters of `workdir`/vocab.json.

  Raises:
    errors.DataError: the file is not `{"chars": [distinct characters]}`.
  """
  path = os.path.join(workdir, VOCAB_FILE)
  chars: Any = rundir.read_json(path).get("chars")
  if (
    not isinstance(chars, list)
    or not all(isinstance(c, str) and len(c) == 1 for c in chars)
    or len(set(chars)) != len(chars)
  ):
    raise errors.DataError(
      f'{path} must hold {{"chars": [distinct single characters]}}; it is not '
      "the file training wrote."
    )
  return chars


def _check_vocab(chars: list[str], run: reader.Run) -> Vocab:
  """`chars` as a Vocab, if its size is the vocabulary the checkpoint was
  trained on (its embedding's rows); else `errors.DataError`."""
  path = os.path.join(run.workdir, VOCAB_FILE)
  trained = run.params["embed"]["embedding"].shape[0]
  if len(chars) != trained:
    raise errors.DataError(
      f"{path} has {len(chars)} characters but the checkpoint at step {run.step} "
      f"was trained on a vocabulary of {trained} (data.json says "
      f"{run.info.get('vocab_size')}); vocab.json belongs to another run."
    )
  return Vocab(chars)


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's parser, with a bad flag value in one `error:` line."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    sys.exit(f"error: {e}. Pass --helpfull to see the flags.")


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  cli.quiet_logs()
  if not flags.FLAGS["verbosity"].present:
    logging_std.getLogger("absl").addFilter(orbax_compat.ReadOnlyNoticeFilter())
  orbax_compat.silence_unraisable()
  f = flags.FLAGS
  try:
    # Checked before the (slow) restore; generate.sample_text checks them too.
    if f.length < 0:
      raise errors.ConfigError(f"--length must be >= 0, got {f.length}")
    if not f.temperature >= 0:  # also catches NaN
      raise errors.ConfigError(f"--temperature must be >= 0, got {f.temperature}")
    if not f.prompt:
      raise errors.ConfigError("--prompt is empty; give at least one character.")
    if not f.workdir:
      raise errors.ConfigError("--workdir is empty; pass a training run's directory.")
    if not os.path.isfile(os.path.join(f.workdir, VOCAB_FILE)):
      raise errors.LstmJaxError(
        f"{f.workdir} does not hold a trained char-LM run ({VOCAB_FILE} is "
        "missing); train one with `python -m lstm_jax.main "
        f"--config=experiments/charlm.py --workdir={f.workdir}`."
      )
    chars = _read_vocab(f.workdir)
    run = reader.open_run(f.workdir, f.checkpoint)
    vocab = _check_vocab(chars, run)
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
    cli.fail(str(e))
  print(f"# {f.workdir} step {run.step}, temperature {f.temperature}", file=sys.stderr)
  print(f.prompt + text)


if __name__ == "__main__":
  _define_flags()
  cli.run(main, _help_page, flags_parser=_parse_flags)
