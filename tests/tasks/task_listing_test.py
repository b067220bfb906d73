"""Which modules of `lstm_jax/tasks/` are tasks: those that provide the
interface of `tasks/base.py`, whether a module or a package; the parts of a
task (a package's submodules, a helper module) are never listed."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from lstm_jax import tasks
from lstm_jax.errors import ConfigError

TASKS_DIR = Path(tasks.__file__).parent
_INTERFACE = """
def make_datasets(config):
  return None


def make_model(config, info):
  return None


def loss_and_metrics(outputs, batch):
  return 0.0, {}
"""


def test_the_built_in_tasks_are_listed_and_their_parts_are_not():
  assert tasks.available() == [
    "adding", "charlm", "copy_memory", "forecast", "seq2seq", "ucr", "wordlm",
  ]  # fmt: skip
  # A package is one task: its parts (forecast/settings.py ...) are no entry.
  assert (TASKS_DIR / "forecast" / "__init__.py").is_file()
  assert (TASKS_DIR / "forecast" / "settings.py").is_file()
  assert (TASKS_DIR / "base.py").is_file()
  assert "base" not in tasks.available() and "settings" not in tasks.available()
  with pytest.raises(ConfigError, match="'base' is not a task; available: .*charlm"):
    tasks.get_task("base")


@pytest.fixture
def planted(tmp_path, monkeypatch):
  """A task package whose `__init__.py` re-exports the interface from a part,
  and a flat helper module, in a folder added to the package's path."""
  package = tmp_path / "planted_task"
  package.mkdir()
  (package / "parts.py").write_text(_INTERFACE)
  (package / "__init__.py").write_text(
    "from lstm_jax.tasks.planted_task.parts import (\n"
    "  loss_and_metrics, make_datasets, make_model,\n)\n"
  )
  (tmp_path / "planted_helper.py").write_text("def make_model(config, info):\n  pass\n")
  monkeypatch.setattr(tasks, "__path__", [*tasks.__path__, str(tmp_path)])
  yield
  for name in list(sys.modules):
    if name.startswith(
      ("lstm_jax.tasks.planted_task", "lstm_jax.tasks.planted_helper")
    ):
      del sys.modules[name]


def test_a_package_exposing_the_interface_is_a_task(planted):
  assert "planted_task" in tasks.available()
  assert "parts" not in tasks.available()
  task = tasks.get_task("planted_task")
  assert task.name == "planted_task" and task.make_model(None, {}) is None


def test_a_module_with_part_of_the_interface_is_not_a_task(planted):
  assert "planted_helper" not in tasks.available()
  with pytest.raises(ConfigError, match="'planted_helper' is not a task"):
    tasks.get_task("planted_helper")
  # Named by its dotted path, the module is imported and found incomplete.
  with pytest.raises(
    ConfigError, match=r"lacks \['make_datasets', 'loss_and_metrics'\]"
  ):
    tasks.get_task("lstm_jax.tasks.planted_helper")
