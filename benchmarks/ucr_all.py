r"""Every UCR/UEA set shipped in the installed aeon/sktime wheels: the default
`experiments/ucr.py` config against same-run MiniRocket and 1-NN DTW.

  python benchmarks/ucr_all.py                  # every set, 3 seeds (hours on 2 cores)
  python benchmarks/ucr_all.py --only=GunPoint,PLAID --seeds=1
  python benchmarks/ucr_all.py --runs_dir=/tmp/u --report_only  # re-read runs
  python benchmarks/ucr_all.py --tiny --only=UnitTest --seeds=1 --runs_dir=/tmp/t

Sets: `lstm_jax.data.ucr.shipped_datasets()`, found by path inside the
wheels; nothing is downloaded (regression sets such as Covid3Month, Tecator
and CardanoSentiment declare no class labels and are not listed). Each run is
`python -m lstm_jax.main --config=experiments/ucr.py:NAME --config.seed=S`
with no other flag: the same config for every set; validation (carved from
TRAIN) picks the checkpoint and the candidate, the test file is scored once.
Its test record holds ours and the baselines fit in the same run: MiniRocket
+ ridge (seeded, every seed) and 1-NN DTW (deterministic, so only seed 0's
run computes it: it is the slowest part on the long sets). Runs go to
`<runs_dir>/<NAME>_s<seed>`; a workdir with a test record is read, not rerun.

The table: per set, ours as mean +- sample std over seeds (each seed with its
own validation split and initialisation), the seed ensemble (mean test
probability of the seeds' chosen classifiers: nothing chosen on test), the
baselines, ours minus each baseline, and wins/ties/losses of the seeds'
accuracies against each baseline. Acceptance per set: ours >= 1-NN DTW and
ours >= MiniRocket - 0.03 (means over seeds). The section between the
markers in RESULTS.md is replaced; the rest of the file is kept.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
  sys.path.insert(0, str(REPO))

from lstm_jax.data import ucr  # noqa: E402

BEGIN, END = "<!-- ucr_all: begin -->", "<!-- ucr_all: end -->"
# Shipped classification sets that are not in the UCR/UEA archives: run and
# shown, left out of the archive means and wins/ties/losses.
NOT_ARCHIVE = {"Covid3Month_disc": "aeon's discretised Covid3Month regression set"}
MARGIN = 0.03  # acceptance: within this of MiniRocket
BASELINES = ("minirocket", "dtw")


def ordered_sets() -> dict[str, tuple[str, str]]:
  """Shipped sets, cheapest first (train series x longest length x channels)."""

  def cost(paths):
    with open(paths[0], encoding="utf-8", errors="replace") as f:
      lines = [x for x in f if x.strip() and not x.startswith(("#", "%", "@"))]
    return len(lines) * max(len(x) for x in lines)

  shipped = ucr.shipped_datasets()
  return {k: shipped[k] for k in sorted(shipped, key=lambda k: cost(shipped[k]))}


def test_record(workdir: Path) -> dict | None:
  path = workdir / "metrics.jsonl"
  if not path.is_file():
    return None
  tests = [json.loads(x) for x in path.read_text().splitlines() if '"test"' in x]
  tests = [r for r in tests if r.get("split") == "test"]
  return tests[-1] if tests else None


def command(name: str, seed: int, workdir: Path, tiny: bool) -> list[str]:
  names = BASELINES if seed == 0 else ("minirocket",)
  return [
    sys.executable,
    "-m",
    "lstm_jax.main",
    f"--config=experiments/ucr.py:{name}{',tiny' if tiny else ''}",
    f"--config.seed={seed}",
    f"--config.data.baselines={names!r}",
    f"--workdir={workdir}",
  ]


def run_set(name: str, runs_dir: Path, seeds: int, train: bool, tiny: bool) -> list:
  """[(seed, test record, minutes, workdir)] of the finished seeds of `name`."""
  out = []
  for seed in range(seeds):
    workdir = runs_dir / f"{name}_s{seed}"
    if test_record(workdir) is None and train:
      cmd = command(name, seed, workdir, tiny)
      print("+", " ".join(cmd), flush=True)
      subprocess.run(cmd, cwd=REPO, check=False)
    record = test_record(workdir)
    if record is not None:
      start = (workdir / "config.json").stat().st_mtime
      minutes = ((workdir / "metrics.jsonl").stat().st_mtime - start) / 60
      out.append((seed, record, minutes, workdir))
  return out


def seed_ensemble(name: str, runs: list) -> float | None:
  """Test accuracy of the mean probability of the seeds' chosen classifiers."""
  from lstm_jax.tasks.ucr import PROBS_FILE

  paths = [w / PROBS_FILE for *_, w in runs]
  if len(runs) < 2 or not all(p.is_file() for p in paths):
    return None
  classes = json.loads((runs[0][3] / "data.json").read_text())["classes"]
  labels = ucr.encode_labels(ucr.load_ts(ucr.resolve(name)[1]).labels, classes)
  probs = np.mean([np.load(p) for p in paths], axis=0)
  return float(np.mean(probs.argmax(-1) == labels))


def _wtl(ours: list[float], theirs: list[float]) -> tuple[int, int, int]:
  diff = [round(a - b, 9) for a, b in zip(ours, theirs)]
  return sum(d > 0 for d in diff), sum(d == 0 for d in diff), sum(d < 0 for d in diff)


def summarize(name: str, runs: list) -> dict:
  """The row of one set: means, per-seed figures, W/T/L and acceptance."""
  ours = [r["accuracy"] for _, r, *_ in runs]
  mr = [r["minirocket/accuracy"] for _, r, *_ in runs if "minirocket/accuracy" in r]
  dtw = [r["dtw/accuracy"] for _, r, *_ in runs if "dtw/accuracy" in r]
  row = {
    "name": name,
    "seeds": [s for s, *_ in runs],
    "ours": ours,
    "ensemble": seed_ensemble(name, runs),
    "minirocket": mr,
    "dtw": dtw[0] if dtw else None,
    "lstm": [r["lstm/accuracy"] for _, r, *_ in runs if "lstm/accuracy" in r],
    "choices": [int(r.get("choice", -1)) for _, r, *_ in runs],
    "minutes": [m for *_, m, _ in runs],
  }
  mean = statistics.mean(ours)
  if mr:
    row["vs_minirocket"] = _wtl(ours, mr)
    row["ok_minirocket"] = mean >= statistics.mean(mr) - MARGIN
  if dtw:
    row["vs_dtw"] = _wtl(ours, [dtw[0]] * len(ours))
    row["ok_dtw"] = mean >= dtw[0]
  return row


def _f(values) -> str:
  if values is None or values == []:
    return "-"
  if isinstance(values, float):
    return f"{values:.3f}"
  if len(values) == 1:
    return f"{values[0]:.3f}"
  return f"{statistics.mean(values):.3f} +- {statistics.stdev(values):.3f}"


def table(rows: list[dict], seeds: int, tiny: bool) -> list[str]:
  """The markdown section: per-set table, archive means, W/T/L, acceptance."""
  lines = [
    BEGIN,
    f"## UCR/UEA: every shipped set, one config{' (tiny variant)' if tiny else ''}",
    "",
    "Written by `python benchmarks/ucr_all.py`: `experiments/ucr.py:NAME` with no",
    "per-set flag; MiniRocket and 1-NN DTW fit in the same run on the whole TRAIN",
    "file and scored on the same TEST file (test record). ours: mean +- std over",
    f"the seeds that finished (of {seeds}); ens: the seeds' mean probability;",
    "LSTM: the test accuracy of the best LSTM choice by the same validation rule",
    "(the ablation: what the LSTM alone reaches); choice: what validation picked",
    "per seed (0 mean, 1 max, 2 mean+fcn, 3 their ensemble, 4 MiniRocket-kernel",
    "ridge refit on all of TRAIN, 5 its mix with 3); W/T/L: seeds won/tied/lost",
    "against the baseline; minutes per run (wall, 2 cores, baselines included).",
    "",
    "| set | seeds | ours | ens | LSTM | MiniRocket | 1-NN DTW | ours-MR | ours-DTW "
    "| W/T/L vs MR | W/T/L vs DTW | choice | minutes |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
  ]
  for r in rows:
    mean = statistics.mean(r["ours"])
    d_mr = mean - statistics.mean(r["minirocket"]) if r["minirocket"] else None
    d_dtw = mean - r["dtw"] if r["dtw"] is not None else None
    name = r["name"] + (" (not UCR/UEA)" if r["name"] in NOT_ARCHIVE else "")
    lines.append(
      f"| {name} | {len(r['seeds'])} | {_f(r['ours'])} | {_f(r['ensemble'])} "
      f"| {_f(r['lstm'])} "
      f"| {_f(r['minirocket'])} | {_f(r['dtw'])} "
      f"| {'-' if d_mr is None else f'{d_mr:+.3f}'} "
      f"| {'-' if d_dtw is None else f'{d_dtw:+.3f}'} "
      f"| {'/'.join(map(str, r.get('vs_minirocket', ()))) or '-'} "
      f"| {'/'.join(map(str, r.get('vs_dtw', ()))) or '-'} "
      f"| {','.join(map(str, r['choices']))} | {_f(r['minutes'])} |"
    )
  archive = [r for r in rows if r["name"] not in NOT_ARCHIVE and r["minirocket"]]
  if archive:
    both = [r for r in archive if r["dtw"] is not None]
    means = {
      "ours": statistics.mean(statistics.mean(r["ours"]) for r in both or archive),
      "MiniRocket": statistics.mean(
        statistics.mean(r["minirocket"]) for r in both or archive
      ),
    }
    if both:
      means["1-NN DTW"] = statistics.mean(r["dtw"] for r in both)
    if all(r["lstm"] for r in both or archive):
      means["LSTM alone"] = statistics.mean(
        statistics.mean(r["lstm"]) for r in both or archive
      )
    ens = [r["ensemble"] for r in both or archive]
    if all(e is not None for e in ens):
      means["seed ensemble"] = statistics.mean(ens)
    per_set = lambda key, ref: _wtl(  # noqa: E731
      [statistics.mean(r["ours"]) for r in both or archive],
      [ref(r) for r in both or archive],
    )
    w_mr = per_set("mr", lambda r: statistics.mean(r["minirocket"]))
    lines += [
      "",
      f"Over the {len(both or archive)} UCR/UEA sets with both baselines: mean "
      "accuracy " + ", ".join(f"{k} {v:.3f}" for k, v in means.items()) + ".",
      f"Per set (means over seeds), ours vs MiniRocket {w_mr[0]}/{w_mr[1]}/"
      f"{w_mr[2]} (wins/ties/losses)"
      + (
        ", vs 1-NN DTW {}/{}/{}.".format(*per_set("dtw", lambda r: r["dtw"]))
        if both
        else "."
      ),
      "",
      "Acceptance on the mean over sets (ours >= 1-NN DTW: "
      + (
        ("met" if means["ours"] >= means["1-NN DTW"] else "missed")
        if "1-NN DTW" in means
        else "no DTW"
      )
      + f"; ours >= MiniRocket - {MARGIN}: "
      + ("met" if means["ours"] >= means["MiniRocket"] - MARGIN else "missed")
      + ").",
      "",
      "Acceptance per set (ours >= 1-NN DTW; ours >= MiniRocket - "
      f"{MARGIN}): "
      + "; ".join(
        f"{r['name']} "
        f"{'met' if r.get('ok_dtw') and r.get('ok_minirocket') else 'missed'}"
        for r in archive
      )
      + ".",
    ]
  return [*lines, END]


def write(path: Path, section: list[str]) -> None:
  """Replaces the marked section of `path` (or appends it)."""
  text = path.read_text() if path.is_file() else ""
  block = "\n".join(section)
  if BEGIN in text and END in text:
    head, rest = text.split(BEGIN, 1)
    text = head + block + rest.split(END, 1)[1]
  else:
    text = text.rstrip("\n") + ("\n\n" if text else "") + block + "\n"
  path.write_text(text)
  print(f"wrote {path}")


def main(argv: list[str] | None = None) -> list[dict]:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--runs_dir", default=str(REPO / "benchmarks" / "runs" / "ucr"))
  parser.add_argument("--only", default="", help="comma-separated set names")
  parser.add_argument("--seeds", type=int, default=3)
  parser.add_argument("--tiny", action="store_true", help="the seconds-long variant")
  parser.add_argument("--report_only", action="store_true")
  parser.add_argument("--out", default=str(REPO / "benchmarks" / "RESULTS.md"))
  args = parser.parse_args(argv)
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  only = [x for x in args.only.split(",") if x]
  sets = ordered_sets()
  unknown = sorted(set(only) - set(sets))
  if unknown:
    parser.error(f"--only: {unknown} not shipped; shipped: {', '.join(sets)}")
  runs_dir = Path(args.runs_dir)
  rows = []
  # Seed-major: every set gets seed 0 before any gets seed 1.
  runs = {name: [] for name in sets if not only or name in only}
  for seed in range(args.seeds):
    for name in runs:
      got = run_set(name, runs_dir, seed + 1, not args.report_only, args.tiny)
      runs[name] = got
  rows = [summarize(name, got) for name, got in runs.items() if got]
  write(Path(args.out), table(rows, args.seeds, args.tiny))
  return rows


if __name__ == "__main__":
  main()
