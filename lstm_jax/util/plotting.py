"""Optional PNG plots: matplotlib is the `plots` extra, never a requirement.

The PNGs a run writes (`gradient_flow.png`, `forecast.png`, a sweep's
`results.png`) are a view of numbers that `metrics.jsonl` and the result
tables already hold, so a missing matplotlib must not lose a run: `figure`
then returns None, the caller skips that PNG, and the process logs one warning
naming the extra. Figures are bare `matplotlib.figure.Figure`s, not pyplot:
no global backend switch, so a notebook's inline backend keeps working after
a training run inside it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from absl import logging

if TYPE_CHECKING:
  from matplotlib.figure import Figure

EXTRA = "plots"
INSTALL_HINT = f"pip install -e '.[{EXTRA}]'"
_warned = False


def figure(path: str, **kwargs: Any) -> Figure | None:
  """A new `matplotlib.figure.Figure(**kwargs)` to save as `path`, or None.

  Without matplotlib: None, and the first such call in the process logs a
  warning naming `path` and the extra to install (later ones are silent).
  """
  global _warned
  try:
    from matplotlib.figure import Figure
  except ImportError:
    if not _warned:
      _warned = True
      logging.warning(
        "matplotlib is not installed: %s and any other plot of this run are "
        "skipped (the run itself is unaffected); %s adds them.",
        path,
        INSTALL_HINT,
      )
    return None
  return Figure(**kwargs)
