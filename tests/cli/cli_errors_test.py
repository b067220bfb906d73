"""Bad input on the command line: a clear message, exit 1, nothing overwritten.

Each case runs `python -m lstm_jax.main` in a subprocess (the exit code is the
truth) against the workdir of a finished tiny run, and checks that:

* the exit code is non-zero and stderr names the problem (the key, the file,
  the numbers) without a Python traceback;
* every file in that workdir is byte-for-byte what it was, and no file was
  added or removed;
* a workdir that did not exist yet is not created.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from experiments import charlm
from tests.support import tiny_run


def _main(env, *args: str) -> subprocess.CompletedProcess:
  return subprocess.run(
    tiny_run.command(*args),
    cwd=tiny_run.REPO,
    env=env,
    capture_output=True,
    text=True,
    timeout=240,
  )


def _snapshot(directory: Path) -> dict[str, bytes]:
  return {
    str(p.relative_to(directory)): p.read_bytes()
    for p in sorted(directory.rglob("*"))
    if p.is_file()
  }


@pytest.fixture(scope="module")
def data_files(tmp_path_factory) -> dict[str, Path]:
  d = tmp_path_factory.mktemp("data")
  files = {
    "empty": d / "empty.txt",
    "latin1": d / "latin1.txt",
    "short": d / "short.txt",
  }
  files["empty"].write_bytes(b"")
  files["latin1"].write_bytes(
    "Caf\u00e9 cr\u00e8me br\u00fbl\u00e9e. ".encode("latin-1") * 200
  )
  # The tiny config needs 16 * 32 + 1 training characters; give it 300 (with
  # the sample prompt's characters, so that is not what fails).
  files["short"].write_text(("The cat sat. " * 30)[:300], encoding="utf-8")
  return files


_TINY = charlm.get_config("tiny")
CASES = {
  # name: (extra args, phrases the message must contain)
  "unknown_key": (["--config.train.stepz=5"], ["unknown config key", "stepz"]),
  "wrong_type": (["--config.train.steps=abc"], ["train.steps", "abc"]),
  "missing_file": (
    ["--config.data.path={missing}"],
    ["does not exist", "no_such_file.txt"],
  ),
  "empty_file": (["--config.data.path={empty}"], ["empty.txt", "is empty"]),
  "not_utf8": (
    ["--config.data.path={latin1}"],
    ["latin1.txt", "not UTF-8", "iconv", "Convert it"],
  ),
  "shorter_than_a_batch": (
    ["--config.data.path={short}"],
    ["fewer than one batch", "300 characters", "data.seq_len"],
  ),
  "incompatible_config": (
    [
      f"--config.model.lstm.hidden_size={_TINY.model.lstm.hidden_size // 2}",
      f"--config.optim.learning_rate={_TINY.optim.learning_rate / 10}",
    ],
    [
      "2 key(s) differ",
      f"model.lstm.hidden_size: {_TINY.model.lstm.hidden_size} (in workdir) vs "
      f"{_TINY.model.lstm.hidden_size // 2} (now)",
      f"optim.learning_rate: {_TINY.optim.learning_rate} (in workdir) vs "
      f"{_TINY.optim.learning_rate / 10} (now)",
      "--workdir",
    ],
  ),
}


# bad_input_test covers the same checks one level down; the default suite runs
# these three (each a process start), `-m slow` all of them.
DEFAULT = ("not_utf8", "shorter_than_a_batch", "incompatible_config")


@pytest.mark.parametrize(
  "case",
  [
    c if c in DEFAULT else pytest.param(c, marks=pytest.mark.slow)
    for c in sorted(CASES)
  ],
)
def test_bad_input_fails_clearly_and_touches_nothing(
  case, finished_run, data_files, tmp_path, env
):
  args, phrases = CASES[case]
  paths = {k: str(v) for k, v in data_files.items()}
  paths["missing"] = str(tmp_path / "no_such_file.txt")
  args = [a.format(**paths) for a in args]
  before = _snapshot(finished_run)

  proc = _main(env, f"--workdir={finished_run}", *args)

  assert proc.returncode != 0, proc.stdout
  for phrase in phrases:
    assert phrase in proc.stderr, f"{phrase!r} not in:\n{proc.stderr[-3000:]}"
  assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
  after = _snapshot(finished_run)
  assert sorted(after) == sorted(before), "files were added or removed"
  changed = [name for name in before if after[name] != before[name]]
  assert not changed, f"overwritten: {changed}"


@pytest.mark.parametrize(
  "case", ["unknown_key", pytest.param("not_utf8", marks=pytest.mark.slow)]
)
def test_bad_input_creates_no_workdir(case, data_files, tmp_path, env):
  args, phrases = CASES[case]
  args = [a.format(latin1=data_files["latin1"]) for a in args]
  workdir = tmp_path / "new_run"
  proc = _main(env, f"--workdir={workdir}", *args)
  assert proc.returncode != 0
  assert phrases[0] in proc.stderr
  assert not workdir.exists()


def test_config_by_absolute_path_from_another_directory(tmp_path, env):
  """`--config=/abs/repo/experiments/adding.py` from outside the clone finds
  its sibling `experiments.base` (the loader puts the clone on sys.path)."""
  env = {k: v for k, v in env.items() if k != "PYTHONPATH"}
  config = Path(tiny_run.REPO) / "experiments" / "adding.py"
  code = (
    "from lstm_jax.cli import experiment\n"
    f"print(experiment.load({str(config) + ':tiny'!r}).data.seq_len)\n"
  )
  proc = subprocess.run(
    [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
  )
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert proc.stdout.split() == ["20"]  # experiments/adding.py's tiny seq_len
