"""TensorBoard event files, written synchronously and durable at every sync.

`tensorboardX.SummaryWriter` hands events to a background thread through a
queue, and its `flush()` does not wait for that queue: a run killed after a
flush can lose its last eval for good (while metrics.jsonl has it). `EventWriter`
appends each event to the file itself (tensorboardX's `EventsWriter`, the
TFRecord framing with CRCs) and `sync()` flushes and fsyncs it, which the
trainer does before every checkpoint save.

Resuming: a new file starts with a `SessionLog.START` at `purge_step`, which
tells TensorBoard to hide the events at steps >= `purge_step` of the earlier
files (written by the interrupted run after its checkpoint). `read_scalars`
replays those rules over the existing files, so `MetricWriter` can purge from
the first record TensorBoard is missing and write the records again from
metrics.jsonl: the events then show the same history as the JSONL file, in
step order.
"""

from __future__ import annotations

import glob
import os
import struct
import sys
import time

FILE_GLOB = "events.out.tfevents.*"


def _tensorboardx():
  """(summary, EventsWriter, event_pb2), imported on first use.

  tensorboardX's package import runs `import torch` when torch is installed
  (the parity extra; it only widens what `add_image` accepts, which we never
  call): 1.1 s of a run's 2.7 s start-up, measured with `python -X importtime`.
  So the import happens only when events are written (not for `--help` or an
  input error), and, when nothing has imported torch yet, with torch hidden
  for the duration of that one import (tensorboardX then takes its numpy
  path); a later `import torch` works as usual.
  """
  hide = "torch" not in sys.modules
  if hide:
    sys.modules["torch"] = None  # `import torch` raises ImportError
  try:
    from tensorboardX import summary
    from tensorboardX.event_file_writer import EventsWriter
    from tensorboardX.proto import event_pb2
  finally:
    if hide and sys.modules.get("torch", 0) is None:
      del sys.modules["torch"]
  return summary, EventsWriter, event_pb2


class EventWriter:
  """Scalars into a new event file in `logdir`.

  Args:
    logdir: the directory (the workdir).
    purge_step: hide earlier files' events at steps >= this (None: none).
  """

  def __init__(self, logdir: str, purge_step: int | None = None):
    _, EventsWriter, event_pb2 = _tensorboardx()
    # The pid keeps two files of one second and host apart.
    self._events = EventsWriter(
      os.path.join(logdir, "events"), filename_suffix=f".{os.getpid()}"
    )
    if purge_step is not None:
      self._events.write_event(
        event_pb2.Event(
          wall_time=time.time(),
          step=int(purge_step),
          session_log=event_pb2.SessionLog(status=event_pb2.SessionLog.START),
        )
      )

  def add_scalar(self, tag: str, value: float, step: int) -> None:
    summary, _, event_pb2 = _tensorboardx()
    event = event_pb2.Event(
      wall_time=time.time(), step=int(step), summary=summary.scalar(tag, value)
    )
    self._events.write_event(event)

  def sync(self) -> None:
    """Flushes and fsyncs the file: everything written so far survives a kill."""
    self._events.flush()

  def close(self) -> None:
    self._events.close()


def _records(path: str):
  """The serialized events of a TFRecord file; a torn tail ends it."""
  with open(path, "rb") as f:
    data = f.read()
  pos = 0
  while pos + 12 <= len(data):
    (length,) = struct.unpack("<Q", data[pos : pos + 8])
    end = pos + 12 + length + 4
    if end > len(data):
      return
    yield data[pos + 12 : pos + 12 + length]
    pos = end


def read_scalars(logdir: str) -> set[tuple[str, int]]:
  """`(tag, step)` of every scalar TensorBoard shows from `logdir`'s files.

  Files are read in the order they were written (their names start with the
  creation time); a `SessionLog.START` at step P drops what came before at
  steps >= P, as TensorBoard does.
  """

  def order(path: str) -> tuple[float, str]:
    parts = os.path.basename(path).split(".")
    try:
      return float(parts[3]), path
    except (IndexError, ValueError):
      return 0.0, path

  event_pb2 = _tensorboardx()[2]
  shown: set[tuple[str, int]] = set()
  for path in sorted(glob.glob(os.path.join(logdir, FILE_GLOB)), key=order):
    for raw in _records(path):
      event = event_pb2.Event()
      try:
        event.ParseFromString(raw)
      except Exception:  # noqa: BLE001 - a damaged record ends the file
        break
      if event.HasField("session_log") and (
        event.session_log.status == event_pb2.SessionLog.START
      ):
        shown = {(t, s) for t, s in shown if s < event.step}
      for value in event.summary.value:
        shown.add((value.tag, int(event.step)))
  return shown
