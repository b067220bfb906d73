"""Multi-host runs: joining the processes, and agreeing between them.

`initialize(config.parallel)` runs before anything touches a device:

* `parallel.coordinator_address` set: `jax.distributed.initialize` with it,
  `parallel.num_processes` and `parallel.process_id` (checked first).
* unset, on a Cloud TPU VM slice with several workers or in a SLURM job with
  several tasks: `jax.distributed.initialize()` without arguments (JAX reads
  the cluster from the environment).
* otherwise: a single process, nothing to do.

JAX's own client aborts the process (a C++ fatal error, no Python exception)
when the coordinator does not answer within `initialization_timeout`, so a
process other than 0 first waits for the coordinator's port itself, for
`parallel.init_timeout_s`, and raises a `ConfigError` naming the key if it
never opens.

`any_process(flag)`: the preemption flag of every process, OR-ed, so a
SIGTERM on any host makes every host stop at the same step boundary.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

import jax
import numpy as np

from lstm_jax.errors import ConfigError


def _cluster_from_environment() -> bool:
  """A TPU VM slice with several workers, or a SLURM job with several tasks."""
  tpu_hosts = os.environ.get("TPU_WORKER_HOSTNAMES", "")
  slurm_tasks = os.environ.get("SLURM_NTASKS", "1")
  return "," in tpu_hosts or (slurm_tasks.isdigit() and int(slurm_tasks) > 1)


def _wait_for_port(address: str, timeout_s: float) -> None:
  host, _, port = address.rpartition(":")
  if not host or not port.isdigit():
    raise ConfigError(
      f"parallel.coordinator_address must be host:port, got {address!r}"
    )
  deadline = time.monotonic() + timeout_s
  while True:
    try:
      with socket.create_connection((host, int(port)), timeout=1.0):
        return
    except OSError as exc:
      if time.monotonic() > deadline:
        raise ConfigError(
          f"parallel.coordinator_address={address!r} did not answer within "
          f"parallel.init_timeout_s={timeout_s:g} s ({exc}); start process 0 "
          "there first, or fix the address"
        ) from exc
      time.sleep(0.2)


def initialize(parallel: Any) -> None:
  """Joins this process to the run's others (see the module docstring).

  Raises:
    ConfigError: missing or out-of-range `parallel.num_processes` /
      `parallel.process_id`, a malformed or unreachable coordinator.
  """
  if jax.distributed.is_initialized():
    return
  address = parallel.coordinator_address
  count, index = parallel.num_processes, parallel.process_id
  timeout = int(parallel.init_timeout_s)
  if not address:
    if count not in (None, 1) or index not in (None, 0):
      raise ConfigError(
        f"parallel.num_processes={count} / parallel.process_id={index} need "
        "parallel.coordinator_address=host:port (process 0's)"
      )
    if _cluster_from_environment():
      jax.distributed.initialize(initialization_timeout=timeout)
    return
  if count is None or count < 1:
    raise ConfigError(f"parallel.num_processes must be >= 1, got {count}")
  if index is None or not 0 <= index < count:
    raise ConfigError(
      f"parallel.process_id must be in [0, {count}) for "
      f"parallel.num_processes={count}, got {index}"
    )
  if index != 0:
    _wait_for_port(address, timeout)
  jax.distributed.initialize(address, count, index, initialization_timeout=timeout)


def any_process(flag: bool) -> bool:
  """`flag` OR-ed over all processes (a host round trip when there are
  several; one process: just `flag`)."""
  if jax.process_count() == 1:
    return bool(flag)
  from jax.experimental import multihost_utils

  return bool(np.any(multihost_utils.process_allgather(np.int32(bool(flag)))))
