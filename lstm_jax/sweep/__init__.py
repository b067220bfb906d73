"""Many trials of one config: specs, the results table, Optuna, a vmapped population."""
