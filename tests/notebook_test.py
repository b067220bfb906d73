"""colab/quickstart.ipynb runs top to bottom in a fresh kernel and samples text.

The kernel is the `python3` kernelspec that ipykernel installs into the venv;
jupyter_client starts it with this interpreter (`sys.executable`), so the test
sees the same packages as the rest of the suite. The notebook runs from
`colab/`, finds the checkout one level up and installs nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from experiments import charlm

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = Path(__file__).resolve().parents[1] / "colab" / "quickstart.ipynb"
TIMEOUT = 300  # seconds per cell


def _text(outputs) -> str:
  parts = []
  for out in outputs:
    if out.get("output_type") == "stream":
      parts.append(out["text"])
    elif "data" in out and "text/plain" in out["data"]:
      parts.append(out["data"]["text/plain"])
  return "".join(parts)


def test_quickstart_notebook_runs(monkeypatch):
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  nb = nbformat.read(NOTEBOOK, as_version=4)
  # The notebook only imports the library: no function or class definitions.
  code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
  assert "def " not in code and "class " not in code

  client = nbclient.NotebookClient(
    nb,
    timeout=TIMEOUT,
    kernel_name="python3",
    resources={"metadata": {"path": str(NOTEBOOK.parent)}},
  )
  client.execute()  # raises CellExecutionError, with the traceback, on error

  errors = [
    out
    for c in nb.cells
    if c.cell_type == "code"
    for out in c.outputs
    if out.get("output_type") == "error"
  ]
  assert not errors
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
  steps = charlm.get_config("tiny").train.steps
  assert f"restored step {steps}:" in output, output
  sample_text = output.split("The ", 1)[1]
  assert len(sample_text.strip()) > 20, output
