"""`python -m lstm_jax.sweep`: runs the command line lstm_jax/cli/sweep.py (of sweep/runner.py)."""

import runpy

runpy.run_module("lstm_jax.cli.sweep", run_name="__main__", alter_sys=True)
