"""Metrics: host-side reduction and the writers (JSONL, TensorBoard, progress).

Steps return metrics as (sum, weight) pairs; `summarize` adds them up over
steps or eval batches in float64 and divides once, so a mean over a log window
or a whole validation split is exact, not a mean of means.
`TrainLog` does that for the train steps since the last log, leaves
non-finite steps out of the means, and stops a run that keeps diverging.

`MetricWriter` writes each record, on process 0 only, to three places with the
same Python floats: `<workdir>/metrics.jsonl` (one JSON object per line,
`{"step", "split", <name>: value}`, full precision), TensorBoard event files
in the workdir (tags `<split>/<name>`; TensorBoard stores float32), and the
progress bar / log line. On resume, records after the resumed step (written
by the interrupted run after its last checkpoint) are dropped from the JSONL
file and purged in TensorBoard, so the files show one history.
"""

from __future__ import annotations

import collections
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jax
import numpy as np
from absl import logging

from lstm_jax.errors import DataError, DivergenceError
from lstm_jax.training import tensorboard
from lstm_jax.workdir.rundir import METRICS_FILE


def summarize(pairs: Iterable[Mapping[str, tuple[Any, Any]]]) -> dict[str, float]:
  """Sums (sum, weight) pairs per name and returns sum / weight (NaN if 0)."""
  sums: dict[str, list[float]] = {}
  for metrics in pairs:
    for name, (total, weight) in metrics.items():
      acc = sums.setdefault(name, [0.0, 0.0])
      acc[0] += float(np.asarray(total, np.float64))
      acc[1] += float(np.asarray(weight, np.float64))
  return {k: (s / w if w > 0 else math.nan) for k, (s, w) in sums.items()}


def read_jsonl(path: str) -> list[dict[str, Any]]:
  """The records of a metrics.jsonl file (a torn last line is ignored).

  Raises:
    DataError: `path` is a directory, is not UTF-8, or a line other than a
      torn last one is not a JSON object with an integer "step"; the message
      names the file and line. Resuming would otherwise rewrite (and lose)
      the history, so a damaged file stops the run instead.
  """
  records = []
  if not os.path.exists(path):
    return records
  if not os.path.isfile(path):
    raise DataError(f"{path} is not a file; move it away to start a new history.")
  with open(path, "rb") as f:
    lines = f.read().split(b"\n")
  torn = len(lines) - 1  # the text after the last newline (a killed write)
  for number, raw in enumerate(lines, 1):
    if not raw.strip():
      continue
    try:
      record = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
      problem = f"is not UTF-8 (byte {e.start} of the line)"
    except json.JSONDecodeError as e:
      if number - 1 == torn:
        continue
      problem = f"is not JSON ({e.msg})"
    else:
      step = record.get("step") if isinstance(record, dict) else None
      if isinstance(step, int) and not isinstance(step, bool):
        records.append(record)
        continue
      problem = (
        f'has a non-integer "step" {step!r}'
        if isinstance(record, dict)
        else f"holds a JSON {type(record).__name__}, not an object"
      )
    raise DataError(
      f"{path} line {number} {problem}; it is not what this program writes. "
      "Repair or move the file away, then rerun."
    )
  return records


def _json_value(value: float) -> float | None:
  # Strict JSON has no NaN or Infinity (Python would write bare `NaN`
  # tokens that other parsers reject): a non-finite value is written as
  # null; TensorBoard keeps the float itself.
  return value if math.isfinite(value) else None


def _truncate_jsonl(path: str, last_step: int) -> list[dict[str, Any]]:
  # A "test" record is the end-of-run evaluation; a run that starts again
  # recomputes it when it ends, so the file never holds two.
  records = [
    r
    for r in read_jsonl(path)
    if r.get("step", 0) <= last_step and r.get("split") != "test"
  ]
  tmp = f"{path}.tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    f.writelines(json.dumps(r, allow_nan=False) + "\n" for r in records)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)
  return records


def _duration(seconds: float) -> str:
  minutes, seconds = divmod(int(seconds), 60)
  hours, minutes = divmod(minutes, 60)
  return (
    f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s"
  )


class MetricWriter:
  """JSONL + TensorBoard + tqdm progress bar, active on process 0 only.

  The bar counts finished steps (the trainer reports them through `advance`)
  and shows the latest train loss and the latest value of the `headline`
  eval metric; each eval also prints one line with every eval metric, the
  best headline value so far (this run's history included) and the time
  since this process started training.

  A record at a step means the step has finished, so `write` also moves the
  bar there: the bar and the eval line name the same step. The best step is
  the latest of equal values, as the checkpoint manager keeps it (the run's
  closing "Best checkpoint" line names the same step).

  Args:
    workdir: run directory.
    total_steps: length of the progress bar.
    initial_step: the step the run starts (or resumes) from.
    headline: the eval metric of the bar and the "best" of the eval line
      (e.g. "bpc"; "" = the first one), and `minimize` its direction.
    clock: seconds, monotonic, for the bar's rate and the elapsed time
      (tests pass a fake one).
  """

  def __init__(
    self,
    workdir: str,
    total_steps: int,
    initial_step: int = 0,
    headline: str = "",
    minimize: bool = True,
    clock: Callable[[], float] = time.perf_counter,
  ):
    self.enabled = jax.process_index() == 0
    self._bar = self._tb = self._jsonl = None
    self._headline, self._minimize = headline, minimize
    self._best: tuple[float, int] | None = None
    self._clock = clock
    self._start = clock()
    if not self.enabled:
      return
    from lstm_jax.training import progress  # imports tqdm (slow): process 0 only

    path = os.path.join(workdir, METRICS_FILE)
    history = _truncate_jsonl(path, initial_step) if os.path.exists(path) else []
    self._jsonl = open(path, "a", encoding="utf-8")  # noqa: SIM115
    # Events a killed run wrote after its last checkpoint are purged, and
    # records TensorBoard lost (written but not yet synced at the kill) are
    # written again from the JSONL history; see lstm_jax.training.tensorboard.
    shown = tensorboard.read_scalars(workdir) if history else set()
    missing = [r for r in history if not _shown(r, shown)]
    purge = min([initial_step + 1, *(r["step"] for r in missing)])
    self._tb = tensorboard.EventWriter(workdir, purge_step=purge)
    for record in history:
      if record["step"] >= purge:
        self._tensorboard(record)
      if record.get("split") == "eval":
        self._track_best(record, int(record["step"]))
    self._tb.sync()
    self._bar = progress.Progress(total_steps, initial_step, clock)

  def _tensorboard(self, record: Mapping[str, Any]) -> None:
    for name, value in record.items():
      if name not in ("step", "split"):
        value = math.nan if value is None else value
        self._tb.add_scalar(f"{record['split']}/{name}", value, int(record["step"]))

  def _track_best(self, values: Mapping[str, Any], step: int) -> None:
    names = [k for k in values if k not in ("step", "split")]
    self._headline = self._headline or (names[0] if names else "")
    value = values.get(self._headline)
    if value is None or math.isnan(value):
      return
    if self._best is None or (
      value <= self._best[0] if self._minimize else value >= self._best[0]
    ):
      self._best = (value, step)

  def write(self, step: int, split: str, values: Mapping[str, float]) -> None:
    """One record: `values` (Python floats) at `step` for `split`."""
    if not self.enabled:
      return
    values = {k: float(v) for k, v in values.items()}
    record = {"step": int(step), "split": split}
    record.update({k: _json_value(v) for k, v in values.items()})
    self._jsonl.write(json.dumps(record, allow_nan=False) + "\n")
    self._jsonl.flush()
    self._tensorboard({"step": step, "split": split, **values})
    text = " ".join(f"{k}={v:.6g}" for k, v in values.items())
    logging.info("step %d %s: %s", step, split, text)
    if split in ("train", "eval"):
      self.advance(step)
    if split == "train" and "loss" in values:
      self._bar.set("loss", f"{values['loss']:.4f}")
      if "tokens_per_sec" in values:
        self._bar.set("tok/s", f"{values['tokens_per_sec']:.0f}")
    elif split == "eval":
      self._track_best(values, step)
      if self._headline in values:  # named by the split ("eval"), whatever it reads
        self._bar.set(f"eval_{self._headline}", f"{values[self._headline]:.4f}")
      best = ""
      if self._best is not None:
        best = f" | best {self._headline} {self._best[0]:.4f} (step {self._best[1]})"
      elapsed = _duration(self._clock() - self._start)
      self._bar.write(f"step {step} eval: {text}{best} | {elapsed} elapsed")

  def note(self, line: str) -> None:
    """Prints `line` on its own line above the progress bar (process 0)."""
    if self.enabled:
      self._bar.write(line)

  @property
  def progress(self) -> str:
    """The progress bar's current line ("" off process 0 or once closed)."""
    return self._bar.text if self.enabled else ""

  def sync(self) -> None:
    """Makes every record written so far durable (before a checkpoint)."""
    if not self.enabled:
      return
    self._jsonl.flush()
    os.fsync(self._jsonl.fileno())
    self._tb.sync()

  def advance(self, step: int) -> None:
    """Moves the progress bar to `step` (steps finished on the device)."""
    if self.enabled:
      self._bar.advance(step)

  def close(self) -> None:
    if not self.enabled:
      return
    self.sync()
    self._bar.close()
    self._tb.close()
    self._jsonl.close()
    self.enabled = False

  def __enter__(self) -> MetricWriter:
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()


def _shown(record: Mapping[str, Any], shown: set[tuple[str, int]]) -> bool:
  step, split = int(record["step"]), record.get("split")
  names = [k for k in record if k not in ("step", "split")]
  return all((f"{split}/{k}", step) in shown for k in names)


class Throughput:
  """Steps/s and tokens/s of training, between two calls of `measure`.

  The caller makes sure the device is idle at `reset` and `measure` (fetching
  the step metrics is such a sync point), and `exclude`s time spent on other
  work (evaluation) in between.
  """

  def __init__(self):
    self.reset()

  def reset(self) -> None:
    self._time = time.perf_counter()

  def exclude(self, seconds: float) -> None:
    self._time += seconds

  def measure(self, steps: int, tokens: float) -> dict[str, float]:
    now = time.perf_counter()
    elapsed, self._time = max(now - self._time, 1e-9), now
    return {"steps_per_sec": steps / elapsed, "tokens_per_sec": tokens / elapsed}


class TrainLog:
  """The train-metrics window between two log lines, its clock and the
  non-finite-step count that stops a diverging run.

  The loop calls `add` after every step and `flush` at every log step:

    log = TrainLog(writer, max_nonfinite=20, token_metric="loss")
    for ...:
      state, metrics, loss = train_step(state, batch)
      log.add(state, metrics, loss)
      if step % log_every == 0:
        values = log.flush(step, learning_rate)

  Steps with a non-finite loss are left out of the means and counted as
  `skipped_steps`; `window_steps` is the number of steps the record averages
  (fewer than `log_every` in the first record after a resume from a step off
  a log boundary, e.g. after SIGTERM). Throughput (`steps_per_sec`,
  `tokens_per_sec`) counts the window's steps after the first step of the
  process, which includes compilation; a token is one unit of the weight of
  the task's `token_metric` (a target character for the char-LM). `exclude`
  takes time spent on other work (evaluation) off the clock.

  Bounded dispatch: JAX returns from a step before the device has run it, so
  an unchecked loop queues steps up to the next sync point (a whole log
  window: measured, a SIGTERM honoured 33 steps, 48 s, late). `add` blocks
  until at most `max_in_flight - 1` steps are unfinished, so the host
  prepares step k+1 while step k runs and never more; `completed` counts the
  finished steps (the progress bar shows it, and a preemption signal is
  honoured within `max_in_flight` steps of it).

  Args:
    writer: where `flush` writes the "train" record.
    max_nonfinite: consecutive non-finite steps (across windows) that stop the
      run; 0 = never.
    token_metric: the task metric whose weight counts tokens.
    start: the step the run starts (or resumes) from.
    nonfinite_run: consecutive non-finite steps before `start` (restored from
      the checkpoint, so repeated preemptions do not stretch the limit).
    max_in_flight: steps dispatched but not known finished, at most (>= 1).
  """

  def __init__(
    self,
    writer: MetricWriter,
    max_nonfinite: int,
    token_metric: str,
    start: int = 0,
    nonfinite_run: int = 0,
    max_in_flight: int = 2,
  ):
    self._writer = writer
    self._max_nonfinite = max_nonfinite
    self._token_metric = token_metric
    self._clock = Throughput()
    self._window: list[tuple[Any, Any]] = []
    self._timed = 0
    self._compiled = False
    self._nonfinite_run = nonfinite_run
    self._in_flight: collections.deque[Any] = collections.deque()
    self._max_in_flight = max(1, max_in_flight)
    self.completed = start

  def add(self, state: Any, metrics: Mapping[str, tuple[Any, Any]], loss: Any) -> None:
    """Records one step's metrics and loss (device arrays; not fetched yet)
    and waits until at most `max_in_flight - 1` steps are unfinished."""
    self._window.append((metrics, loss))
    self._in_flight.append(loss)
    if self._compiled:
      self._timed += 1
    else:  # the first step compiled: time from its end on
      jax.block_until_ready(state)
      self._clock.reset()
      self._compiled = True
    while len(self._in_flight) >= self._max_in_flight:
      jax.block_until_ready(self._in_flight.popleft())
      self.completed += 1

  def drain(self) -> int:
    """Waits for every dispatched step; returns `completed`."""
    while self._in_flight:
      jax.block_until_ready(self._in_flight.popleft())
      self.completed += 1
    return self.completed

  def exclude(self, seconds: float) -> None:
    """Takes `seconds` (spent on evaluation, say) off the throughput clock."""
    self._clock.exclude(seconds)

  def flush(self, step: int, learning_rate: float) -> dict[str, float]:
    """Writes the window's mean metrics at `step` and starts a new window.

    Raises:
      DivergenceError: `max_nonfinite` consecutive steps had a non-finite loss.
    """
    host = jax.device_get(self._window)
    finite = [bool(np.isfinite(loss)) for _, loss in host]
    for i, ok in enumerate(finite):
      self._nonfinite_run = 0 if ok else self._nonfinite_run + 1
      if self._max_nonfinite and self._nonfinite_run >= self._max_nonfinite:
        last = step - len(finite) + i + 1
        raise DivergenceError(
          f"the training loss was NaN or Inf for {self._nonfinite_run} consecutive "
          f"steps (steps {last - self._nonfinite_run + 1}..{last}); the run stops. "
          "Try a lower optim.learning_rate or optim.clip_norm (0 = none), or inspect "
          "the data; train.max_nonfinite_steps sets this limit."
        )
    values = summarize(m for (m, _), ok in zip(host, finite) if ok)
    timed = host[len(host) - self._timed :]
    tokens = sum(float(m[self._token_metric][1]) for m, _ in timed)
    values.update(self._clock.measure(self._timed, tokens))
    values["learning_rate"] = learning_rate
    values["skipped_steps"] = float(len(finite) - sum(finite))
    values["window_steps"] = float(len(finite))
    self._writer.write(step, "train", values)
    self.drain()  # fetching the window waited for its steps
    self._window, self._timed = [], 0
    return values
