"""lstm_jax: fast, exactly-correct LSTMs in JAX/Flax.

Importing this package changes no global state: no JAX flags, no environment.
"""

__version__ = "0.1.0"

from lstm_jax.kernels.dispatch import lstm_scan
from lstm_jax.nn.layers import LSTM, LSTMLayer
from lstm_jax.ops.cell import LSTMCarry, lstm_step

__all__ = ["LSTM", "LSTMCarry", "LSTMLayer", "lstm_scan", "lstm_step", "__version__"]
