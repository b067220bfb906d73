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

import json
import math
import os
import time
from collections.abc import Iterable, Mapping
from typing import Any

import jax
import numpy as np
from absl import logging

from lstm_jax.errors import DataError, DivergenceError

METRICS_FILE = "metrics.jsonl"


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


def _truncate_jsonl(path: str, last_step: int) -> None:
  # A "test" record is the end-of-run evaluation; a run that starts again
  # recomputes it when it ends, so the file never holds two.
  records = [
    r
    for r in read_jsonl(path)
    if r.get("step", 0) <= last_step and r.get("split") != "test"
  ]
  tmp = f"{path}.tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    f.writelines(json.dumps(r) + "\n" for r in records)
  os.replace(tmp, path)


class MetricWriter:
  """JSONL + TensorBoard + tqdm progress bar, active on process 0 only.

  Args:
    workdir: run directory.
    total_steps: length of the progress bar.
    initial_step: the step the run starts (or resumes) from.
  """

  def __init__(self, workdir: str, total_steps: int, initial_step: int = 0):
    self.enabled = jax.process_index() == 0
    self._bar = self._tb = self._jsonl = None
    if not self.enabled:
      return
    import tensorboardX  # noqa: PLC0415  (slow import; process 0 only)
    import tqdm  # noqa: PLC0415

    path = os.path.join(workdir, METRICS_FILE)
    if os.path.exists(path):
      _truncate_jsonl(path, initial_step)
    self._jsonl = open(path, "a", encoding="utf-8")  # noqa: SIM115
    # purge_step hides events a killed run wrote after its last checkpoint
    # (or, from step 0, before its first one).
    self._tb = tensorboardX.SummaryWriter(workdir, purge_step=initial_step + 1)
    self._bar = tqdm.tqdm(
      total=total_steps, initial=initial_step, unit="step", dynamic_ncols=True
    )
    self._step = initial_step

  def write(self, step: int, split: str, values: Mapping[str, float]) -> None:
    """One record: `values` (Python floats) at `step` for `split`."""
    if not self.enabled:
      return
    values = {k: float(v) for k, v in values.items()}
    self._jsonl.write(json.dumps({"step": int(step), "split": split, **values}) + "\n")
    self._jsonl.flush()
    for name, value in values.items():
      self._tb.add_scalar(f"{split}/{name}", value, int(step))
    self._tb.flush()
    text = " ".join(f"{k}={v:.6g}" for k, v in values.items())
    logging.info("step %d %s: %s", step, split, text)
    if split == "train" and "loss" in values:
      postfix = {"loss": f"{values['loss']:.4f}"}
      if "tokens_per_sec" in values:
        postfix["tok/s"] = f"{values['tokens_per_sec']:.0f}"
      self._bar.set_postfix(postfix, refresh=False)

  def advance(self, step: int) -> None:
    """Moves the progress bar to `step`."""
    if self.enabled and step > self._step:
      self._bar.update(step - self._step)
      self._step = step

  def close(self) -> None:
    if not self.enabled:
      return
    self._bar.close()
    self._tb.close()
    self._jsonl.close()
    self.enabled = False

  def __enter__(self) -> MetricWriter:
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()


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
  `skipped_steps`. Throughput (`steps_per_sec`, `tokens_per_sec`) counts the
  window's steps after the first step of the process, which includes
  compilation; a token is one unit of the weight of the task's
  `token_metric` (a target character for the char-LM). `exclude` takes time
  spent on other work (evaluation) off the clock.

  Args:
    writer: where `flush` writes the "train" record.
    max_nonfinite: consecutive non-finite steps (across windows) that stop the
      run; 0 = never.
    token_metric: the task metric whose weight counts tokens.
  """

  def __init__(self, writer: MetricWriter, max_nonfinite: int, token_metric: str):
    self._writer = writer
    self._max_nonfinite = max_nonfinite
    self._token_metric = token_metric
    self._clock = Throughput()
    self._window: list[tuple[Any, Any]] = []
    self._timed = 0
    self._compiled = False
    self._nonfinite_run = 0

  def add(self, state: Any, metrics: Mapping[str, tuple[Any, Any]], loss: Any) -> None:
    """Records one step's metrics and loss (device arrays; not fetched yet)."""
    self._window.append((metrics, loss))
    if self._compiled:
      self._timed += 1
    else:  # the first step compiled: time from its end on
      jax.block_until_ready(state)
      self._clock.reset()
      self._compiled = True

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
    self._writer.write(step, "train", values)
    self._window, self._timed = [], 0
    return values
