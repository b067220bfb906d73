"""Readers of a training run's workdir (read-only): `reader.open_run`."""
