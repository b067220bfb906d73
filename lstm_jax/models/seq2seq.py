"""Encoder-decoder LSTM with optional attention, teacher forcing and decoding.

  model = Seq2Seq(lstm=lstm_jax.LSTM(128, bidirectional=True),
                  decoder=lstm_jax.LSTM(128), vocab_size=40, attention="luong")
  logits, carry = model.apply(variables, batch)          # teacher forcing
  tokens, logits = generate(model, variables, batch, max_len=8)  # greedy

`lstm` is the encoder, `decoder` a unidirectional LSTM with as many layers.
The decoder starts from the encoder's final state of each layer (both
directions concatenated), mapped to the decoder's width by a `tanh` Dense
(`bridge`) when the widths differ.

Attention (optional) is computed from the decoder's output at each step, after
the recurrence (Luong et al. 2015, without input feeding): a context vector
over the real encoder steps, then `tanh(W [h_t; context])` feeds the output
layer. "luong" scores with `h_t W e_s` (Luong's "general"), "bahdanau" with
`v . tanh(W1 e_s + W2 h_t)` (Bahdanau et al. 2015's additive score). Because
the context is not fed back into the recurrence, teacher-forced decoding of a
sequence equals decoding it one step at a time (tested).

`generate` decodes greedily (`temperature=0`) or by sampling at a temperature,
inside one `lax.scan`; after EOS a row emits PAD.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from lstm_jax.nn.layers import LSTM
from lstm_jax.ops.recurrent import LSTMCarry

Array = jax.Array
ATTENTION = (None, "luong", "bahdanau")


class Seq2Seq(nn.Module):
  """Encoder-decoder over token ids with a shared embedding.

  Attributes:
    lstm: the encoder LSTM (bidirectional allowed).
    decoder: the decoder LSTM (unidirectional, `lstm.num_layers` layers).
    vocab_size: tokens shared by source and target (one embedding table).
    embed_dim: embedding width.
    attention: None, "luong" or "bahdanau".
  """

  lstm: LSTM
  decoder: LSTM
  vocab_size: int
  embed_dim: int = 32
  attention: str | None = None

  def setup(self):
    if self.attention not in ATTENTION:
      raise ValueError(f"attention must be one of {ATTENTION}, got {self.attention!r}")
    if self.decoder.bidirectional:
      raise ValueError("the decoder LSTM must be unidirectional")
    if self.decoder.num_layers != self.lstm.num_layers:
      raise ValueError(
        f"decoder.num_layers ({self.decoder.num_layers}) must equal the encoder's "
        f"({self.lstm.num_layers})"
      )
    self.embed = nn.Embed(self.vocab_size, self.embed_dim)
    dec_h = self.decoder.proj_size or self.decoder.hidden_size
    self.bridge_c = nn.Dense(self.decoder.hidden_size)
    self.bridge_h = nn.Dense(dec_h)
    if self.attention == "luong":
      self.att_w = nn.Dense(dec_h, use_bias=False)
    elif self.attention == "bahdanau":
      self.att_enc = nn.Dense(dec_h, use_bias=False)
      self.att_dec = nn.Dense(dec_h)
      self.att_v = nn.Dense(1, use_bias=False)
    if self.attention:
      self.combine = nn.Dense(dec_h)
    self.out = nn.Dense(self.vocab_size)

  def _bridge(self, finals: tuple[LSTMCarry, ...]) -> tuple[LSTMCarry, ...]:
    d = self.lstm.num_directions
    carries = []
    for layer in range(self.lstm.num_layers):
      parts = finals[layer * d : (layer + 1) * d]
      c = jnp.concatenate([p.c for p in parts], -1)
      h = jnp.concatenate([p.h for p in parts], -1)
      dec_h = self.decoder.proj_size or self.decoder.hidden_size
      if d > 1 or c.shape[-1] != self.decoder.hidden_size or h.shape[-1] != dec_h:
        c, h = self.bridge_c(c), jnp.tanh(self.bridge_h(h))
      carries.append(LSTMCarry(c, h))
    return tuple(carries)

  def encode(self, batch: dict[str, Array], deterministic: bool = True):
    """Encoder outputs <float32>[batch, S, D*H], source mask, decoder carry."""
    mask = batch.get("inputs_mask")
    if mask is None:
      mask = jnp.ones(batch["inputs"].shape, bool)
    enc, finals = self.lstm(
      self.embed(batch["inputs"]), mask=mask, deterministic=deterministic
    )
    return enc.astype(jnp.float32), mask, self._bridge(finals)

  def _attend(self, h: Array, enc: Array, enc_mask: Array) -> Array:
    if self.attention == "luong":
      scores = jnp.einsum("bud,bsd->bus", h, self.att_w(enc))
    else:
      e = self.att_enc(enc)[:, None]  # [b, 1, s, d]
      scores = self.att_v(jnp.tanh(e + self.att_dec(h)[:, :, None]))[..., 0]
    scores = jnp.where(enc_mask[:, None, :], scores, -1e9)
    context = jnp.einsum("bus,bsd->bud", jax.nn.softmax(scores, -1), enc)
    return jnp.tanh(self.combine(jnp.concatenate([h, context], -1)))

  def decode(
    self,
    enc: Array,
    enc_mask: Array,
    tokens: Array,
    carry: tuple[LSTMCarry, ...],
    deterministic: bool = True,
  ) -> tuple[Array, tuple[LSTMCarry, ...]]:
    """Logits <float32>[batch, U, vocab] for decoder inputs <int32>[batch, U]."""
    h, carry = self.decoder(
      self.embed(tokens), initial_carry=carry, deterministic=deterministic
    )
    h = h.astype(jnp.float32)
    if self.attention:
      h = self._attend(h, enc, enc_mask)
    return self.out(h), carry

  def __call__(
    self, batch: dict[str, Array], carry=None, deterministic: bool = True
  ) -> tuple[Array, tuple[LSTMCarry, ...]]:
    """Teacher-forced logits.

    Args:
      batch: "inputs" <int32>[batch, S], optional "inputs_mask" <bool>[batch,
        S], "decoder_inputs" <int32>[batch, U] (BOS + target shifted right).
      carry: unused (each example is encoded afresh); part of the task
        interface.
      deterministic: disables dropout inside the LSTMs.

    Returns:
      logits <float32>[batch, U, vocab_size] and the decoder's final carry.
    """
    del carry
    enc, enc_mask, dec_carry = self.encode(batch, deterministic)
    return self.decode(enc, enc_mask, batch["decoder_inputs"], dec_carry, deterministic)


def generate(
  model: Seq2Seq,
  variables,
  batch: dict[str, Array],
  max_len: int,
  temperature: float = 0.0,
  rng: Array | None = None,
  bos: int = 1,
  eos: int = 2,
  pad: int = 0,
) -> tuple[Array, Array]:
  """Decodes `max_len` tokens in one `lax.scan`.

  Args:
    temperature: 0 for greedy (argmax); > 0 samples from softmax(logits / T)
      with `rng` folded with the step index.

  Returns:
    tokens <int32>[batch, max_len] (PAD after the first EOS) and the logits
    <float32>[batch, max_len, vocab] of every step.
  """
  if temperature > 0 and rng is None:
    raise ValueError("sampling at temperature > 0 needs an rng")
  enc, enc_mask, carry = model.apply(variables, batch, method=Seq2Seq.encode)
  n = enc.shape[0]

  def step(state, t):
    carry, tok, done = state
    logits, carry = model.apply(
      variables, enc, enc_mask, tok[:, None], carry, method=Seq2Seq.decode
    )
    logits = logits[:, 0]
    if temperature > 0:
      nxt = jax.random.categorical(jax.random.fold_in(rng, t), logits / temperature)
    else:
      nxt = jnp.argmax(logits, -1)
    nxt = jnp.where(done, pad, nxt).astype(jnp.int32)
    return (carry, nxt, done | (nxt == eos)), (nxt, logits)

  start = (carry, jnp.full((n,), bos, jnp.int32), jnp.zeros((n,), bool))
  _, (tokens, logits) = jax.lax.scan(step, start, jnp.arange(max_len))
  return tokens.T, jnp.swapaxes(logits, 0, 1)
