"""The fused scan: all time steps' input projections at once, a hand-written backward."""
