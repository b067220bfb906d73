r"""Command line: train an experiment config in a workdir.

  python -m lstm_jax.main --config=experiments/charlm.py --workdir=runs/charlm
  python -m lstm_jax.main --config=experiments/charlm.py:tiny --workdir=/tmp/t \
      --config.train.steps=100 --config.model.lstm.hidden_size=128

Running the same command again resumes the run. Exit status: 0 when the run
finished (or stopped early); 75 (`preemption.EXIT_PREEMPTED`) when SIGTERM or
Ctrl-C stopped it after saving a checkpoint (rerun to resume); 1 with one
`error: ...` line for a user error (bad config, bad data, a workdir holding
another run or in use by another trainer, a full or read-only disk); 130 after a second Ctrl-C (no
save; the earlier checkpoints are intact). This file is kept short: the logic
is in `lstm_jax.train`, importable from notebooks.
"""

import logging as logging_std
import sys

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from lstm_jax import distributed, errors, experiment, preemption, train

_CONFIG = config_flags.DEFINE_config_file(
  "config",
  None,
  "Experiment config file[:arg], e.g. experiments/charlm.py:tiny.",
  lock_config=True,
)
# ml_collections' own parser lets a missing file, a syntax error or a failing
# get_config surface later (or now) as a traceback; ours raises one
# ConfigError naming the file, the line and the error.
flags.FLAGS["config"].parser = experiment.ExperimentParser()
_WORKDIR = flags.DEFINE_string(
  "workdir", None, "Run directory (created; resumed if present)."
)
flags.mark_flags_as_required(["config", "workdir"])


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's parser, with a bad config file or unknown config key in one line."""
  try:
    return flags.FLAGS(argv)
  except errors.LstmJaxError as e:
    sys.exit(f"error: {e}")
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


class _QuietUserOsErrors(logging_std.Filter):
  """Drops the log records (with tracebacks) that Orbax's background save
  threads write for a full or read-only disk: `main` reports the same error
  once, as its `error:` line (a full disk printed 456 lines and 5 tracebacks)."""

  def filter(self, record: logging_std.LogRecord) -> bool:
    if record.exc_info and errors.os_error_message(record.exc_info[1]):
      return False
    return errors.os_error_message(Exception(record.getMessage())) is None


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not _WORKDIR.value:
    sys.exit("error: --workdir is empty; pass the run directory, e.g. --workdir=runs/x")
  if not flags.FLAGS["verbosity"].present:
    # Orbax logs every save at INFO; the progress bar and the end-of-run
    # report are the default output (--verbosity=0 shows the INFO log).
    logging.set_verbosity(logging.WARNING)
  logging_std.getLogger("absl").addFilter(_QuietUserOsErrors())
  errors.silence_orbax_unraisable()
  try:
    # Joins the other processes of a multi-host run; must come before the
    # first device query (the log line below is one).
    distributed.initialize(_CONFIG.value.parallel)
    logging.info(
      "JAX %s on %s: %s", jax.__version__, jax.default_backend(), jax.devices()
    )
    results = train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  except errors.LstmJaxError as e:
    sys.exit(f"error: {e}")
  except KeyboardInterrupt as e:
    print(f"error: interrupted ({e or 'SIGINT'}); not saved.", file=sys.stderr)
    sys.exit(130)
  except Exception as e:
    message = errors.os_error_message(e)
    if message is None:
      raise  # a bug: keep the traceback
    sys.exit(f"error: {message}")
  if results["stopped"] == "preempted":
    sys.exit(preemption.EXIT_PREEMPTED)


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)
