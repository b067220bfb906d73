r"""Start a training run on every worker of a Cloud TPU VM (see docs/tpu.md).

  python -m lstm_jax.launch --name=my-tpu --zone=us-central2-b \
      --accelerator=v4-32 --version=tpu-ubuntu2204-base --create \
      --workdir=gs://my-bucket/runs/charlm -- \
      --config=experiments/charlm.py --config.parallel.mesh_shape="(-1,1)"

What it runs, in order, through `gcloud` (nothing else talks to the cloud):

1. `gcloud compute tpus tpu-vm describe NAME` to see whether the VM exists;
   with `--create`, `gcloud compute tpus tpu-vm create` if it does not.
2. `gcloud compute tpus tpu-vm scp --worker=all` of a `git archive` of this
   checkout (HEAD), then `pip install -e .[tpu]` of it on every worker.
3. `gcloud compute tpus tpu-vm ssh NAME --worker=all --command=...` with the
   same `python -m lstm_jax.main ...` on every worker. On a TPU VM slice
   `jax.distributed.initialize()` needs no arguments (`lstm_jax.parallel.distributed`
   calls it when TPU_WORKER_HOSTNAMES lists several workers), so the command
   is identical on all of them.

`--dry-run` prints every command instead of running it (and assumes the VM
exists unless `--create`), which is how it is tested.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from collections.abc import Sequence

REMOTE_DIR = "lstm_jax"
ARCHIVE = "/tmp/lstm_jax.tar.gz"


def _tpu(args: argparse.Namespace, verb: str, *rest: str) -> list[str]:
  cmd = ["gcloud", "compute", "tpus", "tpu-vm", verb, *rest]
  cmd += [f"--zone={args.zone}"]
  if args.project:
    cmd += [f"--project={args.project}"]
  return cmd


def commands(args: argparse.Namespace, exists: bool) -> list[list[str]]:
  """Every command the launch runs, in order (after the existence check)."""
  cmds = []
  if not exists:
    cmds.append(
      _tpu(
        args,
        "create",
        args.name,
        f"--accelerator-type={args.accelerator}",
        f"--version={args.version}",
        *(["--spot"] if args.spot else []),
      )
    )
  cmds.append(["git", "archive", "--format=tar.gz", f"--output={ARCHIVE}", "HEAD"])
  cmds.append(_tpu(args, "scp", ARCHIVE, f"{args.name}:{ARCHIVE}", "--worker=all"))
  install = (
    f"mkdir -p {REMOTE_DIR} && tar -xzf {ARCHIVE} -C {REMOTE_DIR} && "
    f"cd {REMOTE_DIR} && pip install -q -e '.[tpu]'"
  )
  cmds.append(_tpu(args, "ssh", args.name, "--worker=all", f"--command={install}"))
  train = [
    "python",
    "-m",
    "lstm_jax.main",
    f"--workdir={args.workdir}",
    *args.train,
  ]
  run = f"cd {REMOTE_DIR} && {shlex.join(train)}"
  cmds.append(_tpu(args, "ssh", args.name, "--worker=all", f"--command={run}"))
  return cmds


def parse(argv: Sequence[str]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
    prog="python -m lstm_jax.launch",
    description=__doc__.split("\n\n")[0],
    # The example and the steps of the module docstring; after `--` come
    # lstm_jax.cli.main's flags (`python -m lstm_jax.main --help`: the
    # experiments and the --config.KEY=VALUE overrides).
    epilog="example:\n"
    + __doc__.split("\n\n", 1)[1]
    + "\nAfter --: lstm_jax.cli.main's flags; `python -m lstm_jax.main --help` lists"
    " the experiments and the --config.KEY=VALUE overrides.",
    formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  parser.add_argument("--name", required=True, help="TPU VM name")
  parser.add_argument("--zone", required=True)
  parser.add_argument("--project", default="")
  parser.add_argument("--accelerator", default="v4-8", help="e.g. v4-32")
  parser.add_argument("--version", default="tpu-ubuntu2204-base")
  parser.add_argument("--create", action="store_true", help="create if missing")
  parser.add_argument("--spot", action="store_true", help="create as a spot VM")
  parser.add_argument("--workdir", required=True, help="shared (gs://...) run dir")
  parser.add_argument("--dry-run", action="store_true", help="print, run nothing")
  parser.add_argument("train", nargs="*", help="after --: lstm_jax.cli.main flags")
  return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
  args = parse(sys.argv[1:] if argv is None else argv)
  describe = _tpu(args, "describe", args.name)
  if args.dry_run:
    print(shlex.join(describe))
    exists = not args.create
  else:
    exists = subprocess.run(describe, capture_output=True).returncode == 0
    if not exists and not args.create:
      print(f"error: TPU VM {args.name!r} not found; pass --create", file=sys.stderr)
      return 1
  for cmd in commands(args, exists):
    print(shlex.join(cmd), flush=True)
    if not args.dry_run:
      subprocess.run(cmd, check=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
