"""Every bad input to `lstm_jax.cli.main` and `lstm_jax.cli.sample`: one `error:` line.

Each case is a real command in its own subprocess (the exit status is the
truth) against its own copy of one finished tiny run (`finished_run` in
conftest.py), damaged as the case says. A case passes when:

* the exit status is non-zero;
* stderr has exactly one line starting `error: ` and ends with that message
  (a message listing several items continues on indented lines), which
  holds the case's phrases (the key, the file, the numbers); no traceback;
* the workdir copy is byte-identical afterwards (no file added, removed or
  changed), and a workdir that did not exist is not created.

The cases run three at a time from one module fixture (each test then checks
its own result), so the whole file costs about one process start per case.
Cases that need root (a read-only bind mount) are skipped with the reason
otherwise. The disk-full case (a small tmpfs) is its own test below.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support import tiny_run

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
TIMEOUT = 240


@dataclasses.dataclass(frozen=True)
class Case:
  """A bad input: the program, its arguments, what the error line must say.

  `args` are formatted with `run` (this case's workdir), `new` (a workdir
  that does not exist), `cfg` and `data` (directories of the files below).
  `setup(run)` damages the workdir copy before the snapshot; `tiny` adds the
  tiny run's flags (so the command would resume that run).
  """

  program: str
  args: tuple[str, ...]
  phrases: tuple[str, ...]
  setup: Callable[[Path], None] | None = None
  tiny: bool = True
  root: bool = False


def _write(name: str, text: str | bytes) -> Callable[[Path], None]:
  def setup(run: Path) -> None:
    path = run / name
    if isinstance(text, bytes):
      path.write_bytes(text)
    else:
      path.write_text(text)

  return setup


def _edit_metrics(line: int, new: bytes | None = None) -> Callable[[Path], None]:
  def setup(run: Path) -> None:
    path = run / "metrics.jsonl"
    lines = path.read_bytes().split(b"\n")
    if new is None:  # the step as a string
      record = json.loads(lines[line])
      record["step"] = str(record["step"])
      lines[line] = json.dumps(record).encode()
    else:
      lines[line] = new
    path.write_bytes(b"\n".join(lines))

  return setup


def _metrics_dir(run: Path) -> None:
  (run / "metrics.jsonl").unlink()
  (run / "metrics.jsonl").mkdir()
  (run / "metrics.jsonl" / "x").write_text("")


def _vocab_edit(edit: Callable[[list[str]], list[str]]) -> Callable[[Path], None]:
  def setup(run: Path) -> None:
    path = run / "vocab.json"
    chars = json.loads(path.read_text())["chars"]
    path.write_text(json.dumps({"chars": edit(chars)}))

  return setup


def _truncate_arrays(run: Path) -> None:
  """Every array file of every checkpoint cut to 10 bytes: none restorable."""
  for path in (run / "checkpoints").glob("*/state/ocdbt.process_0/d/*"):
    with open(path, "r+b") as f:
      f.truncate(10)


def _no_checkpoints(run: Path) -> None:
  shutil.rmtree(run / "checkpoints")


M, S = "lstm_jax.main", "lstm_jax.sample"
CFG = "--config={cfg}/"
CASES: dict[str, Case] = {
  # --- the config file (no tiny flags: the file itself is the problem) ---
  "config_missing": Case(
    M, (CFG + "nope.py", "--workdir={new}"), ("nope.py", "does not exist"), tiny=False
  ),
  "config_empty_flag": Case(
    M, ("--config=", "--workdir={new}"), ("--config is empty",), tiny=False
  ),
  "config_is_directory": Case(
    M, (CFG, "--workdir={new}"), ("is not a file",), tiny=False
  ),
  "config_syntax_error": Case(
    M,
    (CFG + "syntax.py", "--workdir={new}"),
    ("syntax.py:2", "SyntaxError"),
    tiny=False,
  ),
  "config_raises": Case(
    M,
    (CFG + "raises.py", "--workdir={new}"),
    ("raises.py:2", "RuntimeError: boom"),
    tiny=False,
  ),
  "config_no_get_config": Case(
    M, (CFG + "noget.py", "--workdir={new}"), ("noget.py", "no get_config"), tiny=False
  ),
  "config_returns_none": Case(
    M, (CFG + "none.py", "--workdir={new}"), ("none.py", "returned None"), tiny=False
  ),
  "config_unknown_variant": Case(
    M,
    ("--config=experiments/charlm.py:unknownvariant", "--workdir={new}"),
    ("experiments/charlm.py", "unknownvariant", "use 'tiny'"),
    tiny=False,
  ),
  "config_unknown_variant_with_override": Case(
    M,
    (
      "--config=experiments/charlm.py:unknownvariant",
      "--config.train.steps=3",
      "--workdir={new}",
    ),
    ("unknownvariant",),
    tiny=False,
  ),
  # --- config values ---
  "batch_size_zero": Case(M, ("--config.data.batch_size=0",), ("data.batch_size", "0")),
  "batch_size_negative": Case(
    M, ("--config.data.batch_size=-4",), ("data.batch_size", "-4")
  ),
  "eval_batch_size_zero": Case(
    M, ("--config.data.eval_batch_size=0",), ("data.eval_batch_size",)
  ),
  "eval_batch_size_negative": Case(
    M, ("--config.data.eval_batch_size=-1",), ("data.eval_batch_size", "-1")
  ),
  "seq_len_zero": Case(M, ("--config.data.seq_len=0",), ("data.seq_len", "0")),
  "seq_len_negative": Case(M, ("--config.data.seq_len=-32",), ("data.seq_len", "-32")),
  "proj_size_negative": Case(
    M, ("--config.model.lstm.proj_size=-1",), ("model.lstm.proj_size", "-1")
  ),
  "unroll_zero": Case(M, ("--config.model.lstm.unroll=0",), ("model.lstm.unroll", "0")),
  "hidden_size_zero": Case(
    M, ("--config.model.lstm.hidden_size=0",), ("model.lstm.hidden_size",)
  ),
  "dropout_one": Case(M, ("--config.model.lstm.dropout=1.0",), ("model.lstm.dropout",)),
  "cell_unknown": Case(
    M, ("--config.model.lstm.cell=gru",), ("model.lstm.cell", "'gru'")
  ),
  "valid_fraction_zero": Case(
    M, ("--config.data.valid_fraction=0.0",), ("data.valid_fraction",)
  ),
  "sample_temperature_nan": Case(
    M, ("--config.sample.temperature=nan",), ("sample.temperature", "nan")
  ),
  "checkpoint_keep_zero": Case(
    M, ("--config.checkpoint.keep=0",), ("checkpoint.keep",)
  ),
  "best_mode_unknown": Case(
    M,
    ("--config.checkpoint.best_mode=up",),
    ("checkpoint.best_mode", "'up'"),
  ),
  # --- the data ---
  "corpus_of_two_characters": Case(
    M, ("--config.data.path={data}/two.txt",), ("fewer than one batch", "2 characters")
  ),
  "corpus_of_two_characters_no_sample": Case(
    M,
    ("--config.data.path={data}/two.txt", "--config.sample.length=0"),
    ("fewer than one batch",),
  ),
  "data_path_is_directory": Case(
    M, ("--config.data.path={data}",), ("is a directory",)
  ),
  # --- the workdir ---
  "workdir_empty": Case(M, ("--workdir=",), ("--workdir is empty",)),
  "workdir_is_a_file": Case(
    M, ("--workdir={run}/vocab.json",), ("vocab.json", "not a directory")
  ),
  "config_json_a_list": Case(
    M,
    (),
    ("config.json", "JSON list, not an object"),
    _write("config.json", "[1, 2]\n"),
  ),
  "config_json_not_json": Case(
    M, (), ("config.json", "cannot be read"), _write("config.json", "{nope\n")
  ),
  "data_json_a_string": Case(
    M, (), ("data.json", "JSON str, not an object"), _write("data.json", '"x"\n')
  ),
  "metrics_non_object_line": Case(
    M, (), ("metrics.jsonl line 2", "JSON list"), _edit_metrics(1, b"[1, 2]")
  ),
  "metrics_string_step": Case(
    M, (), ("metrics.jsonl line 3", "non-integer", "'10'"), _edit_metrics(2)
  ),
  "metrics_invalid_utf8": Case(
    M, (), ("metrics.jsonl line 1", "not UTF-8"), _edit_metrics(0, b'\xff{"step": 5}')
  ),
  "metrics_a_directory": Case(M, (), ("metrics.jsonl", "is not a file"), _metrics_dir),
  "none_restorable": Case(
    M,
    (),
    ("None of the checkpoints", "step 30", "step 25", "Nothing was deleted"),
    _truncate_arrays,
  ),
  "read_only_workdir": Case(
    M, (), ("Read-only file system", "writable --workdir"), root=True
  ),
  "read_only_parent_of_new_workdir": Case(
    M, ("--workdir={run}/sub",), ("Read-only file system", "sub"), root=True
  ),
  # --- sampling ---
  "sample_negative_length": Case(S, ("--length=-1",), ("--length", "-1")),
  "sample_nan_temperature": Case(S, ("--temperature=nan",), ("--temperature", "nan")),
  "sample_negative_temperature": Case(
    S, ("--temperature=-0.5",), ("--temperature", "-0.5")
  ),
  "sample_empty_prompt": Case(S, ("--prompt=",), ("--prompt is empty",)),
  "sample_prompt_not_in_vocab": Case(
    S, ("--prompt=\u20ac",), ("not in the model's vocabulary", "\u20ac")
  ),
  "sample_unknown_checkpoint": Case(S, ("--checkpoint=newest",), ("--checkpoint",)),
  "sample_no_run": Case(S, ("--workdir={new}",), ("vocab.json is missing",)),
  "sample_empty_workdir": Case(S, ("--workdir=",), ("--workdir is empty",)),
  "sample_corrupt_vocab": Case(
    S, (), ("vocab.json", "cannot be read"), _write("vocab.json", '{"chars": [')
  ),
  "sample_vocab_a_list": Case(
    S, (), ("vocab.json", "JSON list"), _write("vocab.json", "[1]")
  ),
  "sample_vocab_duplicates": Case(
    S,
    (),
    ("vocab.json", "distinct single characters"),
    _vocab_edit(lambda c: [c[0], *c[:-1]]),
  ),
  "sample_vocab_smaller_than_checkpoint": Case(
    S,
    (),
    ("vocab.json has 100 characters", "vocabulary of 103"),
    _vocab_edit(lambda c: c[:-3]),
  ),
  "sample_vocab_larger_than_checkpoint": Case(
    S,
    (),
    ("vocab.json has 105 characters", "vocabulary of 103"),
    _vocab_edit(lambda c: [*c, "\u20ac", "\u00e9"]),
  ),
  "sample_corrupt_data_json": Case(
    S, (), ("data.json", "cannot be read"), _write("data.json", "{nope")
  ),
  "sample_data_json_a_list": Case(
    S, (), ("data.json", "JSON list"), _write("data.json", "[]")
  ),
  "sample_corrupt_config_json": Case(
    S, (), ("config.json", "cannot be read"), _write("config.json", "{")
  ),
  "sample_no_checkpoints": Case(S, (), ("holds no checkpoint",), _no_checkpoints),
  "sample_none_restorable": Case(
    S, (), ("None of the checkpoints", "Nothing was deleted"), _truncate_arrays
  ),
}


def _config_files(directory: Path) -> None:
  directory.mkdir()
  (directory / "syntax.py").write_text("import ml_collections\ndef get_config(:\n")
  (directory / "raises.py").write_text('x = 1\nraise RuntimeError("boom")\n')
  (directory / "noget.py").write_text("x = 1\n")
  (directory / "none.py").write_text("def get_config():\n  pass\n")


def _snapshot(directory: Path) -> dict[str, bytes | None]:
  """Every path under `directory`: a file's bytes, None for a directory."""
  if not directory.exists():
    return {}
  return {
    str(p.relative_to(directory)): (p.read_bytes() if p.is_file() else None)
    for p in sorted(directory.rglob("*"))
  }


def _command(case: Case, paths: dict[str, str]) -> list[str]:
  args = [a.format(**paths) for a in case.args]
  if case.program == M and case.tiny:
    return tiny_run.command(f"--workdir={paths['run']}", *args)
  if case.program == M:
    return [sys.executable, "-m", M, *args]
  return [sys.executable, "-m", S, f"--workdir={paths['run']}", *args]


def _run_cases(names, finished_run, base, env):
  """{case: (proc, snapshot before, snapshot after, new workdir created)}."""
  _config_files(base / "cfg")
  (base / "data").mkdir()
  (base / "data" / "two.txt").write_text("ab")
  jobs, mounts = {}, []
  for name in names:
    case = CASES[name]
    if case.root and not IS_ROOT:
      continue
    run = base / name / "run"
    shutil.copytree(finished_run, run)
    if case.setup:
      case.setup(run)
    if case.root:  # a read-only view of the copy
      subprocess.run(["mount", "--bind", str(run), str(run)], check=True)
      mounts.append(run)
      subprocess.run(["mount", "-o", "remount,ro,bind", str(run)], check=True)
    paths = {"run": str(run), "new": str(base / name / "new"), "cfg": str(base / "cfg")}
    paths["data"] = str(base / "data")
    jobs[name] = (_command(case, paths), run, base / name / "new")

  def execute(name):
    command, run, new = jobs[name]
    before = _snapshot(run)
    proc = subprocess.run(
      command,
      cwd=tiny_run.REPO,
      env=env,
      capture_output=True,
      text=True,
      timeout=TIMEOUT,
    )
    return proc, before, _snapshot(run), new.exists()

  try:
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
      done = dict(zip(jobs, pool.map(execute, jobs)))
  finally:
    for run in mounts:
      subprocess.run(["umount", str(run)], check=False)
  return done


# The default suite runs one or two cases of each kind (config file, config
# value, data, workdir, metrics, checkpoints, sampling): each case is a
# process start of ~2 s, and the kinds share their code path. `-m slow` runs
# every case and checks that no two share a message. Cases whose check is
# also tested in-process stay in the slow set: config_unknown_variant
# (tests/configs/experiment_configs_test.py::test_unknown_variant and
# ::test_parse_variants), dropout_one
# (tests/nn/lstm_spec_test.py::test_bad_value_names_the_key), workdir_is_a_file
# (tests/workdir/rundir_test.py::test_workdir_is_a_file).
DEFAULT = (
  "config_syntax_error", "batch_size_zero", "corpus_of_two_characters",
  "metrics_string_step", "none_restorable", "read_only_workdir",
  "sample_prompt_not_in_vocab", "sample_corrupt_vocab",
)  # fmt: skip
FAST = sorted(DEFAULT)
SLOW = sorted(n for n in CASES if n not in DEFAULT)


@pytest.fixture(scope="module")
def fast_base(tmp_path_factory):
  return tmp_path_factory.mktemp("bad_input")


@pytest.fixture(scope="module")
def results(finished_run, fast_base, env):
  return _run_cases(FAST, finished_run, fast_base, env)


@pytest.fixture(scope="module")
def slow_base(tmp_path_factory):
  return tmp_path_factory.mktemp("bad_slow")


@pytest.fixture(scope="module")
def slow_results(finished_run, slow_base, env):
  return _run_cases(SLOW, finished_run, slow_base, env)


def _error_line(proc: subprocess.CompletedProcess, case_dir: Path) -> str | None:
  """The run's one `error:` line with the case's own directory as `<case>`."""
  lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
  return lines[0].replace(str(case_dir), "<case>") if len(lines) == 1 else None


@pytest.mark.slow
def test_no_two_bad_inputs_share_a_message(results, slow_results, fast_base, slow_base):
  """Each case ends in its own error line: two cases of one program that hit
  the same check with the same message are one case twice. A case's own paths
  are replaced by one placeholder, so they do not make two messages differ;
  main and sample may share a message (both read config.json and the
  checkpoints)."""
  by_message: dict[tuple[str, str], list[str]] = {}
  both = {**results, **slow_results}
  for name, (proc, *_) in both.items():
    base = fast_base if name in results else slow_base
    line = _error_line(proc, base / name)
    if line is not None:  # the case's own test reports a missing or second line
      by_message.setdefault((CASES[name].program, line), []).append(name)
  # A case that checks an override does not change another case's message.
  same = [["config_unknown_variant", "config_unknown_variant_with_override"]]
  shared = {m: n for m, n in by_message.items() if len(n) > 1 and sorted(n) not in same}
  assert not shared, shared


@pytest.mark.parametrize("name", FAST)
def test_bad_input_is_one_error_line(name, results):
  _check(name, results)


@pytest.mark.slow
@pytest.mark.parametrize("name", SLOW)
def test_more_bad_input_is_one_error_line(name, slow_results):
  _check(name, slow_results)


def _check(name, results):
  case = CASES[name]
  if case.root and not IS_ROOT:
    pytest.skip("needs root to bind-mount a read-only workdir")
  proc, before, after, created = results[name]
  stderr = proc.stderr
  assert proc.returncode != 0, f"exit 0:\n{stderr[-3000:]}"
  assert "Traceback" not in stderr, stderr[-5000:]
  lines = [ln for ln in stderr.splitlines() if ln.strip()]
  errors = [i for i, ln in enumerate(lines) if ln.startswith("error: ")]
  assert len(errors) == 1, stderr[-3000:]
  # The error is the end of stderr: its line, then (for a message that lists
  # several items, e.g. each unreadable checkpoint) its indented details and
  # a closing sentence.
  message = "\n".join(lines[errors[0] :])
  assert all(ln.startswith("  ") for ln in lines[errors[0] + 1 : -1]), message
  for phrase in case.phrases:
    assert phrase in message, f"{phrase!r} not in {message!r}"
  assert sorted(after) == sorted(before), "files were added or removed"
  changed = [k for k in before if after[k] != before[k]]
  assert not changed, f"overwritten: {changed}"
  assert not created, "a new workdir was created"


def _mount_tmpfs(path: Path, size: str) -> None:
  path.mkdir(parents=True, exist_ok=True)
  subprocess.run(
    ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True
  )


# Two CLI runs. In the default suite the error-line path is the cases above
# (read_only_workdir: the same OSError handler, lstm_jax/errors.py), the save that never lands is
# tests/workdir/checkpoint_test.py::test_half_written_save_is_invisible
# (in-process), and the rerun's bit-identity is
# tests/system/resume_test.py::test_sigkill_then_resume_is_bit_identical.
@pytest.mark.slow
@pytest.mark.skipif(not IS_ROOT, reason="needs root to mount a small tmpfs")
def test_disk_full_during_a_save_then_rerun_is_bit_identical(
  tmp_path, env, finished_run
):
  """A tmpfs that holds two checkpoints but not the third: the save fails with
  one error line, the previous checkpoint restores, and the same command,
  after the disk is enlarged, ends bit-identical to an uninterrupted run."""
  from lstm_jax.runs import reader
  from tests.support.runs import assert_bit_identical, metrics_history

  mount = tmp_path / "disk"
  # One checkpoint of the tiny run is ~440 kB; 1200 kB holds steps 5 and 10.
  _mount_tmpfs(mount, "1200k")
  try:
    workdir = mount / "run"
    command = tiny_run.command(f"--workdir={workdir}")
    proc = subprocess.run(
      command,
      cwd=tiny_run.REPO,
      env=env,
      capture_output=True,
      text=True,
      timeout=TIMEOUT,
    )
    assert proc.returncode != 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-5000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines[-1].startswith("error: No space left on device writing "), lines[-1]
    # The file the OS names (a checkpoint's, or metrics.jsonl's), else the
    # workdir: never a line without a path.
    assert str(workdir) in lines[-1], lines[-1]
    assert sum(ln.startswith("error: ") for ln in lines) == 1
    previous = reader.open_run(str(workdir))
    assert 0 < previous.step < tiny_run.STEPS

    subprocess.run(["mount", "-o", "remount,size=16m", str(mount)], check=True)
    proc = subprocess.run(
      command,
      cwd=tiny_run.REPO,
      env=env,
      capture_output=True,
      text=True,
      timeout=TIMEOUT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"Resuming {workdir} at step {previous.step}/" in proc.stdout
    assert_bit_identical(workdir, finished_run, "after a full disk")
    assert metrics_history(workdir) == metrics_history(finished_run)
  finally:
    subprocess.run(["umount", "-l", str(mount)], check=False)
