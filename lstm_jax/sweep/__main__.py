"""`python -m lstm_jax.sweep`: runs lstm_jax/cli/sweep.py (kept at this path for the command)."""

import runpy

runpy.run_module("lstm_jax.cli.sweep", run_name="__main__", alter_sys=True)
