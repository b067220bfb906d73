"""Malformed task data reaches the command line as one `error:` line.

Each case: exit code non-zero, exactly one stderr line starting `error:`
that names the file (and the line or column) and the problem, and an existing
workdir left exactly as it was. The loaders' own unit tests are in
tests/data/ucr_ts_test.py and tests/data/series_test.py; these check the path through the CLI.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HEADER = """@problemName Toy
@timeStamps false
@missing false
@univariate {uni}
@equalLength true
@seriesLength 4
@classLabel true a b
@data
"""
GOOD = "".join(f"{i},{i + 1},{i + 2},{i + 3}:{'ab'[i % 2]}\n" for i in range(8))
GOOD2 = "".join(
  f"{i},{i + 1},{i + 2},{i + 3}:{i},{i},{i},{i}:{'ab'[i % 2]}\n" for i in range(8)
)


def _ts(path: Path, body: str, uni: str = "true") -> str:
  path.write_text(HEADER.format(uni=uni) + body)
  return str(path)


def _csv(path: Path, text: str) -> str:
  path.write_text(text)
  return str(path)


def _ucr(tmp, train: str, test: str | None = None) -> list[str]:
  test = test or _ts(tmp / "ok_TEST.ts", GOOD)
  return [
    "--config=experiments/ucr.py:tiny",
    f"--config.data.train_path={train}",
    f"--config.data.test_path={test}",
  ]


def _forecast(path: str, columns: str = "y") -> list[str]:
  return [
    "--config=experiments/forecast.py:tiny",
    "--config.data.dataset=",
    f"--config.data.path={path}",
    f"--config.data.columns={columns}",
  ]


SERIES = "t,y\n" + "".join(f"{i},{(i * 7) % 11}\n" for i in range(60))

# case -> (flags given a tmp dir, substrings the error line must hold)
CASES = {
  "bad_ts_header": (
    lambda t: _ucr(t, _bad_header(t)),
    ["bad.ts", "@classLabel"],
  ),
  "ragged_channels": (
    lambda t: _ucr(
      t,
      _ts(t / "r.ts", GOOD2.replace("0,1,2,3:0,0,0,0", "0,1,2,3:0,0,0", 1), "false"),
      _ts(t / "r_TEST.ts", GOOD2, "false"),
    ),
    ["r.ts:9"],
  ),
  "undeclared_label": (
    lambda t: _ucr(t, _ts(t / "l.ts", GOOD + "1,2,3,4:zebra\n")),
    ["l.ts:17", "zebra"],
  ),
  "nan": (
    lambda t: _ucr(t, _ts(t / "n.ts", GOOD.replace("2,3", "?,3", 1))),
    ["n.ts:9"],
  ),
  "empty_ts": (lambda t: _ucr(t, _csv(t / "e.ts", "")), ["e.ts", "empty"]),
  "test_channels": (
    lambda t: _ucr(t, _ts(t / "c.ts", GOOD), _ts(t / "c_TEST.ts", GOOD2, "false")),
    ["c_TEST.ts", "channels"],
  ),
  "csv_missing_column": (
    lambda t: _forecast(_csv(t / "m.csv", SERIES), "y,z"),
    ["m.csv", "'z'"],
  ),
  "csv_non_numeric": (
    lambda t: _forecast(_csv(t / "x.csv", SERIES.replace("\n5,", "\n5,abc\n6,", 1))),
    ["x.csv:7", "'abc'"],
  ),
  "series_too_short": (
    lambda t: _forecast(_csv(t / "s.csv", "y\n" + "1\n2\n3\n" * 4)),
    ["s.csv", "shorter than one"],
  ),
  "sqrt_of_negative_series": (
    lambda t: [
      *_forecast(_csv(t / "neg.csv", SERIES.replace("\n5,2\n", "\n5,-2\n", 1))),
      "--config.data.transform=sqrt",
    ],
    ["neg.csv", "'sqrt'", "-2"],
  ),
  "season_zero": (
    lambda t: [*_forecast(_csv(t / "z.csv", SERIES)), "--config.data.season=0"],
    ["data.season", "got 0"],
  ),
  "season_longer_than_half_the_training_part": (
    lambda t: [*_forecast(_csv(t / "l.csv", SERIES)), "--config.data.season=40"],
    ["data.season", "[1, 21]", "l.csv", "got 40"],
  ),
  "ucr_patch_negative": (
    lambda t: ["--config=experiments/ucr.py:GunPoint,tiny", "--config.model.patch=-1"],
    ["model.patch", "-1"],
  ),
  "ucr_unknown_candidate": (
    lambda t: [
      "--config=experiments/ucr.py:GunPoint,tiny",
      "--config.model.candidates=('mean', 'median')",
    ],
    ["model.candidates", "'median'"],
  ),
  "ucr_unknown_baseline": (
    lambda t: [
      "--config=experiments/ucr.py:GunPoint,tiny",
      "--config.data.baselines=('rocket',)",
    ],
    ["data.baselines", "rocket"],
  ),
  "unknown_ucr_name": (
    lambda t: ["--config=experiments/ucr.py:NoSuchSet,tiny"],
    ["NoSuchSet", "GunPoint"],
  ),
}


def _bad_header(t: Path) -> str:
  path = t / "bad.ts"
  path.write_text(
    HEADER.format(uni="true").replace("@classLabel true a b", "@classLabel maybe")
    + GOOD
  )
  return str(path)


def _snapshot(workdir: Path) -> dict[str, bytes]:
  return {
    str(p.relative_to(workdir)): p.read_bytes()
    for p in workdir.rglob("*")
    if p.is_file()
  }


# The default suite runs one case per loader and per task's config check (each
# case is a process start of ~3 s); `-m slow` runs them all.
DEFAULT = (
  "bad_ts_header", "csv_non_numeric", "season_longer_than_half_the_training_part",
  "ucr_unknown_candidate", "unknown_ucr_name",
)  # fmt: skip


@pytest.mark.parametrize(
  "case",
  [c if c in DEFAULT else pytest.param(c, marks=pytest.mark.slow) for c in CASES],
)
def test_malformed_input_is_one_error_line(case, tmp_path, env):
  flags, expected = CASES[case]
  workdir = tmp_path / "run"
  workdir.mkdir()
  (workdir / "notes.txt").write_text("an earlier run's file\n")
  before = _snapshot(workdir)
  proc = subprocess.run(
    [sys.executable, "-m", "lstm_jax.main", *flags(tmp_path), f"--workdir={workdir}"],
    cwd=REPO, env=env, capture_output=True, text=True, timeout=240,
  )  # fmt: skip
  assert proc.returncode != 0
  errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1, proc.stderr[-3000:]
  assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
  for part in expected:
    assert part in errors[0], errors[0]
  assert _snapshot(workdir) == before
