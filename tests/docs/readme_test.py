"""The README and docs/: their Python examples run as written, and their
links reach every page.

Each page's ```python blocks run in order in one namespace per page (a page
reads like one session); the printed values are the ones the comments
promise. The README links every docs/ page, and every relative link of the
README and docs/ names a file or folder of the repository.
"""

import pathlib
import re

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))
PAGES = [README, REPO / "ARCHITECTURE.md", *DOCS]


def _python_blocks(page: pathlib.Path) -> list[str]:
  return re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)


def _run(page: pathlib.Path) -> None:
  namespace: dict = {}
  for block in _python_blocks(page):
    if "import torch" in block:
      pytest.importorskip("torch", reason="this example needs the parity extra (torch)")
    exec(compile(block, str(page), "exec"), namespace)  # noqa: S102


EXAMPLES = [p for p in PAGES if _python_blocks(p)]


def test_the_models_page_has_examples():
  assert len(_python_blocks(REPO / "docs" / "models.md")) >= 3  # Linen, torch, NNX


@pytest.mark.parametrize("page", EXAMPLES, ids=lambda p: p.name)
def test_examples_run(page, capsys):
  _run(page)
  if page.name == "models.md":
    printed = capsys.readouterr().out.split()
    assert printed[:4] == ["(4,", "50,", "256)", "4"]


def test_readme_links_every_docs_page():
  links = set(re.findall(r"\]\((docs/[^)#]+)", README.read_text()))
  assert {f"docs/{p.name}" for p in DOCS} <= links
  assert {"ARCHITECTURE.md", "benchmarks/README.md", "colab/"} <= set(
    re.findall(r"\]\(([^)#]+)\)", README.read_text())
  )


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_resolve(page):
  for target in re.findall(r"\]\(([^)]+)\)", page.read_text()):
    if re.match(r"[a-z]+:", target):  # https:, mailto:
      continue
    path = target.split("#")[0]
    assert (page.parent / path).exists(), f"{page.name} links {target}"


# A path into the repository as the prose writes it: `tests/x/y_test.py`,
# lstm_jax/ops/cell.py, benchmarks/README.md (not inside a URL).
_REPO_PATH = re.compile(
  r"(?<![\w/.-])((?:tests|benchmarks|lstm_jax|experiments|colab|docs|\.ci)"
  r"/[\w./-]*\w\.(?:py|ipynb|md|json|npz|txt|cfg))"
)
# The pages a reader follows and the library and benchmark sources (their
# docstrings point at tests and modules); tests/ itself plants toy trees.
PROSE = [
  *PAGES,
  REPO / "benchmarks" / "README.md",
  REPO / "benchmarks" / "RESULTS.md",
  *sorted((REPO / "lstm_jax").rglob("*.py")),
  *sorted((REPO / "benchmarks").glob("*.py")),
  *sorted((REPO / "experiments").glob("*.py")),
]


def test_named_repository_paths_exist():
  """A moved file leaves no stale path behind in the docs or docstrings."""
  stale = [
    f"{page.relative_to(REPO)}: {path}"
    for page in PROSE
    for path in sorted(set(_REPO_PATH.findall(page.read_text())))
    if not (REPO / path).exists()
  ]
  assert not stale, "paths named but missing:\n" + "\n".join(stale)
