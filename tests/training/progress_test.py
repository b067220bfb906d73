"""The progress bar: its ETA leaves out the compiling first step, it names
the step of each record and its eval value by the split, the best eval step agrees with the checkpoint
manager on ties, and warnings print on their own line above it."""

import logging
import re
import sys
import warnings

from lstm_jax.training import metrics


class _Clock:
  """A clock the test moves by hand."""

  def __init__(self):
    self.now = 100.0

  def __call__(self) -> float:
    return self.now


def _timing(line: str) -> tuple[str, str, str]:
  """(elapsed, remaining, rate) of a tqdm line "... [00:08<01:13,  2.00step/s...]"."""
  match = re.search(r"\[([^<]+)<([^,]+), *([^,\]]+)step/s", line)
  assert match, line
  return match.groups()


def test_eta_starts_after_the_first_step(tmp_path):
  clock = _Clock()
  with metrics.MetricWriter(str(tmp_path), 150, clock=clock) as writer:
    clock.now += 7.0  # the first step compiles
    writer.advance(1)
    assert _timing(writer.progress) == ("00:07", "?", "?")
    clock.now += 1.0  # two more steps in one second
    writer.advance(3)
    elapsed, remaining, rate = _timing(writer.progress)
  # Steps after the first: 2 in 1 s; 147 left at 2 steps/s is 73.5 s.
  assert (elapsed, remaining, float(rate)) == ("00:08", "01:13", 2.0)


def test_eta_after_a_resume_starts_after_its_first_step(tmp_path):
  clock = _Clock()
  with metrics.MetricWriter(str(tmp_path), 100, initial_step=40, clock=clock) as writer:
    clock.now += 30.0
    writer.advance(41)
    clock.now += 2.0
    writer.advance(45)
    elapsed, remaining, rate = _timing(writer.progress)
  assert (elapsed, remaining, float(rate)) == ("00:32", "00:27", 2.0)  # 55 / 2 s


def test_the_bar_is_at_the_step_of_each_eval_line(tmp_path, capsys):
  with metrics.MetricWriter(str(tmp_path), 40, headline="exact_match") as writer:
    writer.advance(19)  # the loop's count lags the step it dispatched
    writer.write(20, "eval", {"exact_match": 0.0})
    assert " 20/40 " in writer.progress
    # Named by its split, as in metrics.jsonl ("split": "eval"): the UCR
    # default's eval split is its training file, not a validation part.
    assert "eval_exact_match=0.0000" in writer.progress
    writer.advance(29)
    writer.write(30, "train", {"loss": 2.0})
    assert " 30/40 " in writer.progress
  assert "step 20 eval: exact_match=0 " in capsys.readouterr().out


def test_best_of_equal_values_is_the_latest_step(tmp_path, capsys):
  """Orbax's best_step sorts stably and takes the last: of equal values the
  latest step is the kept best checkpoint (tasks_test checks a run's closing
  "Best checkpoint" line against the eval line)."""
  with metrics.MetricWriter(str(tmp_path), 60, headline="acc", minimize=False) as w:
    w.write(20, "eval", {"acc": 0.5})
    w.write(40, "eval", {"acc": 0.5})
    w.write(60, "eval", {"acc": 0.25})
  lines = capsys.readouterr().out.splitlines()
  assert [line.split(" | ")[1] for line in lines if " eval: " in line] == [
    "best acc 0.5000 (step 20)",
    "best acc 0.5000 (step 40)",
    "best acc 0.5000 (step 40)",
  ]


def _print_warning(message, category, filename, lineno, file=None, line=None):
  # Python's default: the formatted warning on stderr. pytest records
  # warnings instead of printing them, so the test installs the default back.
  sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def test_a_warning_prints_on_its_own_line(tmp_path, capsys):
  with warnings.catch_warnings():
    warnings.simplefilter("always")
    warnings.showwarning = _print_warning
    with metrics.MetricWriter(str(tmp_path), 10) as writer:
      writer.advance(1)
      warnings.warn("an optional extra is missing", UserWarning, stacklevel=1)
    assert warnings.showwarning is _print_warning  # restored at close
  err = capsys.readouterr().err
  pieces = re.split(r"[\r\n]", err)
  (warned,) = [p for p in pieces if "UserWarning: an optional extra" in p]
  assert warned.startswith(__file__), err
  assert any("1/10" in p for p in pieces)  # the bar was drawn before it


def test_a_log_record_prints_on_its_own_line(tmp_path, capsys):
  handler = logging.StreamHandler(sys.stderr)  # like absl's: stderr
  root = logging.getLogger()
  root.addHandler(handler)
  try:
    with metrics.MetricWriter(str(tmp_path), 10) as writer:
      writer.advance(1)
      logging.getLogger("lstm_jax.test").warning("matplotlib is missing")
  finally:
    root.removeHandler(handler)
  assert handler not in root.handlers  # the original, restored at close
  pieces = re.split(r"[\r\n]", capsys.readouterr().err)
  (logged,) = [p for p in pieces if "matplotlib is missing" in p]
  assert logged == "matplotlib is missing"
