"""Data pipelines: numpy batches that are pure functions of (seed, step)."""
