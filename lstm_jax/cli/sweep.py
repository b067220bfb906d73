r"""`python -m lstm_jax.sweep`: the command line of the sweep runner.

  python -m lstm_jax.sweep --config=experiments/charlm.py:tiny \
      --sweep=experiments/sweeps/charlm_lr.py --workdir=runs/sweep

What a sweep does (trials, resuming, early stopping, shards, Optuna) is
described in `lstm_jax.sweep.runner`, which `--help` prints.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from lstm_jax import errors
from lstm_jax.cli import common as cli
from lstm_jax.cli import experiment
from lstm_jax.sweep import runner
from lstm_jax.sweep import spec as sweep_spec
from lstm_jax.sweep import table as sweep_table


def _parse_shard(text: str) -> tuple[int, int]:
  try:
    index, count = (int(x) for x in text.split("/"))
  except ValueError:
    index, count = -1, 0
  if not 0 <= index < count:
    raise errors.ConfigError(f"--shard must be i/n with 0 <= i < n, got {text!r}")
  return index, count


def _define_flags() -> None:
  # Only when run as a program: importing this module defines no flags (so
  # it can share a process with lstm_jax.cli.main's).
  global _CONFIG, _SWEEP, _WORKDIR, _SHARD, _TABLE_ONLY
  _CONFIG = config_flags.DEFINE_config_file(
    "config",
    None,
    "Experiment config file[:arg], e.g. experiments/charlm.py:tiny.",
    lock_config=True,
  )
  # As in lstm_jax.cli.main: a bad file is one error line, and a config given
  # by path from outside the clone finds its `experiments` package.
  flags.FLAGS["config"].parser = experiment.ExperimentParser()
  _SWEEP = flags.DEFINE_string(
    "sweep", None, "Sweep file: experiments/sweeps/<name>.py."
  )
  _WORKDIR = flags.DEFINE_string(
    "workdir", None, "Sweep directory (one subdirectory per trial)."
  )
  _SHARD = flags.DEFINE_string(
    "shard", "0/1", "i/n: run trials i, i+n, ... (grid and random)."
  )
  _TABLE_ONLY = flags.DEFINE_bool(
    "table_only", False, "Only (re)write the results table."
  )
  flags.mark_flags_as_required(["config", "sweep", "workdir"])


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # as lstm_jax.cli.main: no Orbax INFO
  try:
    spec = sweep_spec.load_sweep(_SWEEP.value)
    metric, mode = runner.metric_and_mode(_CONFIG.value, spec)
    if _TABLE_ONLY.value:
      if not os.path.isdir(_WORKDIR.value):
        raise errors.ConfigError(f"--table_only: no sweep directory {_WORKDIR.value}")
      rows = sweep_table.write_table(_WORKDIR.value, metric, mode)
    else:
      rows = runner.run(_CONFIG.value, spec, _WORKDIR.value, _parse_shard(_SHARD.value))
  except errors.LstmJaxError as e:
    sys.exit(f"error: {e}")
  print(open(os.path.join(_WORKDIR.value, "results.md"), encoding="utf-8").read())  # noqa: SIM115
  del rows


def _parse_flags(argv: list[str]) -> list[str]:
  try:
    return flags.FLAGS(argv)
  except errors.LstmJaxError as e:  # a bad --config file: one line, as in main
    cli.fail(str(e))
  except (KeyError, AttributeError) as e:  # ml_collections: no such config key
    overrides = " ".join(a for a in argv[1:] if a.startswith("--config."))
    sys.exit(f"error: unknown config key {e} (in {overrides})")


def _help_page() -> str:
  sweeps = cli.experiments_dir()
  files = sorted(sweeps.glob("sweeps/*.py")) if sweeps else []
  listed = "\n".join(
    f"  experiments/sweeps/{p.name}" for p in files if p.name != "__init__.py"
  )
  return "\n\n".join(
    [
      "usage: python -m lstm_jax.sweep --config=FILE[:VARIANT] --sweep=FILE "
      "--workdir=DIR [--config.KEY=VALUE ...] [--shard=i/n] [--table_only]",
      runner.__doc__.strip(),
      "Sweep files (a sweep file sets the trials' --config.KEY values):\n"
      + (listed or "  (none found: run from a clone, experiments/sweeps/)"),
      cli.experiments_overview(),
      "Overrides: --config.KEY=VALUE (any number, e.g. --config.train.steps=20)\n"
      "apply to every trial; the keys are declared in experiments/base.py and\n"
      "the experiment file. `python -m lstm_jax.main --help` explains them.",
      "Flags:\n"
      + cli.flag_lines(["config", "sweep", "workdir", "shard", "table_only"])
      + cli.COMMON_FLAGS,
    ]
  )


if __name__ == "__main__":
  _define_flags()
  cli.run(main, _help_page, flags_parser=_parse_flags)
