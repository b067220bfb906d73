"""The README's Python examples run as written."""

import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[2] / "README.md"


def _python_blocks() -> list[str]:
  return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_examples():
  assert len(_python_blocks()) >= 2


def test_readme_examples_run(capsys):
  namespace: dict = {}
  for block in _python_blocks():
    if "import torch" in block:
      pytest.importorskip("torch", reason="this example needs the parity extra (torch)")
    exec(compile(block, str(README), "exec"), namespace)  # noqa: S102
  printed = capsys.readouterr().out.split()
  # The printed values are the ones the README's comments promise.
  assert printed[:4] == ["(4,", "50,", "256)", "4"]
