"""The training loop and what it calls: steps, optimizer, metrics, diagnostics."""
