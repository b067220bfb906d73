r"""Train an experiment: `python -m lstm_jax.main --config=... --workdir=...`.

`--help` prints the user's page (`_help_page`: what the command does, the
experiments, overrides, resuming, an example per task). User errors (bad
config, bad data, a workdir holding another run) print one `error:` line and
exit 1. The training itself is `lstm_jax.train.train_and_evaluate`,
importable from notebooks.
"""

import sys

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from lstm_jax import cli, errors, train

_CONFIG = config_flags.DEFINE_config_file(
  "config",
  None,
  "Experiment file, optionally with a variant: experiments/charlm.py:tiny.",
  lock_config=True,
)
_WORKDIR = flags.DEFINE_string(
  "workdir", None, "Run directory: created, or resumed if it holds this run."
)
flags.mark_flags_as_required(["config", "workdir"])


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's parser, with an unknown config key reported in one line."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    sys.exit(f"error: {e}\nPass --helpfull to see the flags.")
  except (KeyError, AttributeError) as e:  # ml_collections: no such config key
    while isinstance(e, (KeyError, AttributeError)) and e.args:
      e = e.args[0]  # noqa: PLW2901 - unwrap to ml_collections' own message
    detail = str(e).replace("\n", ". ")
    overrides = " ".join(a for a in argv[1:] if a.startswith("--config."))
    sys.exit(
      f"error: unknown config key {detail} (in {overrides}); keys are declared in experiments/base.py (the trainer's) and in the experiment file (the task's)."
    )


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  # The progress bar and the end-of-run report are the default output;
  # --verbosity=0 shows the INFO log (absl, Orbax, JAX).
  cli.quiet_logs()
  logging.info(
    "JAX %s on %s: %s", jax.__version__, jax.default_backend(), jax.devices()
  )
  try:
    train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  except errors.LstmJaxError as e:
    sys.exit(f"error: {e}")


_USAGE = """\
usage: python -m lstm_jax.main --config=EXPERIMENT[:VARIANT] --workdir=DIR
                               [--config.KEY=VALUE ...] [--verbosity=0]

Trains an experiment in a run directory: a progress bar while it trains, an
evaluation (and a checkpoint) every train.eval_every steps, and a report at the
end (the char-LM prints a sample and its validation bits per character).
Metrics go to DIR/metrics.jsonl and TensorBoard events in DIR."""

_OVERRIDES = """\
Overrides: --config.KEY=VALUE, any number of them, e.g.
  --config.train.steps=2000 --config.model.lstm.hidden_size=512
  --config.data.path=my_corpus.txt
Each key is declared once, with its meaning, in experiments/base.py (the
trainer's: seed, optim.*, train.*, checkpoint.*, parallel.*) or in the
experiment file (the task's: data.*, model.*, ...). A misspelt key or a value
of the wrong type is an error naming the key.

Resuming: the workdir is the run's identity. Running the same command again
resumes from the latest good checkpoint and ends with the same parameters as
an uninterrupted run; a different config or corpus in an existing workdir is
refused, naming what differs (a moved corpus file may be resumed from)."""


def _help_page() -> str:
  return "\n\n".join(
    [
      _USAGE,
      cli.experiments_overview(),
      _OVERRIDES,
      "Flags:\n" + cli.flag_lines(["config", "workdir"]) + cli.COMMON_FLAGS,
    ]
  )


if __name__ == "__main__":
  cli.run(main, _help_page, flags_parser=_parse_flags)
