"""The LSTM's config section, `lstm_config` (re-exported by `layers.py`, which
validates it and builds the module in `lstm_from_config`)."""

from __future__ import annotations

from typing import Any

import ml_collections
from ml_collections import config_dict


def lstm_config(**overrides: Any) -> ml_collections.ConfigDict:
  """The LSTM's config section (`config.model.lstm`): every key, once.

  Args:
    **overrides: new defaults for some keys (e.g. `hidden_size=384`); a key
      that is not declared here is an error.
  """
  c = ml_collections.ConfigDict()
  # Cell size H of every layer.
  c.hidden_size = 256
  # Stacked layers; layer l > 0 reads layer l-1's outputs.
  c.num_layers = 1
  # Run a reversed copy of each layer; outputs are [forward | backward].
  c.bidirectional = False
  # If > 0, LSTMP projection of h to this size.
  c.proj_size = 0
  # Dropout on every layer's output (between layers; task models also apply it
  # to the last layer's output before their head).
  c.dropout = 0.0
  # Cell variant: "standard", "layernorm" or "peephole".
  c.cell = "standard"
  # Initial forget-gate bias (ignored when chrono_max_len is set).
  c.forget_bias = 1.0
  # If set, chrono initialisation of the gate biases for sequences up to this
  # long (Tallec & Ollivier, 2018).
  c.chrono_max_len = config_dict.placeholder(int)
  # Matmul compute dtype: "float32" or "bfloat16" (params and carry stay f32).
  c.dtype = "float32"
  # Recompute step activations in the backward pass (saves memory).
  c.remat = False
  # lax.scan unroll factor of the time loop.
  c.unroll = 1
  # Implementation: "auto", "fused" or "reference" (see recurrent.lstm_scan).
  c.impl = "auto"
  # Regularisers (lstm_jax/ops/regularisation.py), all off at 0 and inactive in
  # eval mode; every mask is sampled once per batch, outside the time loop,
  # and the fused path implements all of them.
  # Variational (locked) dropout, one mask per sequence shared by all steps
  # (Gal & Ghahramani, 2016): of the stack's input, ...
  c.input_dropout = 0.0
  # ... between layers (on every layer's output but the last), ...
  c.hidden_dropout = 0.0
  # ... and of the last layer's output.
  c.output_dropout = 0.0
  # Dropout of h_{t-1} on the hidden-to-hidden path, one [batch, H] mask for
  # all steps (the carry itself is not dropped).
  c.recurrent_dropout = 0.0
  # Zoneout rates of the cell and hidden state (Krueger et al., 2017): a unit
  # keeps its previous value with this probability at each step.
  c.zoneout_cell = 0.0
  c.zoneout_hidden = 0.0
  # Weight-drop (DropConnect) of the recurrent matrix w_hh, one mask per batch
  # (Merity et al., 2017).
  c.weight_drop = 0.0
  # Activation regularisation alpha * mean(h^2) of the (dropped) last-layer
  # outputs, and temporal AR beta * mean((h_t - h_{t-1})^2) of the undropped
  # ones, over real steps (Merity et al., 2017); added to the training loss.
  c.ar_alpha = 0.0
  c.tar_beta = 0.0
  for key, value in overrides.items():
    if key not in c:
      raise KeyError(f"lstm_config has no key {key!r}; keys: {sorted(c)}")
    c[key] = value
  return c
