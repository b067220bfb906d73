"""`python -m lstm_jax.main`: runs lstm_jax/cli/main.py (kept at this path for the command)."""

import runpy

if __name__ == "__main__":
  runpy.run_module("lstm_jax.cli.main", run_name="__main__", alter_sys=True)
