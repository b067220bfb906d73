"""Tasks the trainer can run, looked up by `config.task` (see `tasks/base.py`)."""

from __future__ import annotations

import importlib
import pkgutil

from lstm_jax.errors import ConfigError
from lstm_jax.tasks.base import Datasets, Metrics, Task

__all__ = ["Datasets", "Metrics", "Task", "available", "get_task"]

_FUNCTIONS = ("make_datasets", "make_model", "loss_and_metrics", "report")


def available() -> list[str]:
  """Names of the task modules in this package."""
  return sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name != "base")


def get_task(name: str) -> Task:
  """The task module `lstm_jax.tasks.<name>`.

  Raises:
    ConfigError: no such task, or the module lacks part of the interface.
  """
  if name not in available():
    raise ConfigError(f"config.task = {name!r} is not a task; available: {available()}")
  module = importlib.import_module(f"lstm_jax.tasks.{name}")
  missing = [f for f in _FUNCTIONS if not callable(getattr(module, f, None))]
  if missing:
    raise ConfigError(f"task module lstm_jax.tasks.{name} lacks {missing}")
  return module
