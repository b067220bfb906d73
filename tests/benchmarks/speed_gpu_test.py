"""benchmarks/speed_gpu.py runs end to end (`--dry-run`: tiny shapes, any backend)."""

from __future__ import annotations

import importlib.util
import pathlib

import jax
import pytest

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "speed_gpu.py"
# The script adds a PyTorch nn.LSTM row only where torch is installed (the
# `parity` extra; the `test` extra has none).
HAS_TORCH = importlib.util.find_spec("torch") is not None


def _load():
  spec = importlib.util.spec_from_file_location("speed_gpu", SCRIPT)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _check(table: str, dtypes):
  for dname in dtypes:
    assert f"B4 T6 I5 H16 {dname}" in table
  rows = [line for line in table.splitlines() if line.startswith("| lstm_jax")]
  assert len(rows) == 3 * len(dtypes)
  assert table.count("flax OptimizedLSTMCell") == len(dtypes)
  assert table.count("nn.LSTM") == (len(dtypes) if HAS_TORCH else 0)
  if jax.default_backend() == "cpu":
    # cuDNN needs a GPU: the row says what ran instead.
    assert all("| lstm_jax cudnn | fused |" in table.split(d)[1] for d in dtypes)


def test_dry_run_bf16(capsys):
  table = _load().main(["--dry-run", "--dtypes", "bf16"])
  assert table in capsys.readouterr().out
  _check(table, ["bf16"])


@pytest.mark.slow
def test_dry_run_all_dtypes():
  _check(_load().main(["--dry-run"]), ["f32", "bf16"])
