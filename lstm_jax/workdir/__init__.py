"""The run directory: identity, checkpoints, lock, preemption, read-only readers."""
