"""Faster implementations of the reference scan, each tested against it."""
