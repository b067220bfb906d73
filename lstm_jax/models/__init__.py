"""Task networks built from `lstm_jax.nn.layers`."""

from lstm_jax.models.classifier import SequenceClassifier
from lstm_jax.models.forecaster import Forecaster
from lstm_jax.models.lm import LanguageModel, LMCarry
from lstm_jax.models.seq2seq import Seq2Seq
from lstm_jax.models.tagger import SequenceTagger

__all__ = [
  "Forecaster",
  "LMCarry",
  "LanguageModel",
  "Seq2Seq",
  "SequenceClassifier",
  "SequenceTagger",
]
