"""The run directory: identity, checkpoints, lock, preemption."""
