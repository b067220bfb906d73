"""The seasonal period of a series: from its dates' frequency, else its ACF.

  m, why = season.infer(values, dates)   # (12, "monthly dates (MS)")

* Dates that parse (pandas `to_datetime`) and are regular (`infer_freq`) give
  the calendar cycle of their frequency: yearly 1, quarterly 4, monthly 12,
  weekly 52, daily 7, business-daily 5, hourly 24, minutely and secondly 60;
  a multiple such as "2h" divides it (12) when it divides evenly.
* Otherwise (no date column, yearly dates, dates that do not parse or are
  irregular, or no pandas) the period is estimated from the autocorrelation
  of the series' first differences (`from_acf`), or 1 when no lag stands out.

Only the values passed in are read: the forecasting task passes the training
part, so the estimate never sees the validation or holdout parts.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Sequence

import numpy as np

# Calendar cycle per pandas frequency base (anchors such as "-JAN" stripped).
CYCLES = {
  "Y": (1, "yearly"), "YS": (1, "yearly"), "YE": (1, "yearly"), "A": (1, "yearly"),
  "AS": (1, "yearly"), "BYS": (1, "yearly"), "BYE": (1, "yearly"),
  "Q": (4, "quarterly"), "QS": (4, "quarterly"), "QE": (4, "quarterly"),
  "BQS": (4, "quarterly"), "BQE": (4, "quarterly"),
  "M": (12, "monthly"), "MS": (12, "monthly"), "ME": (12, "monthly"),
  "BMS": (12, "monthly"), "BME": (12, "monthly"),
  "W": (52, "weekly"), "D": (7, "daily"), "B": (5, "business-daily"),
  "h": (24, "hourly"), "H": (24, "hourly"), "min": (60, "minutely"),
  "T": (60, "minutely"), "s": (60, "secondly"), "S": (60, "secondly"),
}  # fmt: skip

# A lag counts as the period when the ACF there is a local maximum above this
# and above the ~95% white-noise band 2/sqrt(n).
ACF_MIN = 0.2


def from_dates(dates: Sequence[str]) -> tuple[int | None, str]:
  """(period, reason) from date strings; period None when they give none.

  Pure numbers are not read as dates (an index), except consecutive 4-digit
  years, which are yearly.
  """
  dates = [str(d).strip() for d in dates]
  if len(dates) < 3:
    return None, "fewer than 3 dates"
  if all(re.fullmatch(r"[-+]?\d+(\.\d*)?", d) for d in dates):
    years = [int(d) for d in dates if re.fullmatch(r"\d{4}", d)]
    if len(years) == len(dates) and np.all(np.diff(years) == 1):
      return 1, "yearly dates (consecutive years)"
    return None, "the first column holds numbers, not dates"
  if importlib.util.find_spec("pandas") is None:
    return None, "reading dates needs pandas (not installed)"
  import pandas as pd  # optional (statsmodels needs it); imported on use only

  try:
    parsed = pd.to_datetime(dates, format="mixed")
  except (ValueError, TypeError, OverflowError):
    return None, "the first column does not parse as dates"
  try:
    freq = pd.infer_freq(parsed)
  except (ValueError, TypeError):
    freq = None
  if freq is None:
    return None, "the dates are irregular (no single frequency)"
  match = re.fullmatch(r"(\d*)([A-Za-z]+)(-\w+)?", freq)
  base = match.group(2) if match else freq
  if base not in CYCLES:
    return None, f"no calendar cycle known for date frequency {freq}"
  cycle, name = CYCLES[base]
  step = int(match.group(1) or 1)
  if cycle % step:
    return None, f"date frequency {freq} does not divide the {name} cycle {cycle}"
  return cycle // step, f"{name} dates ({freq})"


def from_acf(values: np.ndarray, max_lag: int | None = None) -> tuple[int, str]:
  """(period, reason): the ACF peak of the first differences, else 1.

  The first differences remove a trend (whose ACF would decay slowly and hide
  the cycle). The period is the lag in [2, max_lag] with the highest ACF among
  the local maxima above `ACF_MIN` and the white-noise band; max_lag defaults
  to a third of the series (at least 3 cycles seen).
  """
  y = np.diff(np.asarray(values, np.float64))
  n = len(y)
  max_lag = min(max_lag or n // 3, n - 2)
  if max_lag < 2 or np.std(y) == 0:
    return 1, "autocorrelation: series too short or constant, period 1"
  z = y - y.mean()
  acf = np.array([np.dot(z[: n - k], z[k:]) for k in range(max_lag + 2)]) / np.dot(z, z)
  band = max(ACF_MIN, 2 / np.sqrt(n))
  peaks = [
    k
    for k in range(2, max_lag + 1)
    if acf[k] > band and acf[k] >= acf[k - 1] and acf[k] >= acf[k + 1]
  ]
  if not peaks:
    return 1, f"autocorrelation: no lag in 2..{max_lag} above {band:.2f}, period 1"
  best = max(peaks, key=lambda k: acf[k])
  return best, f"autocorrelation peak at lag {best} (acf {acf[best]:.2f})"


def infer(values: np.ndarray, dates: Sequence[str] | None = None) -> tuple[int, str]:
  """(period, reason): the dates' frequency when they give one, else the ACF.

  Yearly dates (cycle 1) have no calendar season, so the ACF may still find a
  cycle of the series itself (sunspots' ~11 years, lynx's ~10).
  """
  why = "no date column"
  if dates is not None:
    m, why = from_dates(dates)
    if m is not None and m > 1:
      return m, why
  m, how = from_acf(values)
  return m, f"{why}; {how}"
