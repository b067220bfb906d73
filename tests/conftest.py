"""Shared test setup: CPU by default, no global x64."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def key():
  """A fresh PRNG key; tests split it as needed."""
  return jax.random.key(0)
