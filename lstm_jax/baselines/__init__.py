"""Non-neural baselines computed in the same run as the model."""
