"""The fully convolutional branch of LSTM-FCN and MLSTM-FCN, masked for
padded series.

Wang et al. 2017 ("Time series classification from scratch with deep neural
networks", arXiv:1611.06455) classify with three temporal convolutions
(`width, 2 width, width` filters, 128/256/128 in the papers, of sizes 8, 5,
3), each followed by normalisation and ReLU, then global average pooling;
Karim et al. 2018 (LSTM-FCN, arXiv:1709.05206) concatenate those features
with an LSTM's, and MLSTM-FCN (Karim et al. 2019, arXiv:1801.04503) adds a
squeeze-and-excite block (Hu et al. 2018; reduction 16) after the first two
blocks. Per block, for `x` <float>[batch, time, channels] and the
`<bool>[batch, time]` mask:

  x = relu(norm(conv_k(x * mask)))             # 'SAME' zero padding
  x = x * sigmoid(W2 relu(W1 masked_mean(x)))  # squeeze-excite, blocks 0, 1

then `features = masked_mean(x, mask)` <float>[batch, width]. The
convolutions are He-uniform initialised and the excite layers He-normal
without bias,
as in the authors' Keras code (titu1994/LSTM-FCN, titu1994/MLSTM-FCN).

Why zero the padding before every convolution: a 'SAME' convolution of a row
alone reads zeros past its last real step, so zeroing the padded steps gives
the padded row exactly the real steps' values it would have alone, and the
masked means ignore the rest. Variable-length series are therefore neither
truncated nor resampled, as with the LSTM.

Normalisation. The papers' BatchNorm is `norm="batch"` (the UCR default,
experiments/ucr.py), without running averages: training normalises each
channel by the batch's mean and variance over its real steps
(`masked_batch_stats`), and a classifier is applied to new series with the
statistics of its whole training set, gathered after training by one pass
in batch mode with the "batch_stats" collection mutable
(`tasks.ucr.choice.train_statistics`; "precise BatchNorm", Wu and Johnson
2021, arXiv:2105.07576). Given a "batch_stats" collection, each series is
normalised by it alone, whatever else is in the batch; without one (the
trainer's steps and evaluations), by the batch's own statistics. So the
trainer's state stays parameters only (no mutable `batch_stats` to carry
through checkpoints, pmap and sharding). The module's own default is
LayerNorm (over channels, per step), which needs no statistics at all and
never mixes series or real and padded steps; how each was picked for the
UCR default is in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from lstm_jax.models.pooling import masked_mean

Array = jax.Array
KERNELS = (8, 5, 3)
WIDTHS = (1, 2, 1)  # filters of each block, in units of `width`
SE_BLOCKS = 2  # squeeze-excite after the first two blocks (MLSTM-FCN)


def squeeze_excite(x: Array, mask: Array, w1: Array, w2: Array) -> Array:
  """<float>[batch, time, F] `x` rescaled per channel by its masked mean.

  Args:
    x: <float>[batch, time, F] features.
    mask: <bool>[batch, time] real steps.
    w1: <float>[F, F // reduction] squeeze weights.
    w2: <float>[F // reduction, F] excite weights.
  """
  s = jax.nn.relu(masked_mean(x, mask) @ w1)
  return x * jax.nn.sigmoid(s @ w2)[:, None, :]


def sequence_norm(
  x: Array, mask: Array, scale: Array, bias: Array, eps: float = 1e-6
) -> Array:
  """`x` normalised by its own mean and variance over real steps and channels.

  Per series (one group of GroupNorm, masked), then a per-channel affine; the
  relative sizes of steps and channels survive, as under the papers'
  BatchNorm, and no statistic mixes series or reads padding.

  Args:
    x: <float>[batch, time, F] features.
    mask: <bool>[batch, time] real steps.
    scale, bias: <float>[F] the affine.
  """
  m = mask[..., None].astype(x.dtype)
  count = jnp.maximum(m.sum((1, 2), keepdims=True), 1) * x.shape[-1]
  mean = (x * m).sum((1, 2), keepdims=True) / count
  var = (jnp.square(x - mean) * m).sum((1, 2), keepdims=True) / count
  return (x - mean) * jax.lax.rsqrt(var + eps) * scale + bias


def masked_batch_stats(x: Array, mask: Array) -> tuple[Array, Array]:
  """(<float>[F] mean, <float>[F] variance) of `x` over every real step of
  every series: BatchNorm's statistics, padding left out.

  Args:
    x: <float>[batch, time, F] features.
    mask: <bool>[batch, time] real steps.
  """
  m = mask[..., None].astype(x.dtype)
  count = jnp.maximum(m.sum((0, 1)), 1)
  mean = (x * m).sum((0, 1)) / count
  var = (jnp.square(x - mean) * m).sum((0, 1)) / count
  return mean, var


BATCH_STATS = "batch_stats"  # the collection of `norm="batch"`'s statistics
BATCH_NORM_EPS = 1e-3  # Keras' BatchNormalization epsilon, the authors' layer
NORMS = ("layer", "batch", "sequence", "none")


class FCN(nn.Module):
  """Three masked conv -> norm -> ReLU blocks [-> squeeze-excite] and a
  masked mean.

  Attributes:
    width: filters of the first and last block (the middle one has 2 width);
      the papers use 128.
    se_reduction: squeeze-excite after the first two blocks with this
      reduction (MLSTM-FCN: 16); 0 = none (LSTM-FCN).
    norm: after each convolution, "layer" (LayerNorm over channels, per
      step), "batch" (the papers' BatchNorm, per channel over the batch's
      real steps, or the "batch_stats" collection's statistics when given:
      the module docstring), "sequence" (`sequence_norm`: per series, over
      real steps and channels) or "none".
  """

  width: int = 128
  se_reduction: int = 0
  norm: str = "layer"

  @nn.compact
  def __call__(self, x: Array, mask: Array | None = None) -> Array:
    """<float32>[batch, width] features of <float>[batch, time, channels] `x`."""
    if mask is None:
      mask = jnp.ones(x.shape[:2], bool)
    m = mask[..., None].astype(jnp.float32)
    x = x.astype(jnp.float32)
    init = nn.initializers.he_uniform()
    for i, (k, f) in enumerate(zip(KERNELS, WIDTHS)):
      filters = self.width * f
      x = nn.Conv(filters, (k,), padding="SAME", kernel_init=init, name=f"conv_{i}")(
        x * m
      )
      if self.norm == "layer":
        x = nn.LayerNorm(name=f"norm_{i}")(x)
      elif self.norm == "batch":
        x = self._batch_norm(x, mask, f"norm_{i}", filters)
      elif self.norm == "sequence":
        scale = self.param(f"norm_{i}_scale", nn.initializers.ones, (filters,))
        bias = self.param(f"norm_{i}_bias", nn.initializers.zeros, (filters,))
        x = sequence_norm(x, mask, scale, bias)
      x = nn.relu(x)
      if self.se_reduction and i < SE_BLOCKS:
        hidden = max(1, filters // self.se_reduction)
        se_init = nn.initializers.he_normal()
        w1 = self.param(f"se_{i}_squeeze", se_init, (filters, hidden))
        w2 = self.param(f"se_{i}_excite", se_init, (hidden, filters))
        x = squeeze_excite(x, mask, w1, w2)
    return masked_mean(x, mask)

  def _batch_norm(self, x: Array, mask: Array, name: str, filters: int) -> Array:
    """BatchNorm by the given statistics, else the batch's (kept when the
    "batch_stats" collection is mutable), then a per-channel affine."""
    scale = self.param(f"{name}_scale", nn.initializers.ones, (filters,))
    bias = self.param(f"{name}_bias", nn.initializers.zeros, (filters,))
    if self.has_variable(BATCH_STATS, name):
      stats = self.get_variable(BATCH_STATS, name)
      mean, var = stats["mean"], stats["var"]
    else:
      mean, var = masked_batch_stats(x, mask)
      if self.is_mutable_collection(BATCH_STATS):
        self.put_variable(BATCH_STATS, name, {"mean": mean, "var": var})
    return (x - mean) * jax.lax.rsqrt(var + BATCH_NORM_EPS) * scale + bias
