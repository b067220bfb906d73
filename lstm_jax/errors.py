"""User errors: mistakes a person can fix, reported without a traceback.

`lstm_jax.main` catches `LstmJaxError`, prints its message as one paragraph and
exits non-zero. Everything else (a bug) keeps its traceback. A message names
what is wrong (the file, the config key, the numbers) and what to do about it.
"""


class LstmJaxError(Exception):
  """Base class of errors caused by the input, not by the code."""


class ConfigError(LstmJaxError):
  """A config value is invalid or inconsistent with another one."""


class DataError(LstmJaxError):
  """The data cannot be used: missing, empty, not UTF-8, or too short."""


class IncompatibleRunError(LstmJaxError):
  """The workdir holds a run whose config or data differ from this one."""


class DivergenceError(LstmJaxError):
  """Training produced non-finite losses for too many consecutive steps."""
