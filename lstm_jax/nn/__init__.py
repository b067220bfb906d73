"""Flax modules over the pure functions: the LSTM spec, layers, initializers, PyTorch conversion."""
