"""Every colab/*.ipynb runs top to bottom in a fresh kernel, from a directory
with no checkout above it, as a user who installed the package would.

The kernel is the `python3` kernelspec that ipykernel installs into the venv;
jupyter_client starts it with this interpreter (`sys.executable`). Each
notebook is copied into a temporary directory and run there: its set-up cell
must then find the installed package (the venv's editable install; PYTHONPATH
points it at this checkout) and its `experiments/` beside it, clone nothing and
install nothing. The quickstart must also draw its plot, sample text and
delete its temporary workdir.
"""

from __future__ import annotations

import configparser
import re
import shutil
import tempfile
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


def _repo_url() -> str:
  cfg = configparser.ConfigParser()
  cfg.read(REPO / "setup.cfg")
  return cfg["metadata"]["url"]


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


@pytest.mark.parametrize("path", RUNS, ids=lambda p: p.name)
def test_notebook_runs_outside_a_checkout(path, tmp_path, monkeypatch):
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  monkeypatch.setenv("PYTHONPATH", str(REPO))
  run_dir = tmp_path / "somewhere"
  run_dir.mkdir()
  shutil.copy(path, run_dir / path.name)
  before = set(Path(tempfile.gettempdir()).glob("lstm_jax_tiny_*"))
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
  assert sorted(p.name for p in run_dir.iterdir()) == [path.name]  # no clone
  assert set(Path(tempfile.gettempdir()).glob("lstm_jax_tiny_*")) == before
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
