"""What every command line of the library shares: quiet logs and a help page.

* `quiet_logs()`: unless `--verbosity` is given, absl and Python logging show
  WARNING and above, Orbax's INFO/WARNING chatter (about 30 lines per
  checkpoint opened) and JAX's backend-probing messages (the libtpu / "no GPU"
  lines) are dropped, and XLA's C++ log shows errors only. The library's own
  warnings (a corrupted checkpoint moved aside, a changed Python version) stay.
  `--verbosity=0` shows everything (absl's INFO level), as absl normally does.
* `run(main, help_page)`: `absl.app.run` with `--help` / `-h` printing
  `help_page()` on stdout and exiting 0 (absl's own help exits 1 and lists
  every absl flag; `--helpfull` still does that).
* `flag_lines` / `experiments_overview`: pieces of a help page.

Importing this module changes nothing; the effects are in the calls.
"""

from __future__ import annotations

import ast
import logging
import os
import pathlib
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from absl import app, flags
from absl import logging as absl_logging

HELP_ARGS = ("--help", "-h", "-?", "--helpshort")
# The absl flags every command has, as the last lines of its help page.
COMMON_FLAGS = """
  --verbosity=0  show the INFO log of absl, Orbax and JAX (default: warnings)
  --helpfull     list every absl flag"""
# Records from these code paths are dropped below ERROR by default: Orbax logs
# each manager, handler and restore at INFO and read-only opens at WARNING;
# JAX logs each backend it fails to initialise (libtpu, CUDA) while probing.
_CHATTY_PATHS = ("/orbax/", "/jax/_src/xla_bridge.py")


class _DropLibraryChatter(logging.Filter):
  def filter(self, record: logging.LogRecord) -> bool:
    if record.levelno >= logging.ERROR:
      return True
    path = record.pathname.replace(os.sep, "/")
    return not any(p in path for p in _CHATTY_PATHS)


def quiet_logs() -> None:
  """Quiet defaults unless `--verbosity` was passed (call after flag parsing,
  before JAX initialises its backends)."""
  if flags.FLAGS["verbosity"].present:
    return
  absl_logging.set_verbosity(absl_logging.WARNING)
  absl_logging.get_absl_handler().addFilter(_DropLibraryChatter())
  # XLA's C++ logging (read when the backend starts): errors only.
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def run(main: Callable[[list[str]], None], help_page: Callable[[], str], **kw) -> None:
  """`app.run(main, **kw)`, with `--help` printing `help_page()` (exit 0)."""
  if any(a in HELP_ARGS for a in sys.argv[1:]):
    print(help_page())
    sys.exit(0)
  app.run(main, **kw)


def flag_lines(names: Sequence[str]) -> str:
  """One line per flag: name, help, and its default when it has one."""
  lines = []
  for name in names:
    flag = flags.FLAGS[name]
    value = flag.default
    default = "" if value is None else f" (default: {value!r})"
    lines.append(f"  --{name:<12} {flag.help}{default}")
  return "\n".join(lines)


def experiments_dir() -> pathlib.Path | None:
  """`experiments/` under the current directory, else beside the package
  (a clone with an editable install); None if neither exists."""
  for root in (pathlib.Path.cwd(), pathlib.Path(__file__).resolve().parents[2]):
    if (root / "experiments" / "base.py").is_file():
      return root / "experiments"
  return None


def _describe(path: pathlib.Path) -> tuple[str, tuple[str, ...], str]:
  """(first docstring line, VARIANTS, first `python -m lstm_jax.main` line of
  the docstring) of an experiment file, read without importing it."""
  tree = ast.parse(path.read_text(encoding="utf-8"))
  doc = ast.get_docstring(tree) or ""
  variants: tuple[str, ...] = ()
  for node in tree.body:
    if isinstance(node, ast.Assign) and any(
      isinstance(t, ast.Name) and t.id == "VARIANTS" for t in node.targets
    ):
      variants = tuple(ast.literal_eval(node.value))
  lines = [ln.strip() for ln in doc.splitlines()]
  summary = next((ln for ln in lines if ln), "(no docstring)")
  example = next((ln for ln in lines if ln.startswith("python -m lstm_jax.main")), "")
  return summary, variants, example.rstrip(" \\")


def experiments_overview() -> str:
  """The experiments section of the training help page."""
  folder = experiments_dir()
  if folder is None:
    return (
      "Experiments: no experiments/ folder here; run from a clone of the "
      "repository (experiments/<name>.py)."
    )
  rows, examples = [], []
  for path in sorted(folder.glob("*.py")):
    if path.name in ("base.py", "__init__.py"):
      continue
    summary, variants, example = _describe(path)
    shown = f"experiments/{path.name}"
    rows.append(f"  {shown:<24} {summary}")
    if variants:
      rows.append(f"  {'':<24} variants: " + ", ".join(f":{v}" for v in variants))
    if example:
      examples.append(f"  {example}")
  return "\n".join(
    [f"Experiments ({folder}; a variant follows a colon):", *rows, "", "Examples:"]
    + examples
  )


def fail(message: str, status: int = 1) -> NoReturn:
  """Prints `error: message` and ends the process at once with `status`.

  `os._exit`, not `sys.exit`: after a failed restore, TensorStore's reader
  threads still complete futures on Orbax's closed asyncio loop while the
  interpreter shuts down, and each prints a `RuntimeError: Event loop is
  closed` traceback after our one line. Nothing is left to flush by then: the
  trainer has closed its writers and waited for its checkpoints before the
  error reached the entry point.
  """
  sys.stdout.flush()
  sys.stderr.write(f"error: {message}\n")
  sys.stderr.flush()
  os._exit(status)
