"""Tasks the trainer can run, looked up by `config.task` (see `tasks/base.py`)."""

from __future__ import annotations

import importlib
import pkgutil

from lstm_jax.errors import ConfigError
from lstm_jax.tasks.base import Datasets, Metrics, Task, TaskModule

__all__ = ["Datasets", "Metrics", "Task", "TaskModule", "available", "get_task"]

_REQUIRED = ("make_datasets", "make_model", "loss_and_metrics")
# Modules of this package that are parts of a task, not tasks.
_PARTS = ("base", "forecast_prep")


def available() -> list[str]:
  """Names of the task modules in this package."""
  return sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name not in _PARTS)


def get_task(name: str | None) -> Task:
  """The task `lstm_jax.tasks.<name>`, or the module at dotted path `name`.

  Raises:
    ConfigError: no such task, or the module lacks part of the interface.
  """
  if not name:
    raise ConfigError(f"config.task is unset; set it to one of {available()}")
  if name in available():
    module_name = f"lstm_jax.tasks.{name}"
  elif "." in name:
    module_name = name
  else:
    raise ConfigError(f"config.task = {name!r} is not a task; available: {available()}")
  try:
    module = importlib.import_module(module_name)
  except ModuleNotFoundError as e:
    if e.name is None or not module_name.startswith(e.name):
      raise  # the task module itself failed to import something: a bug
    raise ConfigError(
      f"config.task = {name!r}: no module {module_name!r} can be imported; "
      f"built-in tasks: {available()}"
    ) from e
  missing = [f for f in _REQUIRED if not callable(getattr(module, f, None))]
  if missing:
    raise ConfigError(f"task module {module_name} lacks {missing}")
  return Task.from_module(name, module)
