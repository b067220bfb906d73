"""The layer order of `lstm_jax/`, declared once (`LAYERS`), checked on the code.

The import graph is read from the AST of every `lstm_jax/**/*.py`: module-level
and function-level imports, `import lstm_jax.x`, `from lstm_jax import x`,
`from lstm_jax.x import y`, relative imports, and the module names given as
literals to `runpy.run_module` / `importlib.import_module` (the `python -m`
shims). Each file belongs to a unit (a top-level package or module of
`lstm_jax/`, or one of the shims), and a unit may import only the units of
its own layer or of earlier ones; the unit graph has no cycle, nor has the
module graph. ARCHITECTURE.md states the same order between its `layers`
markers, and this test reads it from there.
"""

from __future__ import annotations

import ast
import re
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE = "lstm_jax"

# Inner to outer. A unit is a folder or module of lstm_jax/ ("lstm_jax" is the
# facade, lstm_jax/__init__.py; "sweep.__main__" the shim of
# `python -m lstm_jax.sweep`). A unit imports only units of earlier layers or
# of its own layer; ARCHITECTURE.md's "Layers" section lists the same order.
LAYERS: tuple[tuple[str, ...], ...] = (
  ("errors", "util"),  # leaves: error types, pytree paths, plots
  ("ops",),  # the pure LSTM: cell, reference scan, regularisation, softmax
  ("kernels",),  # the fast scans and the dispatcher `lstm_scan` above them
  ("nn",),  # Linen modules
  ("nnx", "models"),  # the NNX front end; task networks
  ("data", "baselines"),  # numpy batches; classical baselines
  ("parallel",),  # meshes and sharding rules, from explicit arguments
  ("tasks",),  # what a task trains and reports
  ("workdir",),  # the run directory: checkpoints, lock, preemption
  ("training",),  # build(config) and the training loop
  ("runs",),  # readers of a run (open_run)
  ("sweep",),  # many trials of one config
  ("cli",),  # absl entry points
  ("lstm_jax", "main", "sample", "launch", "sweep.__main__"),  # facade, shims
)


def _layer_index(layers: Iterable[Iterable[str]]) -> dict[str, int]:
  return {unit: i for i, layer in enumerate(layers) for unit in layer}


def _module_name(path: Path, root: Path) -> str:
  """`lstm_jax/ops/cell.py` -> `lstm_jax.ops.cell`; a package's `__init__.py`
  is the package."""
  parts = list(path.relative_to(root).with_suffix("").parts)
  if parts[-1] == "__init__":
    parts.pop()
  return ".".join(parts)


def _unit(module: str, units: Iterable[str]) -> str:
  """The unit of a dotted module name: the longest declared prefix below the
  package, the facade for the package itself, else the first component (an
  undeclared unit)."""
  rest = module.split(".")[1:]
  for n in range(len(rest), 0, -1):
    if ".".join(rest[:n]) in units:
      return ".".join(rest[:n])
  return rest[0] if rest else PACKAGE


def _imported(node: ast.AST, module: str, is_package: bool) -> list[str]:
  """The dotted names of our package that `node` imports (empty if none)."""
  names: list[str] = []
  if isinstance(node, ast.Import):
    names = [a.name for a in node.names]
  elif isinstance(node, ast.ImportFrom):
    base = node.module or ""
    if node.level:
      here = module.split(".") if is_package else module.split(".")[:-1]
      here = here[: len(here) - (node.level - 1)]
      base = ".".join(here + ([base] if base else []))
    # `from lstm_jax import tasks` imports lstm_jax.tasks, not the facade;
    # `from lstm_jax.x import y` imports lstm_jax.x and maybe lstm_jax.x.y.
    names = [f"{base}.{a.name}" for a in node.names]
    if base != PACKAGE:
      names.insert(0, base)
  elif isinstance(node, ast.Call):
    func = node.func
    called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    if called in ("run_module", "import_module") and node.args:
      first = node.args[0]
      if isinstance(first, ast.Constant) and isinstance(first.value, str):
        names = [first.value]
  return [n for n in names if n == PACKAGE or n.startswith(PACKAGE + ".")]


def import_edges(
  root: Path, units: Iterable[str]
) -> list[tuple[str, int, str, str, str]]:
  """Every import of our package under `root`/lstm_jax.

  Returns:
    (file relative to root, line, importing module, imported name, imported
    unit) per import, in file order.
  """
  units = set(units)
  edges = []
  for path in sorted((root / PACKAGE).rglob("*.py")):
    module = _module_name(path, root)
    is_package = path.name == "__init__.py"
    rel = path.relative_to(root).as_posix()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), rel)):
      for name in _imported(node, module, is_package):
        edges.append((rel, node.lineno, module, name, _unit(name, units)))
  return edges


def layering_errors(root: Path, layers: Iterable[Iterable[str]]) -> list[str]:
  """`file:line: A imports B ...` for every import of a later layer or of an
  undeclared unit, then one line per cycle of units and per cycle of modules."""
  layers = [tuple(layer) for layer in layers]
  index = _layer_index(layers)
  errors = []
  unit_graph: dict[str, set[str]] = {}
  module_graph: dict[str, set[str]] = {}
  modules = {_module_name(p, root) for p in (root / PACKAGE).rglob("*.py")}
  reported = set()
  for rel, line, module, name, target in import_edges(root, index):
    source = _unit(module, index)
    if source == target or (rel, line, target) in reported:
      pass
    elif source not in index or target not in index:
      missing = source if source not in index else target
      errors.append(f"{rel}:{line}: unit {missing!r} is not in LAYERS")
    elif index[target] > index[source]:
      errors.append(
        f"{rel}:{line}: {source} (layer {index[source] + 1}) imports {target} "
        f"(layer {index[target] + 1}, {name}): an upward import"
      )
    reported.add((rel, line, target))
    if source != target:
      unit_graph.setdefault(source, set()).add(target)
    # The module it names, or its package when it names an attribute.
    imported = name if name in modules else name.rpartition(".")[0]
    # Python initialises a module's own packages before the module, so
    # `from lstm_jax.tasks.forecast import settings` inside that package
    # depends on `settings`, not on the package's __init__.
    ancestor = module.startswith(imported + ".")
    if imported in modules and imported != module and not ancestor:
      module_graph.setdefault(module, set()).add(imported)
  errors += [f"unit cycle: {' -> '.join(c)}" for c in cycles(unit_graph)]
  errors += [f"module cycle: {' -> '.join(c)}" for c in cycles(module_graph)]
  return errors


def cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
  """The strongly connected components of more than one node (Tarjan)."""
  index: dict[str, int] = {}
  low: dict[str, int] = {}
  stack: list[str] = []
  found = []

  def visit(node: str) -> None:
    index[node] = low[node] = len(index)
    stack.append(node)
    for succ in sorted(graph.get(node, ())):
      if succ not in index:
        visit(succ)
        low[node] = min(low[node], low[succ])
      elif succ in stack:
        low[node] = min(low[node], index[succ])
    if low[node] == index[node]:
      component = []
      while True:
        member = stack.pop()
        component.append(member)
        if member == node:
          break
      if len(component) > 1:
        found.append(sorted(component))

  for node in sorted(graph):
    if node not in index:
      visit(node)
  return found


def documented_layers(markdown: str) -> list[tuple[str, ...]]:
  """The order stated between `<!-- layers -->` and `<!-- /layers -->`: one
  numbered item per layer, its units in backticks before the first colon
  (`ops/`, `errors.py`, `__init__.py` for the facade, `sweep/__main__.py`)."""
  match = re.search(r"<!-- layers[^>]*-->(.*?)<!-- /layers -->", markdown, re.S)
  if match is None:
    return []
  layers = []
  for line in match.group(1).splitlines():
    item = re.match(r"\s*\d+\.\s+(.*)", line)
    if item is None:
      continue
    head = item.group(1).split(":")[0]
    names = []
    for token in re.findall(r"`([^`]+)`", head):
      name = token.removesuffix("/").removesuffix(".py").replace("/", ".")
      names.append(PACKAGE if name == "__init__" else name)
    layers.append(tuple(names))
  return layers


# --------------------------------------------------------------------------
# The repository.
# --------------------------------------------------------------------------


def test_no_upward_import_and_no_cycle():
  assert layering_errors(REPO, LAYERS) == []


def test_every_unit_is_declared_once():
  declared = [unit for layer in LAYERS for unit in layer]
  assert len(declared) == len(set(declared))
  found = {
    _unit(_module_name(p, REPO), declared) for p in (REPO / PACKAGE).rglob("*.py")
  }
  assert found == set(declared)


def test_architecture_md_states_the_same_order():
  text = (REPO / "ARCHITECTURE.md").read_text(encoding="utf-8")
  assert documented_layers(text) == [tuple(layer) for layer in LAYERS]


# --------------------------------------------------------------------------
# The checker fails where it should (planted imports in copies and toys).
# --------------------------------------------------------------------------


def _write(root: Path, files: Mapping[str, str]) -> Path:
  for rel, text in files.items():
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
  return root


def test_an_upward_import_planted_in_a_copy_is_reported(tmp_path):
  shutil.copytree(
    REPO / PACKAGE, tmp_path / PACKAGE, ignore=shutil.ignore_patterns("__pycache__")
  )
  cell = tmp_path / PACKAGE / "ops" / "cell.py"
  lines = cell.read_text(encoding="utf-8").splitlines()
  line = len(lines) + 2  # of the planted import
  lines.append("def _planted():\n  from lstm_jax.training import train  # noqa")
  cell.write_text("\n".join(lines) + "\n", encoding="utf-8")
  errors = layering_errors(tmp_path, LAYERS)
  assert errors[0] == (
    f"lstm_jax/ops/cell.py:{line}: ops (layer 2) imports training (layer 10, "
    "lstm_jax.training): an upward import"
  )
  # training reaches ops (through nn, ...): the planted import closes cycles
  # of units and of modules.
  unit_cycle, module_cycle = errors[1:]
  assert unit_cycle.startswith("unit cycle: ")
  assert {"ops", "training"} <= set(unit_cycle.split(": ")[1].split(" -> "))
  assert module_cycle.startswith("module cycle: ")
  assert "lstm_jax.ops.cell -> " in module_cycle


LAYERS_TOY = (("low",), ("mid", "peer"), ("high",), ("lstm_jax", "shim"))


@pytest.mark.parametrize(
  "source, target_unit",
  [
    ("from lstm_jax.high import x\n", "high"),
    ("from lstm_jax import high\n", "high"),
    ("import lstm_jax.high.x\n", "high"),
    ("def f():\n  import lstm_jax.high\n", "high"),
    ("from ..high import x\n", "high"),
    ("import lstm_jax\n", "lstm_jax"),
    ("import runpy\nrunpy.run_module('lstm_jax.shim')\n", "shim"),
  ],
)
def test_each_import_form_counts(tmp_path, source, target_unit):
  root = _write(
    tmp_path,
    {
      "lstm_jax/__init__.py": "",
      "lstm_jax/shim.py": "",
      "lstm_jax/low/__init__.py": "",
      "lstm_jax/mid/__init__.py": "",
      "lstm_jax/mid/a.py": source,
      "lstm_jax/high/__init__.py": "",
      "lstm_jax/high/x.py": "",
    },
  )
  (error,) = layering_errors(root, LAYERS_TOY)
  assert error.startswith("lstm_jax/mid/a.py:")
  assert f"mid (layer 2) imports {target_unit} " in error


def test_downward_and_same_layer_imports_pass_and_a_peer_cycle_fails(tmp_path):
  files = {
    "lstm_jax/__init__.py": "from lstm_jax.high import x\n",
    "lstm_jax/low/__init__.py": "",
    "lstm_jax/mid/__init__.py": "from lstm_jax.low import y\nfrom lstm_jax import peer\n",
    "lstm_jax/peer.py": "from lstm_jax import low\n",
    "lstm_jax/high/x.py": "import lstm_jax.mid\n",
  }
  assert layering_errors(_write(tmp_path, files), LAYERS_TOY) == []
  _write(tmp_path, {"lstm_jax/peer.py": "import lstm_jax.mid\n"})
  assert layering_errors(tmp_path, LAYERS_TOY) == [
    "unit cycle: mid -> peer",
    "module cycle: lstm_jax.mid -> lstm_jax.peer",
  ]


def test_an_undeclared_unit_is_reported(tmp_path):
  files = {"lstm_jax/low/a.py": "from lstm_jax.extra import z\n"}
  assert layering_errors(_write(tmp_path, files), LAYERS_TOY) == [
    "lstm_jax/low/a.py:1: unit 'extra' is not in LAYERS"
  ]


def test_the_documented_order_is_parsed_from_the_marked_list():
  text = (
    "# x\n1. `not/`: outside\n<!-- layers: checked -->\n"
    "1. `low/`, `errors.py`: leaves; `ignored/`\n\n2. `mid/`\n"
    "3. `__init__.py`, `sweep/__main__.py`: the facade\n<!-- /layers -->\n"
  )
  assert documented_layers(text) == [
    ("low", "errors"),
    ("mid",),
    ("lstm_jax", "sweep.__main__"),
  ]
