"""Sequence classifier: LSTM encoder [+ FCN] -> masked readout -> logits.

Built by whoever owns the config, with the LSTM passed in::

  model = SequenceClassifier(lstm=lstm_jax.LSTM(64, bidirectional=True),
                             num_classes=9, pooling="mean")
  logits, carry = model.apply(variables, {"inputs": x, "mask": mask})

Variable-length series are padded on the right with `mask` false there; the
LSTM holds its carry through padding and outputs zeros there, and every
readout ignores padded steps, so a padded row's logits equal those of the
same row alone.

LSTM-FCN (Karim et al. 2018) is `fcn=FCN(128)` with `shuffle=True`: the LSTM
reads the "dimension-shuffled" series, its C channels as C steps of T
features (one step for a univariate set; MLSTM-FCN's LSTM over the
variables), the padding zeroed, and its last output is the branch's
features, after `lstm_dropout` (0.8 in the papers).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from lstm_jax.models.fcn import FCN
from lstm_jax.models.pooling import POOLINGS, pool
from lstm_jax.nn.layers import LSTM

Array = jax.Array


def shuffle_dims(x: Array, mask: Array | None) -> Array:
  """<float>[batch, channels, time]: channels become steps, time features."""
  if mask is not None:
    x = jnp.where(mask[..., None], x, 0)
  return jnp.swapaxes(x, 1, 2)


def patchify(x: Array, mask: Array | None, k: int) -> tuple[Array, Array]:
  """<float>[batch, ceil(time / k), k * channels] non-overlapping patches.

  Padding (and the end of the last patch) is zero; a patch is real when any of
  its steps is. Lossless: the values are only regrouped, never resampled.
  """
  b, t, c = x.shape
  if mask is None:
    mask = jnp.ones((b, t), bool)
  x = jnp.where(mask[..., None], x, 0)
  pad = -t % k
  x = jnp.pad(x, ((0, 0), (0, pad), (0, 0))).reshape(b, (t + pad) // k, k * c)
  mask = jnp.pad(mask, ((0, 0), (0, pad))).reshape(b, -1, k).any(-1)
  return x, mask


class SequenceClassifier(nn.Module):
  """LSTM encoder, masked readout, linear layer to class logits.

  Attributes:
    lstm: the encoder (any `lstm_jax.LSTM`, bidirectional or not); None
      leaves the FCN branch alone (an ablation).
    num_classes: output classes.
    pooling: "mean" or "max" over real steps, or "last" (forward state at the
      last real step, backward state at the first).
    dropout: on the concatenated features, before the output layer.
    fcn: an optional convolutional branch (LSTM-FCN, `models.fcn`) whose
      features are concatenated with the LSTM's before the dropout.
    patch: the time-major LSTM reads `patchify(inputs, mask, patch)` (1: the
      steps themselves).
    fcn_patch: the FCN branch reads `patchify(inputs, mask, fcn_patch)` (1:
      the steps themselves).
    shuffle: the LSTM reads `shuffle_dims(inputs, mask)` and its last output
      is the readout (LSTM-FCN's dimension shuffle; `patch` and `pooling` are
      unused).
    lstm_dropout: on the LSTM's features alone, before the concatenation.
  """

  lstm: LSTM | None
  num_classes: int
  pooling: str = "mean"
  dropout: float = 0.0
  fcn: FCN | None = None
  patch: int = 1
  fcn_patch: int = 1
  shuffle: bool = False
  lstm_dropout: float = 0.0

  @nn.compact
  def __call__(
    self, batch: dict[str, Array], carry=None, deterministic: bool = True
  ) -> tuple[Array, tuple]:
    """Class logits.

    Args:
      batch: "inputs" <float>[batch, time, channels], optional "mask"
        <bool>[batch, time].
      carry: initial LSTM carry (one `LSTMCarry` per layer and direction) or
        None for zeros.
      deterministic: disables dropout; otherwise needs a 'dropout' rng.

    Returns:
      logits <float32>[batch, num_classes] and the LSTM's final carry.
    """
    if self.pooling not in POOLINGS:
      raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
    if self.lstm is None and self.fcn is None:
      raise ValueError("SequenceClassifier needs an lstm, an fcn or both")
    mask = batch.get("mask")
    x = batch["inputs"]
    feats, finals = [], ()
    if self.lstm is not None:
      if self.shuffle:
        y, finals = self.lstm(
          shuffle_dims(x, mask), initial_carry=carry, deterministic=deterministic
        )
        f = pool(y.astype(jnp.float32), None, "last", self.lstm.num_directions)
      else:
        steps, step_mask = (
          patchify(x, mask, self.patch) if self.patch > 1 else (x, mask)
        )
        y, finals = self.lstm(
          steps, mask=step_mask, initial_carry=carry, deterministic=deterministic
        )
        f = pool(
          y.astype(jnp.float32), step_mask, self.pooling, self.lstm.num_directions
        )
      if self.lstm_dropout > 0:
        f = nn.Dropout(self.lstm_dropout)(f, deterministic=deterministic)
      feats.append(f)
    if self.fcn is not None:
      steps, step_mask = (
        patchify(x, mask, self.fcn_patch) if self.fcn_patch > 1 else (x, mask)
      )
      feats.append(self.fcn(steps, step_mask))
    feats = jnp.concatenate(feats, -1)
    if self.dropout > 0:
      feats = nn.Dropout(self.dropout)(feats, deterministic=deterministic)
    return nn.Dense(self.num_classes, name="out")(feats), finals


class CandidateClassifier(nn.Module):
  """A few `SequenceClassifier`s trained side by side, one logit set each.

  The members share nothing but the batch (and the optimizer's global-norm
  clip); the task sums their losses and picks one of them, or their
  ensemble, after training, on validation or the training file
  (`tasks.ucr.final_evaluation`).

  Attributes:
    members: the candidates.
  """

  members: tuple[SequenceClassifier, ...]

  def __call__(
    self, batch: dict[str, Array], carry=None, deterministic: bool = True
  ) -> tuple[Array, None]:
    """<float32>[batch, members, num_classes] logits (and no carry): batch-major,
    like every model's outputs, so the data axis shards them.

    Args:
      batch: as `SequenceClassifier`.
      carry: must be None (the members start from zeros).
      deterministic: disables dropout.
    """
    if carry is not None:
      raise ValueError("CandidateClassifier takes no carry")
    logits = [m(batch, deterministic=deterministic)[0] for m in self.members]
    return jnp.stack(logits, axis=1), None
