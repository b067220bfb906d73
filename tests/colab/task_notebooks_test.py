"""colab/forecasting.ipynb and colab/classification.ipynb run top to bottom.

Like notebook_test.py: a fresh `python3` kernel from this venv, each notebook
copied into a directory with no checkout above it, so its set-up cell must
find the installed package (PYTHONPATH points at this checkout) and install
nothing. Each must
draw a figure, restore the best checkpoint (the one the test record names)
and recompute its test figure from it to the value the run logged.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

COLAB = Path(__file__).resolve().parents[2] / "colab"


def _text(outputs) -> str:
  return "".join(
    o["text"]
    if o.get("output_type") == "stream"
    else o.get("data", {}).get("text/plain", "")
    for o in outputs
  )


# Both task notebooks are `-m slow` (a tiny run in a Jupyter kernel each, and
# the slow fresh-venv test in notebooks_test.py runs them again from their own
# set-up cells). In the default suite a notebook runs outside a checkout
# (notebooks_test.py: quickstart), and what these two compute in their cells
# is recomputed from the CLI's runs (tests/system/tiny_tasks_test.py::
# test_forecast_against_statsmodels and ::test_ucr_accuracy).
@pytest.mark.slow
@pytest.mark.parametrize("name", ["forecasting", "classification"])
def test_task_notebook_runs(name, monkeypatch, tmp_path, kernel_tmp):
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  monkeypatch.setenv("PYTHONPATH", str(COLAB.parent))
  shutil.copy(COLAB / f"{name}.ipynb", tmp_path / f"{name}.ipynb")
  nb = nbformat.read(tmp_path / f"{name}.ipynb", as_version=4)
  code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
  assert "def " not in code and "class " not in code  # the library does the work
  leftovers = f"lstm_jax_{'ucr' if name == 'classification' else 'forecast'}_*"
  nbclient.NotebookClient(
    nb, timeout=300, kernel_name="python3",
    resources={"metadata": {"path": str(tmp_path)}},
  ).execute()  # fmt: skip
  outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
  # The last cell deletes the notebook's workdir.
  assert not list(kernel_tmp.glob(leftovers))
  assert not [o for o in outputs if o.get("output_type") == "error"]
  assert [o for o in outputs if "image/png" in o.get("data", {})], "no figure drawn"
  (cell,) = [c for c in nb.cells if "restore" in c.metadata.get("tags", [])]
  text = _text(cell.outputs)
  step = re.search(r"restored step (\d+)", text)
  assert step, text
  everything = _text(outputs)
  if name == "forecasting":
    logged = float(re.search(r"LSTM\s+MAE\s+([\d.]+)", everything).group(1))
    again = float(re.search(r"multi-step MAE recomputed: ([\d.]+)", text).group(1))
    assert abs(logged - again) <= 0.01 + 5e-3 * logged
    assert f"test record from step {step.group(1)}" in text
  else:
    logged = re.search(
      r"test accuracy ([\d.]+) \(checkpoint of step (\d+)\)", everything
    )
    assert logged.group(2) == step.group(1)
    assert f"accuracy recomputed {logged.group(1)}" in text
