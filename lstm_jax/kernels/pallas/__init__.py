"""Pallas kernels for the recurrence (TPU and GPU)."""
