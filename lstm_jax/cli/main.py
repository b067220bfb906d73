r"""Train an experiment: `python -m lstm_jax.main --config=... --workdir=...`.

Parses the experiment file and its `--config.key=value` overrides
(`lstm_jax.cli.experiment`), joins the other hosts of a multi-host run
(`lstm_jax.parallel.distributed`) and calls `train.train_and_evaluate`; a bad
config or data file ends with one error line and a non-zero exit.
"""

import logging as logging_std
import os
import sys

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from lstm_jax import errors
from lstm_jax.cli import common as cli
from lstm_jax.cli import experiment
from lstm_jax.parallel import distributed
from lstm_jax.training import train
from lstm_jax.workdir import orbax_compat, preemption

_CONFIG = config_flags.DEFINE_config_file(
  "config",
  None,
  "Experiment file, optionally with a variant: experiments/charlm.py:tiny.",
  lock_config=True,
)
# ml_collections' own parser lets a missing file, a syntax error or a failing
# get_config surface later (or now) as a traceback; ours raises one
# ConfigError naming the file, the line and the error.
flags.FLAGS["config"].parser = experiment.ExperimentParser()
_WORKDIR = flags.DEFINE_string(
  "workdir", None, "Run directory: created, or resumed if it holds this run."
)
flags.mark_flags_as_required(["config", "workdir"])


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's parser, with a bad config file or unknown config key in one line."""
  try:
    return flags.FLAGS(argv)
  except errors.LstmJaxError as e:
    cli.fail(str(e))
  except flags.Error as e:
    sys.exit(f"error: {e}. Pass --helpfull to see the flags.")
  except (KeyError, AttributeError) as e:  # ml_collections: no such config key
    while isinstance(e, (KeyError, AttributeError)) and e.args:
      e = e.args[0]  # unwrap to ml_collections' own message
    detail = str(e).replace("\n", ". ")
    overrides = " ".join(a for a in argv[1:] if a.startswith("--config."))
    sys.exit(
      f"error: unknown config key {detail} (in {overrides}); keys are declared in experiments/base.py (the trainer's) and in the experiment file (the task's)."
    )


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not _WORKDIR.value:
    sys.exit("error: --workdir is empty; pass the run directory, e.g. --workdir=runs/x")
  # The progress bar and the end-of-run report are the default output;
  # --verbosity=0 shows the INFO log (absl, Orbax, JAX).
  cli.quiet_logs()
  logging_std.getLogger("absl").addFilter(orbax_compat.QuietSaveThreadOsErrors())
  orbax_compat.silence_unraisable()
  try:
    # Joins the other processes of a multi-host run; must come before the
    # first device query (the log line below is one).
    distributed.initialize(_CONFIG.value.parallel)
    logging.info(
      "JAX %s on %s: %s", jax.__version__, jax.default_backend(), jax.devices()
    )
    results = train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  except errors.LstmJaxError as e:
    cli.fail(str(e))
  except KeyboardInterrupt as e:
    print(f"error: interrupted ({e or 'SIGINT'}); not saved.", file=sys.stderr)
    sys.exit(130)
  except Exception as e:
    message = orbax_compat.os_error_message(e, os.path.abspath(_WORKDIR.value))
    if message is None:
      raise  # a bug: keep the traceback
    cli.fail(message)
  if results["stopped"] == "preempted":
    sys.exit(preemption.EXIT_PREEMPTED)


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
