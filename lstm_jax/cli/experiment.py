"""Loading an experiment config file (`path/to/config.py[:arg]`) for the CLI.

`ExperimentParser` replaces ml_collections' parser of `--config`: that one
defers a missing file to the first attribute access (a traceback inside the
trainer), lets a syntax error or an exception of the file escape as a
traceback, and wraps a failing `get_config(arg)` (an unknown variant) in a
message that holds the whole traceback. Here each of those is one
`errors.ConfigError` naming the file, the line and what went wrong.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import traceback
from typing import Any

from absl import flags

from lstm_jax.errors import ConfigError


def _line_in(exc: BaseException, path: str) -> str:
  """`path:LINE` of the innermost frame of `exc` inside `path` (else `path`)."""
  target = os.path.abspath(path)
  line = None
  for frame in traceback.extract_tb(exc.__traceback__):
    if os.path.abspath(frame.filename) == target:
      line = frame.lineno
  return f"{path}:{line}" if line else path


def _describe(exc: BaseException) -> str:
  text = str(exc).strip().splitlines()
  return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _package_root(path: str) -> str | None:
  """The directory above the packages holding `path`, if it is in one.

  `experiments/charlm.py` does `from experiments import base`; that works
  from the repository root only, unless the directory that holds
  `experiments/` is importable. So `--config=/abs/repo/experiments/x.py`
  run from anywhere else finds its siblings too.
  """
  directory = os.path.dirname(os.path.abspath(path))
  if not os.path.isfile(os.path.join(directory, "__init__.py")):
    return None
  while os.path.isfile(os.path.join(directory, "__init__.py")):
    directory = os.path.dirname(directory)
  return directory


def load(spec: str) -> Any:
  """The config of `spec` = `file.py` or `file.py:arg` (`get_config(arg)`).

  Raises:
    ConfigError: the file is missing, not a file, does not compile, raises
      while it is imported, lacks `get_config`, or `get_config` raises or
      returns None; the message names the file (and line).
  """
  path, *arg = spec.split(":", 1)
  if not path:
    raise ConfigError(
      "--config is empty; pass a config file, e.g. experiments/charlm.py"
    )
  if not os.path.exists(path):
    raise ConfigError(f"config file {path} does not exist (--config={spec}).")
  if not os.path.isfile(path):
    raise ConfigError(f"--config={spec}: {path} is not a file.")
  module_spec = importlib.util.spec_from_file_location("experiment_config", path)
  if module_spec is None or module_spec.loader is None:
    raise ConfigError(f"config file {path} cannot be imported (is it a .py file?).")
  module = importlib.util.module_from_spec(module_spec)
  root = _package_root(path)
  if root is not None and root not in map(os.path.abspath, sys.path):
    sys.path.insert(0, root)
  try:
    module_spec.loader.exec_module(module)
  except SyntaxError as e:
    raise ConfigError(
      f"config file {path}:{e.lineno}: {type(e).__name__}: {e.msg}"
    ) from None
  except Exception as e:  # noqa: BLE001 - whatever the file raises is its error
    raise ConfigError(
      f"config file {_line_in(e, path)} raised while being imported: {_describe(e)}"
    ) from None
  get_config = getattr(module, "get_config", None)
  if not callable(get_config):
    raise ConfigError(f"config file {path} defines no get_config() function.")
  call = f"get_config({arg[0]!r})" if arg else "get_config()"
  try:
    config = get_config(*arg)
  except Exception as e:  # noqa: BLE001 - e.g. an unknown variant
    raise ConfigError(f"{_line_in(e, path)}: {call} failed: {_describe(e)}") from None
  if config is None:
    raise ConfigError(f"{path}: {call} returned None (a missing return?).")
  return config


class ExperimentParser(flags.ArgumentParser):
  """`--config` parser: `load`, then lock the config (misspelt keys fail)."""

  def parse(self, argument: str) -> Any:
    config = load(argument)
    if callable(getattr(config, "lock", None)):
      config.lock()
    return config

  def flag_type(self) -> str:
    return "config object"
