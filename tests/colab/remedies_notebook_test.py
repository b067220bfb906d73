"""colab/remedies.ipynb runs top to bottom in a fresh kernel: the gradient-flow
plot and the sweep's ranked table are drawn (see notebook_test.py for how the
kernel is started)."""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = Path(__file__).resolve().parents[2] / "colab" / "remedies.ipynb"


@pytest.mark.slow
def test_remedies_notebook_runs(monkeypatch, kernel_tmp):
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  nb = nbformat.read(NOTEBOOK, as_version=4)
  code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
  assert "def " not in code and "class " not in code
  nbclient.NotebookClient(
    nb,
    timeout=300,
    kernel_name="python3",
    resources={"metadata": {"path": str(NOTEBOOK.parent)}},
  ).execute()
  outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
  # The last cell deletes the sweep's directory.
  assert not list(kernel_tmp.glob("lstm_jax_sweep_*"))
  assert not [o for o in outputs if o.get("output_type") == "error"]
  assert (
    sum("image/png" in o.get("data", {}) for o in outputs) >= 2
  )  # flow + table plot
  text = "".join(o.get("text", "") for o in outputs)
  assert "forget bias 0: falls" in text and "chrono init, T=400:" in text
  assert any(
    "| rank | trial |" in o.get("data", {}).get("text/markdown", "") for o in outputs
  )
