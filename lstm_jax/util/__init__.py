"""Leaf helpers that any layer of lstm_jax may import; they import nothing of ours."""
