"""Fixtures of the notebook tests."""

from pathlib import Path

import pytest


@pytest.fixture
def kernel_tmp(tmp_path, monkeypatch) -> Path:
  """An empty directory that a notebook's kernel uses as its TMPDIR.

  A test then looks for the notebook's leftovers there: another run on the
  machine (a second worker, another checkout's suite) making its own
  lstm_jax_* directories in /tmp meanwhile cannot look like one of them.
  """
  tmp = tmp_path / "kernel_tmp"
  tmp.mkdir()
  monkeypatch.setenv("TMPDIR", str(tmp))
  return tmp
