"""Task networks built from `lstm_jax.layers`."""

from lstm_jax.models.lm import LanguageModel, LMCarry

__all__ = ["LMCarry", "LanguageModel"]
