"""Forecaster: LSTM over a window of float features -> the next `horizon` values.

  model = Forecaster(lstm=lstm_jax.LSTM(32), horizon=1)
  preds, carry = model.apply(variables, {"inputs": window})  # [batch, horizon]

`horizon > 1` is the direct multi-output strategy (one head for every future
step). `rollout` extends any horizon over a longer span by feeding forecasts
back into the window: `horizon = 1` is the recursive strategy, `horizon = h`
the direct one applied block by block.

`season = m > 0` makes the head a correction to the seasonal naive forecast
read off the window (the target's values one season back, the last season
repeated over the horizon), as a seasonal difference does for SARIMA. The head
starts at zero, so the untrained model is exactly seasonal naive. `drift=True`
adds the window's mean seasonal change per season ahead (seasonal naive with
drift, `baselines.forecast.seasonal_drift`): the base follows a trend.
`average=True` makes the base the mean of the window's last m values instead
(a level: for a seasonally adjusted series, `lstm_jax.data.deseason`).

`RelativeForecaster` wraps a `Forecaster` so that it reads each window
relative to its last value (translation invariance for trending series).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lstm_jax.models.pooling import last_real
from lstm_jax.nn.layers import LSTM

Array = jax.Array


class Forecaster(nn.Module):
  """LSTM over the window, its last state, a linear head of `horizon` values.

  Attributes:
    lstm: the encoder over the window (unidirectional is the usual choice; a
      bidirectional one reads the backward state at the window's first step).
    horizon: values predicted per call (the direct head's width).
    season: 0, or m > 0 to predict the residual over the seasonal naive
      forecast of the window's `target` channel (needs window >= m).
    target: the target channel (read only when `season > 0`).
    drift: with `season > 0`, add the window's mean seasonal change
      `mean_i (x_i - x_{i-m})` once per season ahead (needs window > m).
    average: with `season > 0`, the base is the mean of the window's last m
      target values, every step ahead (instead of seasonal naive).
  """

  lstm: LSTM
  horizon: int = 1
  season: int = 0
  target: int = 0
  drift: bool = False
  average: bool = False

  @nn.compact
  def __call__(
    self, batch: dict[str, Array], carry=None, deterministic: bool = True
  ) -> tuple[Array, tuple]:
    """Next values of the target (in the scaled units of the inputs).

    Args:
      batch: "inputs" <float>[batch, window, channels], optional "mask"
        <bool>[batch, window] (left padding for short histories).
      carry: initial LSTM carry or None.
      deterministic: disables dropout.

    Returns:
      <float32>[batch, horizon] and the LSTM's final carry.
    """
    x = batch["inputs"]
    mask = batch.get("mask")
    y, finals = self.lstm(
      x, mask=mask, initial_carry=carry, deterministic=deterministic
    )
    if mask is None:
      mask = jnp.ones(x.shape[:2], bool)
    h = last_real(y.astype(jnp.float32), mask, self.lstm.num_directions)
    if not self.season:
      return nn.Dense(self.horizon, name="head")(h), finals
    m, window = self.season, x.shape[1]
    if window < m + self.drift:
      raise ValueError(
        f"a seasonal residual needs a window >= season {m}"
        f"{' + 1 (drift)' if self.drift else ''}, got {window}"
      )
    # Step j ahead repeats the value at window position window - m + (j mod m).
    j = np.arange(self.horizon)  # static: numpy or jax inputs
    y = jnp.asarray(x)[:, :, self.target].astype(jnp.float32)
    if self.average:
      level = jnp.mean(y[:, window - m :], axis=1, keepdims=True)
      naive = jnp.broadcast_to(level, (y.shape[0], self.horizon))
    else:
      naive = y[:, window - m + j % m]
    if self.drift:
      drift = jnp.mean(y[:, m:] - y[:, :-m], axis=1, keepdims=True)
      naive = naive + (j // m + 1) * drift
    head = nn.Dense(self.horizon, kernel_init=nn.initializers.zeros, name="head")
    return naive + head(h), finals


class RelativeForecaster(nn.Module):
  """A `Forecaster` that sees each window relative to its last step.

  Every channel minus its value at the window's last step goes in; the
  forecast is a change from the target's last value. The model is then
  translation-invariant, so a trending series (co2) can leave the range of
  the training part: the plain model's bounded hidden state cannot follow
  a level it never saw. Same attributes and interface as `Forecaster`
  (`rollout` works).
  """

  lstm: LSTM
  horizon: int = 1
  season: int = 0
  target: int = 0
  drift: bool = False
  average: bool = False

  @nn.compact
  def __call__(self, batch: dict[str, Array], carry=None, deterministic: bool = True):
    """As `Forecaster.__call__` (no mask): <float32>[batch, horizon], carry."""
    x = batch["inputs"]
    last = x[:, -1:, :]
    inner = Forecaster(
      lstm=self.lstm,
      horizon=self.horizon,
      season=self.season,
      target=self.target,
      drift=self.drift,
      average=self.average,
      name="forecaster",
    )
    preds, finals = inner({"inputs": x - last}, carry, deterministic)
    return preds + last[:, 0, self.target][:, None], finals


def rollout(
  model: Forecaster,
  variables,
  window: Array,
  steps: int,
  target: int = 0,
  covariates: Array | None = None,
) -> Array:
  """Forecasts `steps` values by feeding the model's forecasts back in.

  Each call predicts `model.horizon` values; they enter the window's target
  channel (the other channels come from `covariates`), the window slides by
  that many steps, and the next call follows. Runs in one `lax.scan`.

  Args:
    model, variables: a `Forecaster` and its variables.
    window: <float>[batch, window, channels] the last observed window.
    steps: values to forecast.
    target: the target channel in `window`.
    covariates: <float>[batch, >= steps rounded up to horizon, channels] known
      future values of the other channels; needed when channels > 1.

  Returns:
    <float32>[batch, steps].
  """
  batch, _, channels = window.shape
  h = model.horizon
  blocks = -(-steps // h)
  if covariates is None:
    if channels > 1:
      raise ValueError(
        f"a {channels}-channel window needs covariates for the non-target channels"
      )
    covariates = jnp.zeros((batch, blocks * h, channels), window.dtype)
  if covariates.shape[1] < blocks * h:
    raise ValueError(f"covariates cover {covariates.shape[1]} steps, need {blocks * h}")
  future = covariates[:, : blocks * h].reshape(batch, blocks, h, channels)

  def step(win, fut):
    preds, _ = model.apply(variables, {"inputs": win})
    new = fut.at[:, :, target].set(preds.astype(fut.dtype))
    win = jnp.concatenate([win, new], axis=1)[:, h:]
    return win, preds

  _, preds = jax.lax.scan(step, window, jnp.swapaxes(future, 0, 1))
  return jnp.swapaxes(preds, 0, 1).reshape(batch, blocks * h)[:, :steps]
