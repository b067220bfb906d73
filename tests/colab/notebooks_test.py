"""Every colab/*.ipynb runs top to bottom in a fresh kernel, from a directory
with no checkout above it, as a user who installed the package would.

The kernel is the `python3` kernelspec that ipykernel installs into the venv;
jupyter_client starts it with this interpreter (`sys.executable`). Each
notebook is copied into a temporary directory and run there: its set-up cell
must then find the installed package (the venv's editable install; PYTHONPATH
points it at this checkout) and its `experiments/` beside it, clone nothing and
install nothing. The quickstart must also draw its plot, sample text and
delete its temporary workdir.

The slow `test_notebook_runs_in_a_fresh_venv` runs each notebook as on a fresh
Colab runtime instead: a kernel in a new virtual environment holding only
ipykernel and a JAX older than setup.cfg's bound, so everything the notebook
uses must come from its own set-up cell's install line (the package with the
notebook's `EXTRAS`). It needs a package index (pip downloads); the notebook
sits in `colab/` of a copy of this checkout, where the set-up cell installs
that copy with the same pip line that installs a clone on Colab.
"""

from __future__ import annotations

import configparser
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from experiments import charlm

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((REPO / "colab").glob("*.ipynb"))
TIMEOUT = 300  # seconds per cell


def _text(outputs) -> str:
  parts = []
  for out in outputs:
    if out.get("output_type") == "stream":
      parts.append(out["text"])
    elif "data" in out and "text/plain" in out["data"]:
      parts.append(out["data"]["text/plain"])
  return "".join(parts)


def _setup_cfg() -> configparser.ConfigParser:
  cfg = configparser.ConfigParser()
  cfg.read(REPO / "setup.cfg")
  return cfg


def _repo_url() -> str:
  return _setup_cfg()["metadata"]["url"]


def _version(text: str) -> tuple[int, ...]:
  return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def _stray(nb, skip: int | None = None) -> list[str]:
  """Stderr outputs that are empty or warn, outside cell `skip`."""
  return [
    f"cell {i}: {out['text']!r}"
    for i, cell in enumerate(nb.cells)
    if cell.cell_type == "code" and i != skip
    for out in cell.outputs
    if out.get("output_type") == "stream"
    and out["name"] == "stderr"
    and (not out["text"].strip() or "warn" in out["text"].lower())
  ]


# The task notebooks also run (outside a checkout, with their own output
# checks) in tests/colab/task_notebooks_test.py; remedies.ipynb is long: both are slow here.
_SLOW = {"forecasting.ipynb", "classification.ipynb", "remedies.ipynb"}
RUNS = [
  pytest.param(p, marks=pytest.mark.slow) if p.name in _SLOW else p for p in NOTEBOOKS
]


def test_notebooks_exist():
  assert [p.name for p in NOTEBOOKS] == [
    "classification.ipynb",
    "forecasting.ipynb",
    "quickstart.ipynb",
    "remedies.ipynb",
  ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_repository_url_is_defined_once(path):
  """setup.cfg's url is the README's address, the notebook's fallback
  constant and the base of the README's Open-in-Colab link."""
  url = _repo_url()
  readme = (REPO / "README.md").read_text()
  assert url in readme
  nb = nbformat.read(path, as_version=4)
  setup = nb.cells[2].source
  assert f'REPO_URL = "{url}"' in setup
  assert "YOUR_ORG" not in path.read_text()
  owner_repo = url.removeprefix("https://github.com/")
  link = (
    f"https://colab.research.google.com/github/{owner_repo}/blob/main/colab/{path.name}"
  )
  assert link in readme
  assert "notebooks" in nb.cells[0].source  # says which extra it needs


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_the_stated_extras_are_the_installed_ones(path):
  """The set-up cell's EXTRAS exist in setup.cfg, and the first cell's pip
  line (for a clone outside Colab) names them too."""
  nb = nbformat.read(path, as_version=4)
  (extras,) = re.findall(r'^EXTRAS = "([a-z,-]*)"$', nb.cells[2].source, flags=re.M)
  declared = set(_setup_cfg()["options.extras_require"])
  assert set(extras.split(",")) <= declared
  (pip_line,) = re.findall(r"pip install -e '\.\[([a-z,-]*)\]'", nb.cells[0].source)
  named = set(pip_line.split(","))
  assert "notebooks" in named
  # `notebooks` includes matplotlib, which the `plots` extra is.
  assert set(extras.split(",")) - {"plots"} <= named


@pytest.mark.parametrize("path", RUNS, ids=lambda p: p.name)
def test_notebook_runs_outside_a_checkout(path, tmp_path, monkeypatch, kernel_tmp):
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  monkeypatch.setenv("PYTHONPATH", str(REPO))
  run_dir = tmp_path / "somewhere"
  run_dir.mkdir()
  shutil.copy(path, run_dir / path.name)
  nb = nbformat.read(run_dir / path.name, as_version=4)
  # The notebook only imports the library: no function or class definitions.
  code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
  assert not re.search(r"^\s*(def|class) ", code, flags=re.M)

  client = nbclient.NotebookClient(
    nb,
    timeout=TIMEOUT,
    kernel_name="python3",
    resources={"metadata": {"path": str(run_dir)}},
  )
  client.execute()  # raises CellExecutionError, with the traceback, on error

  setup = _text(nb.cells[2].outputs)
  assert f"from {REPO} (already installed)" in setup, setup
  assert not _stray(nb), _stray(nb)
  assert sorted(p.name for p in run_dir.iterdir()) == [path.name]  # no clone
  assert not list(kernel_tmp.glob("lstm_jax_tiny_*"))  # the notebook removed its run
  if path.name == "quickstart.ipynb":
    _check_quickstart(nb)


def _check_quickstart(nb) -> None:
  plots = [
    out
    for c in nb.cells
    if c.cell_type == "code"
    for out in c.outputs
    if "image/png" in out.get("data", {})
  ]
  assert plots, "the loss curve was not drawn"
  (cell,) = [c for c in nb.cells if "sample" in c.metadata.get("tags", [])]
  output = _text(cell.outputs)
  config = charlm.get_config("tiny")
  steps = config.train.steps
  assert f"restored step {steps}:" in output, output
  seen = steps * config.data.batch_size * config.data.seq_len  # 76,800
  assert f"trained on {seen:,} characters" in output, output
  sample_text = output.split("The ", 1)[1]
  assert len(sample_text.strip()) > 20, output


# What a fresh runtime has before the set-up cell: a kernel, and a JAX older
# than setup.cfg's lower bound, which the package's install must upgrade.
_FRESH_RUNTIME = ["ipykernel", "jax==0.7.2"]


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_in_a_fresh_venv(path, tmp_path, monkeypatch):
  copy = tmp_path / "lstm_jax"
  listed = subprocess.run(
    ["git", "ls-files", "-co", "--exclude-standard"],
    cwd=REPO, capture_output=True, text=True, check=True,
  ).stdout.splitlines()  # fmt: skip
  for name in listed:
    if (REPO / name).is_file():
      (copy / name).parent.mkdir(parents=True, exist_ok=True)
      shutil.copy2(REPO / name, copy / name)
  venv = tmp_path / "venv"
  subprocess.run([sys.executable, "-m", "venv", venv], check=True)
  python = venv / "bin" / "python"
  subprocess.run([python, "-m", "pip", "install", "-q", *_FRESH_RUNTIME], check=True)
  spec = tmp_path / "jupyter" / "kernels" / "fresh"
  spec.mkdir(parents=True)
  argv = [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"]
  kernel = {"argv": argv, "display_name": "fresh", "language": "python"}
  (spec / "kernel.json").write_text(json.dumps(kernel))
  monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
  monkeypatch.delenv("PYTHONPATH", raising=False)  # nothing from this checkout
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")

  nb = nbformat.read(copy / "colab" / path.name, as_version=4)
  nbclient.NotebookClient(
    nb, timeout=900, kernel_name="fresh",
    resources={"metadata": {"path": str(copy / "colab")}},
  ).execute()  # fmt: skip

  setup = _text(nb.cells[2].outputs)
  assert f"from {copy} (installed now from the clone)" in setup, setup
  (bound,) = re.findall(
    r"^jax>=([\d.]+)$", _setup_cfg()["options"]["install_requires"], flags=re.M
  )
  jax_version = re.search(r"JAX (\S+) on", setup).group(1)
  assert _version(jax_version) >= _version(bound), setup
  # The set-up cell's stderr is pip's (its notices depend on the machine's
  # pip configuration); every other cell's must be clean.
  assert not _stray(nb, skip=2), _stray(nb, skip=2)
  if path.name == "quickstart.ipynb":
    _check_quickstart(nb)
