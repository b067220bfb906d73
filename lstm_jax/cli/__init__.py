"""Command-line entry points (absl) and their shared helpers."""
