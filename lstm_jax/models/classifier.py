"""Sequence classifier: LSTM encoder -> masked readout -> logits.

Built by whoever owns the config, with the LSTM passed in::

  model = SequenceClassifier(lstm=lstm_jax.LSTM(64, bidirectional=True),
                             num_classes=9, pooling="mean")
  logits, carry = model.apply(variables, {"inputs": x, "mask": mask})

Variable-length series are padded on the right with `mask` false there; the
LSTM holds its carry through padding and outputs zeros there, and every
readout ignores padded steps, so a padded row's logits equal those of the
same row alone.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from lstm_jax.models.fcn import FCN
from lstm_jax.models.pooling import POOLINGS, pool
from lstm_jax.nn.layers import LSTM

Array = jax.Array


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
    lstm: the encoder (any `lstm_jax.LSTM`, bidirectional or not).
    num_classes: output classes.
    pooling: "mean" or "max" over real steps, or "last" (forward state at the
      last real step, backward state at the first).
    dropout: on the pooled features, before the output layer.
    fcn: an optional convolutional branch (LSTM-FCN, `models.fcn`) whose
      features are concatenated with the LSTM's before the dropout.
    patch: the LSTM reads `patchify(inputs, mask, patch)` (1: the steps
      themselves); the FCN branch reads the steps, or the same patches with
      `fcn_on_patches` (patch times cheaper on long series).
  """

  lstm: LSTM
  num_classes: int
  pooling: str = "mean"
  dropout: float = 0.0
  fcn: FCN | None = None
  patch: int = 1
  fcn_on_patches: bool = False

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
    mask = batch.get("mask")
    x = batch["inputs"]
    steps, step_mask = x, mask
    if self.patch > 1:
      x, mask = patchify(x, mask, self.patch)
    if self.fcn_on_patches:
      steps, step_mask = x, mask
    y, finals = self.lstm(
      x, mask=mask, initial_carry=carry, deterministic=deterministic
    )
    feats = pool(y.astype(jnp.float32), mask, self.pooling, self.lstm.num_directions)
    if self.fcn is not None:
      fcn_feats = self.fcn(steps, step_mask)
      feats = jnp.concatenate([feats, fcn_feats], -1)
    if self.dropout > 0:
      feats = nn.Dropout(self.dropout)(feats, deterministic=deterministic)
    return nn.Dense(self.num_classes, name="out")(feats), finals


class CandidateClassifier(nn.Module):
  """A few `SequenceClassifier`s trained side by side, one logit set each.

  The members share nothing but the batch (and the optimizer's global-norm
  clip); the task sums their losses and picks one of them, or their
  ensemble, by validation after training (`tasks.ucr.final_evaluation`).

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
