r"""UCR/UEA choices made on TRAIN alone: a development split in place of TEST.

  python benchmarks/ucr_dev.py --only=GunPoint,ArrowHead --variants=default,long
  python benchmarks/ucr_dev.py --report_only

Each set's TRAIN file is split (stratified, seeded by --split_seed) into a
development part and a held-out part, written as a .ts pair; the default
`experiments/ucr.py` config then trains on the development part exactly as
it trains on TRAIN (its own validation split and candidate choice) and
scores the held-out part where it would score TEST. The TEST file
is never read, so a variant that wins here may become a default without any
test figure having chosen it. Variants are config overrides (VARIANTS);
runs go to `<runs_dir>/<NAME>_<variant>_s<seed>` and a finished run is read,
not rerun. The table (held-out accuracy, mean over seeds, and minutes per
run) replaces its marked section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
  sys.path.insert(0, str(REPO))

import ucr_all  # noqa: E402  (benchmarks/: the record reader and the writer)

from lstm_jax.data import ucr  # noqa: E402

BEGIN, END = "<!-- ucr_dev: begin -->", "<!-- ucr_dev: end -->"
# The FCN's LayerNorm, the default before `batch_norm` was adopted, and every
# variant's before it.
LAYERNORM = ("--config.model.fcn_norm=layer",)
# Each variant is spelled out against the current default, so a name keeps
# meaning the same configuration when the default moves. A fifth of the
# training part held out for validation (which chooses the candidate), the
# default before `all_train` was adopted, and every variant's before it.
VALID20 = (
  *LAYERNORM,
  "--config.data.valid_fraction=0.2",
  "--config.train.eval_every=50",
)
# The schedule of 1800 steps, the default before `steps3600` was adopted.
STEPS1800 = (*VALID20, "--config.train.steps=1800")
# The LSTM of 128 cells over 1800 steps, the default before the study of the
# LSTM branch.
CELLS128 = ("--config.model.lstm.hidden_size=128", *STEPS1800)
# `previous`: the default before the development-split study (600 steps,
# early stop after 4 evaluations, validation's best checkpoint, the training
# part's scale, 128 cells).
PREVIOUS = (
  *VALID20,
  "--config.model.lstm.hidden_size=128",
  "--config.train.steps=600",
  "--config.train.early_stop_patience=4",
  "--config.checkpoint.best_metric=eval/score",
  "--config.data.normalization=train",
)
# `last`: the authors' protocol, 1800 steps with no early stop and the last
# checkpoint tested (validation only chooses the candidate), on the training
# part's scale, 128 cells.
LAST = (*CELLS128, "--config.data.normalization=train")
# What each variant changes in the default config (none: the default itself).
VARIANTS = {
  "default": (),
  "previous": PREVIOUS,
  # `previous` without the FCN's per-step LayerNorm.
  "no_norm": (*PREVIOUS, "--config.model.fcn_norm=none"),
  # 1800 steps, no early stop; the checkpoint is still validation's best.
  "long": (*LAST, "--config.checkpoint.best_metric=eval/score"),
  "last": LAST,
  # `previous` with the FCN at full time resolution on series over 256 steps.
  "full_res": (*PREVIOUS, "--config.model.fcn_max_steps=0"),
  # `last` with the FCN without its LayerNorm (which, per step over
  # channels, discards each window's amplitude).
  "last_no_norm": (*LAST, "--config.model.fcn_norm=none"),
  # `last` with the FCN's norm per series over steps and channels.
  "last_seqnorm": (*LAST, "--config.model.fcn_norm=sequence"),
  # `last` with each series z-normalised on its own.
  "last_series": (*CELLS128, "--config.data.normalization=series"),
  # 128 LSTM cells, not 32 (the authors searched 8-128), over 1800 steps.
  "cells128": CELLS128,
  # `cells128` with training-batch augmentation (noise and magnitude).
  "augment": (
    *CELLS128,
    "--config.data.jitter_std=0.05",
    "--config.data.scale_std=0.1",
  ),
  # `cells128` with 10% of the training file for validation, not 20%.
  "valid10": (*CELLS128, "--config.data.valid_fraction=0.1"),
  # The default over 1800 steps, not 3600.
  "steps1800": STEPS1800,
  # 3600 steps, the default (360 epochs of OSULeaf's 160 training series;
  # about 510 of the 112 that train in its development part).
  "steps3600": (*VALID20, "--config.train.steps=3600"),
  # 16 LSTM cells, not 32, over 1800 steps.
  "cells16": ("--config.model.lstm.hidden_size=16", *STEPS1800),
  # The whole training part trains (no validation part), the
  # candidate chosen on it, as the LSTM-FCN authors select on the training
  # loss; evaluated every 200 steps (a log of the training fit, which chooses
  # nothing before the end), not 50.
  "all_train": (
    *LAYERNORM,
    "--config.data.valid_fraction=0",
    "--config.train.eval_every=200",
  ),
  # The default: the papers' BatchNorm in the FCN in place of LayerNorm
  # (the batch's statistics in training, the training part's for the choice
  # and the held-out part).
  "batch_norm": ("--config.model.fcn_norm=batch",),
  # `cells128` with the FCN beside the time-major LSTM, not the shuffled one.
  "time_major_fcn": (*CELLS128, "--config.model.candidates=('mean+fcn', 'mean')"),
}
HELD_OUT = 0.3  # fraction of each class of TRAIN that plays TEST


def write_ts(path: Path, name: str, data: ucr.TsData, rows: np.ndarray) -> None:
  """The series `rows` of `data` as a .ts file the loader reads back exactly."""
  series = [data.series[i] for i in rows]
  lengths = {len(s) for s in series}
  header = [
    f"@problemName {name}",
    "@timeStamps false",
    "@missing false",
    f"@univariate {str(data.num_channels == 1).lower()}",
    f"@dimensions {data.num_channels}",
    f"@equalLength {str(len(lengths) == 1).lower()}",
    *([f"@seriesLength {lengths.pop()}"] if len(lengths) == 1 else []),
    "@classLabel true " + " ".join(data.metadata["classlabel"]),
    "@data",
  ]
  lines = [
    ":".join(",".join(repr(float(v)) for v in s[:, c]) for c in range(s.shape[1]))
    + f":{data.labels[i]}"
    for s, i in zip(series, rows)
  ]
  path.write_text("\n".join(header + lines) + "\n")


def dev_pair(name: str, out: Path, split_seed: int) -> tuple[Path, Path]:
  """(development, held-out) .ts files cut from `name`'s TRAIN file."""
  out.mkdir(parents=True, exist_ok=True)
  dev, held = out / f"{name}_DEV.ts", out / f"{name}_HELDOUT.ts"
  if not (dev.is_file() and held.is_file()):
    train = ucr.load_ts(ucr.resolve(name)[0])  # TRAIN only
    labels = np.asarray(train.labels)
    keep, hold = ucr.stratified_split(labels, HELD_OUT, split_seed)
    write_ts(dev, f"{name}_dev", train, keep)
    write_ts(held, f"{name}_heldout", train, hold)
  return dev, held


def run(
  name: str, variant: str, seed: int, runs_dir: Path, split_seed: int, train: bool
):
  """(held-out accuracy, minutes) of one run, or None if it has not finished."""
  workdir = runs_dir / f"{name}_{variant}_s{seed}"
  if ucr_all.test_record(workdir) is None and train:
    dev, held = dev_pair(name, runs_dir / "data", split_seed)
    cmd = [
      sys.executable, "-m", "lstm_jax.main", "--config=experiments/ucr.py",
      f"--config.data.train_path={dev}", f"--config.data.test_path={held}",
      f"--config.seed={seed}", "--config.data.baselines=()",
      *VARIANTS[variant], f"--workdir={workdir}",
    ]  # fmt: skip
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=REPO, check=False)
  record = ucr_all.test_record(workdir)
  if record is None:
    return None
  return record["accuracy"], ucr_all.run_minutes(workdir)


def table(results: dict, names: list[str], variants: list[str]) -> list[str]:
  """Held-out accuracy per set and variant (mean over seeds [n]) and minutes."""
  lines = [
    BEGIN,
    "## UCR/UEA development splits (TRAIN only; nothing read from TEST)",
    "",
    "Written by `python benchmarks/ucr_dev.py`: held-out accuracy on 30% of",
    "each set's TRAIN file after training the default config (with the",
    "variant's overrides) on the other 70%; mean over seeds [seeds], minutes",
    "per run in parentheses.",
    "",
    "| set | " + " | ".join(variants) + " |",
    "|---|" + "---|" * len(variants),
  ]
  for name in names:
    cells = []
    for v in variants:
      got = results.get((name, v), [])
      if not got:
        cells.append("-")
        continue
      acc = statistics.mean(a for a, _ in got)
      mins = statistics.mean(m for _, m in got)
      cells.append(f"{acc:.3f} [{len(got)}] ({mins:.1f})")
    lines.append(f"| {name} | " + " | ".join(cells) + " |")
  return [*lines, END]


def main(argv: list[str] | None = None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument(
    "--runs_dir", default=str(REPO / "benchmarks" / "runs" / "ucr_dev")
  )
  parser.add_argument("--only", default="GunPoint,ArrowHead,OSULeaf")
  parser.add_argument("--variants", default=",".join(VARIANTS))
  parser.add_argument("--seeds", type=int, default=1)
  parser.add_argument("--split_seed", type=int, default=0)
  parser.add_argument("--report_only", action="store_true")
  parser.add_argument("--out", default=str(REPO / "benchmarks" / "RESULTS.md"))
  args = parser.parse_args(argv)
  names = [n for n in args.only.split(",") if n]
  variants = [v for v in args.variants.split(",") if v]
  unknown = sorted(set(variants) - set(VARIANTS))
  if unknown:
    parser.error(f"--variants: unknown {unknown}; known: {sorted(VARIANTS)}")
  results: dict = {}
  runs_dir = Path(args.runs_dir)
  for seed in range(args.seeds):
    for name in names:
      for v in variants:
        got = run(name, v, seed, runs_dir, args.split_seed, not args.report_only)
        if got is not None:
          results.setdefault((name, v), []).append(got)
  section = table(results, names, variants)
  print("\n".join(section))
  ucr_all.write(Path(args.out), section, BEGIN, END)
  return results


if __name__ == "__main__":
  main()
