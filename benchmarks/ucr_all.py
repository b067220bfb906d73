r"""Every UCR/UEA set shipped in the installed aeon/sktime wheels: the default
`experiments/ucr.py` config (ours: the LSTM model) against same-run
MiniRocket and 1-NN DTW and the published LSTM-FCN / FCN figures.

  python benchmarks/ucr_all.py                  # every set, 3 seeds (hours on 2 cores)
  python benchmarks/ucr_all.py --only=GunPoint,PLAID --seeds=1
  python benchmarks/ucr_all.py --ablation --only=GunPoint --seeds=1
  python benchmarks/ucr_all.py --runs_dir=/tmp/u --report_only  # re-read runs
  python benchmarks/ucr_all.py --tiny --only=UnitTest --seeds=1 --runs_dir=/tmp/t

Sets: `lstm_jax.data.ucr.shipped_datasets()`, found by path inside the
wheels; nothing is downloaded (regression sets such as Covid3Month, Tecator
and CardanoSentiment declare no class labels and are not listed). Each run is
`python -m lstm_jax.main --config=experiments/ucr.py:NAME --config.seed=S`:
the default config for every set; `--ensemble` runs `:NAME,ensemble`
instead, which adds the opt-in kernel ensemble, scored after ours and never
changing it (ours is chosen among the LSTM choices alone; the ensemble's
figure is its own column).
The training file picks the candidate (the default trains on all of it;
`--ensemble` carves a validation fifth from it, which picks instead), and the
default tests the last checkpoint; the test file is scored once. The test record holds ours and the baselines fit
in the same run: MiniRocket + ridge (seeded, every seed) and 1-NN DTW
(deterministic, so only seed 0's run computes it: it is the slowest part on
the long sets). Runs go to `<runs_dir>/<NAME>_s<seed>`; a workdir with a
test record is read, not rerun. `--ablation` runs the `ablation` variant
instead (`<NAME>_ablation_s<seed>`: LSTM-FCN, its FCN branch alone and its
LSTM branch alone, trained side by side) and adds their table.

The table: per set, ours as mean +- sample std over seeds (each seed with its
own initialisation and batch order), the seed ensemble (mean test
probability of the seeds' chosen models: nothing chosen on test), each LSTM
candidate's own test accuracy, the kernel ensemble, the baselines, the
published figure, ours minus each, and minutes per run. Acceptance on the
mean over the archive sets: ours >= 1-NN DTW + 0.05 and ours >= MiniRocket
- 0.03; per set: within 0.03 of the published figure. The section between
the markers in RESULTS.md is replaced; the rest of the file is kept.
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
MARGIN = 0.03  # acceptance: within this of MiniRocket and of the published figure
DTW_MARGIN = 0.05  # acceptance: the mean at least this above 1-NN DTW
BASELINES = ("minirocket", "dtw")
# Published test accuracies of LSTM models (or FCN where no LSTM-FCN figure
# is honest): (accuracy, source).
PUBLISHED = {
  "GunPoint": (1.000, "LSTM-FCN, train-loss selection"),
  "ItalyPowerDemand": (0.962, "LSTM-FCN, train-loss selection"),
  "ArrowHead": (0.897, "LSTM-FCN, train-loss selection"),
  "OSULeaf": (0.984, "LSTM-FCN, train-loss selection"),
  "ACSF1": (0.898, "FCN, Fawaz et al. 2019"),
  "PickupGestureWiimoteZ": (0.744, "FCN, Fawaz et al. 2019"),
  "JapaneseVowels": (0.993, "FCN, Fawaz et al. 2019; MLSTM-FCN 1.00"),
}
# The default's candidates (m<i>/accuracy) and the ablation variant's.
CANDIDATES = ("LSTM-FCN", "time-major LSTM")
ABLATION = ("LSTM-FCN", "FCN alone", "LSTM alone")


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


def command(
  name: str,
  seed: int,
  workdir: Path,
  tiny: bool,
  ablation: bool = False,
  ensemble: bool = False,
) -> list[str]:
  names = BASELINES if seed == 0 and not ablation else ("minirocket",)
  variant = ",ablation" if ablation else ",ensemble" if ensemble else ""
  return [
    sys.executable,
    "-m",
    "lstm_jax.main",
    f"--config=experiments/ucr.py:{name}{variant}{',tiny' if tiny else ''}",
    f"--config.seed={seed}",
    f"--config.data.baselines={() if ablation else names!r}",
    f"--workdir={workdir}",
  ]


def run_set(
  name: str,
  runs_dir: Path,
  seeds: int,
  train: bool,
  tiny: bool,
  ablation: bool = False,
  ensemble: bool = False,
) -> list:
  """[(seed, test record, minutes, workdir)] of the finished seeds of `name`."""
  out = []
  for seed in range(seeds):
    workdir = runs_dir / f"{name}{'_ablation' if ablation else ''}_s{seed}"
    if test_record(workdir) is None and train:
      cmd = command(name, seed, workdir, tiny, ablation, ensemble)
      print("+", " ".join(cmd), flush=True)
      subprocess.run(cmd, cwd=REPO, check=False)
    record = test_record(workdir)
    if record is not None:
      out.append((seed, record, run_minutes(workdir), workdir))
  return out


def run_minutes(workdir: Path) -> float:
  """Wall minutes of a finished run: config.json written to the last record."""
  start = (workdir / "config.json").stat().st_mtime
  return ((workdir / "metrics.jsonl").stat().st_mtime - start) / 60


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


def _members(runs: list, count: int) -> list[list[float]]:
  """Per candidate i < count, its test accuracy (m<i>/accuracy) per seed."""
  return [
    [r[f"m{i}/accuracy"] for _, r, *_ in runs if f"m{i}/accuracy" in r]
    for i in range(count)
  ]


def summarize(name: str, runs: list) -> dict:
  """The row of one set: means, per-seed figures and acceptance."""
  ours = [r["accuracy"] for _, r, *_ in runs]
  mr = [r["minirocket/accuracy"] for _, r, *_ in runs if "minirocket/accuracy" in r]
  dtw = [r["dtw/accuracy"] for _, r, *_ in runs if "dtw/accuracy" in r]
  row = {
    "name": name,
    "seeds": [s for s, *_ in runs],
    "ours": ours,
    "ensemble": seed_ensemble(name, runs),
    "members": _members(runs, len(CANDIDATES)),
    "kernels": [
      r["ensemble/accuracy"] for _, r, *_ in runs if "ensemble/accuracy" in r
    ],
    "minirocket": mr,
    "dtw": dtw[0] if dtw else None,
    "published": PUBLISHED.get(name, (None,))[0],
    "choices": [int(r.get("choice", -1)) for _, r, *_ in runs],
    "minutes": [m for *_, m, _ in runs],
  }
  mean = statistics.mean(ours)
  if row["published"] is not None:
    row["ok_published"] = mean >= row["published"] - MARGIN
  return row


def _f(values) -> str:
  if values is None or values == []:
    return "-"
  if isinstance(values, float):
    return f"{values:.3f}"
  if len(values) == 1:
    return f"{values[0]:.3f}"
  return f"{statistics.mean(values):.3f} +- {statistics.stdev(values):.3f}"


def _d(a: float | None, b: float | None) -> str:
  return "-" if a is None or b is None else f"{a - b:+.3f}"


def _mean(values) -> float | None:
  return statistics.mean(values) if values else None


def table(rows: list[dict], seeds: int, tiny: bool) -> list[str]:
  """The markdown section: per-set table, archive means and acceptance."""
  lines = [
    BEGIN,
    f"## UCR/UEA: every shipped set, one config{' (tiny variant)' if tiny else ''}",
    "",
    "Written by `python benchmarks/ucr_all.py`. Ours = the LSTM model: the",
    "default `experiments/ucr.py:NAME` (LSTM-FCN and a time-major LSTM, one",
    "chosen on the training file), no per-set flag. ours: mean +- std over the seeds",
    f"that finished (of {seeds}); seed ens: the seeds' mean probability; LSTM-FCN,",
    "LSTM: each candidate's own test accuracy (not chosen by anything); kernel",
    "ens: the opt-in MiniRocket/LSTM ensemble (`:NAME,ensemble`, never ours);",
    "MiniRocket and 1-NN DTW fit in the same run on the whole TRAIN file and",
    "scored on the same TEST file; published: LSTM-FCN (train-loss selection,",
    "titu1994/LSTM-FCN) or FCN (Fawaz et al. 2019); choice: what was chosen",
    "per seed (0 LSTM-FCN, 1 time-major LSTM, 2 their ensemble);",
    "minutes per run (wall, 2 shared cores, baselines and kernel ensemble",
    "included).",
    "",
    "| set | seeds | ours | seed ens | LSTM-FCN | LSTM | kernel ens | MiniRocket "
    "| 1-NN DTW | published | ours-MR | ours-DTW | ours-pub | choice | minutes |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
  ]
  for r in rows:
    mean = statistics.mean(r["ours"])
    name = r["name"] + (" (not UCR/UEA)" if r["name"] in NOT_ARCHIVE else "")
    lines.append(
      f"| {name} | {len(r['seeds'])} | {_f(r['ours'])} | {_f(r['ensemble'])} "
      f"| {_f(r['members'][0])} | {_f(r['members'][1])} | {_f(r['kernels'])} "
      f"| {_f(r['minirocket'])} | {_f(r['dtw'])} | {_f(r['published'])} "
      f"| {_d(mean, _mean(r['minirocket']))} | {_d(mean, r['dtw'])} "
      f"| {_d(mean, r['published'])} "
      f"| {','.join(map(str, r['choices']))} | {_f(r['minutes'])} |"
    )
  archive = [r for r in rows if r["name"] not in NOT_ARCHIVE and r["minirocket"]]
  both = [r for r in archive if r["dtw"] is not None]
  if both:
    means = {
      "ours": statistics.mean(statistics.mean(r["ours"]) for r in both),
      "MiniRocket": statistics.mean(statistics.mean(r["minirocket"]) for r in both),
      "1-NN DTW": statistics.mean(r["dtw"] for r in both),
    }
    for label, i in (("LSTM-FCN", 0), ("time-major LSTM", 1)):
      if all(r["members"][i] for r in both):
        means[label] = statistics.mean(statistics.mean(r["members"][i]) for r in both)
    if all(r["kernels"] for r in both):
      means["kernel ensemble"] = statistics.mean(
        statistics.mean(r["kernels"]) for r in both
      )
    ens = [r["ensemble"] for r in both]
    if all(e is not None for e in ens):
      means["seed ensemble"] = statistics.mean(ens)
    ok_dtw = means["ours"] >= means["1-NN DTW"] + DTW_MARGIN
    ok_mr = means["ours"] >= means["MiniRocket"] - MARGIN
    pub = [r for r in rows if r["published"] is not None]
    lines += [
      "",
      f"Over the {len(both)} UCR/UEA sets with both baselines: mean accuracy "
      + ", ".join(f"{k} {v:.3f}" for k, v in means.items())
      + ".",
      "",
      f"Acceptance on the mean (ours >= 1-NN DTW + {DTW_MARGIN}: "
      f"{'met' if ok_dtw else 'missed'}; ours >= MiniRocket - {MARGIN}: "
      f"{'met' if ok_mr else 'missed'}).",
      "",
      f"Within {MARGIN} of the published figure: "
      + "; ".join(
        f"{r['name']} {'met' if r['ok_published'] else 'missed'}" for r in pub
      )
      + ".",
    ]
  return [*lines, END]


def ablation_table(rows: list[dict]) -> list[str]:
  """The ablation section: each branch's test accuracy per set."""
  lines = [
    "",
    "Ablation (`--ablation`: `experiments/ucr.py:NAME,ablation`, the three",
    "trained side by side in one run; test accuracy of each, mean over seeds):",
    "",
    "| set | seeds | " + " | ".join(ABLATION) + " |",
    "|---|---|" + "---|" * len(ABLATION),
  ]
  for r in rows:
    lines.append(
      f"| {r['name']} | {len(r['seeds'])} | "
      + " | ".join(_f(m) for m in r["members"])
      + " |"
    )
  return lines


def write(path: Path, section: list[str], begin: str = BEGIN, end: str = END) -> None:
  """Replaces the section of `path` between `begin` and `end` (or appends it)."""
  text = path.read_text() if path.is_file() else ""
  block = "\n".join(section)
  if begin in text and end in text:
    head, rest = text.split(begin, 1)
    text = head + block + rest.split(end, 1)[1]
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
  parser.add_argument(
    "--ablation", action="store_true", help="also the ablation runs (seed 0 only)"
  )
  parser.add_argument(
    "--ensemble", action="store_true", help="runs add the opt-in kernel ensemble"
  )
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
      got = run_set(
        name,
        runs_dir,
        seed + 1,
        not args.report_only,
        args.tiny,
        ensemble=args.ensemble,
      )
      runs[name] = got
  rows = [summarize(name, got) for name, got in runs.items() if got]
  section = table(rows, args.seeds, args.tiny)
  ablation = []
  for name in runs:
    got = run_set(
      name,
      runs_dir,
      1,
      args.ablation and not args.report_only,
      args.tiny,
      ablation=True,
    )
    if got:
      ablation.append(
        {
          "name": name,
          "seeds": [s for s, *_ in got],
          "members": _members(got, len(ABLATION)),
        }
      )
  if ablation:
    section = [*section[:-1], *ablation_table(ablation), section[-1]]
  write(Path(args.out), section)
  return rows


if __name__ == "__main__":
  main()
