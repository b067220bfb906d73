"""An NNX front end: `LSTM`, `LSTMLayer` and `LSTMCell` (for `nnx.RNN`).

Flax recommends NNX for new code. These modules run the same pure functions
as the Linen modules of `lstm_jax.nn.layers` (every backend of
`lstm_jax.lstm_scan`), have the same options (`lstm_jax.nn.spec`, inherited)
and hold their parameters at the same paths: `linen_variables(model)` and
`load_linen_variables(model, variables)` convert between the two.
"""

from lstm_jax.nnx.convert import linen_variables, load_linen_variables
from lstm_jax.nnx.modules import LSTM, LSTMCell, LSTMLayer, Penalty

__all__ = [
  "LSTM",
  "LSTMCell",
  "LSTMLayer",
  "Penalty",
  "linen_variables",
  "load_linen_variables",
]
