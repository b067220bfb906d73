"""Weights both ways between `torch.nn.LSTM` and `lstm_jax.LSTM`.

The mapping, per layer `l` and direction (PyTorch suffix `""` or `"_reverse"`,
ours `layer_{l}_fwd` or `layer_{l}_bwd`)::

  w_ih   = weight_ih_l{l}.T              [I, 4H]
  w_hh   = weight_hh_l{l}.T              [H or P, 4H]
  bias   = bias_ih_l{l} + bias_hh_l{l}   [4H]   (zeros if bias=False)
  w_proj = weight_hr_l{l}.T              [H, P] (only when proj_size > 0)

The gate order `[i | f | g | o]` is the same on both sides, so no gate blocks are
permuted. `batch_first` does not matter: both sides take the same weights.

Usage::

  torch_lstm = torch.nn.LSTM(8, 16, num_layers=2, bidirectional=True)
  model = lstm_jax.LSTM(**convert.lstm_kwargs(torch_lstm))
  variables = convert.from_torch(torch_lstm)
  ys, carries = model.apply(variables, x)        # x: [batch, time, 8]

torch is imported inside the functions only: importing this module never
imports torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np

_DIRECTIONS = (("fwd", ""), ("bwd", "_reverse"))
_SUPPORTED = ("w_ih", "w_hh", "bias", "w_proj")


def _num_directions(torch_lstm: Any) -> int:
  return 2 if torch_lstm.bidirectional else 1


def _check_is_lstm(torch_lstm: Any) -> None:
  import torch  # optional dependency: imported lazily

  if not isinstance(torch_lstm, torch.nn.LSTM):
    raise TypeError(f"expected a torch.nn.LSTM, got {type(torch_lstm).__name__}")


def _numpy(t: Any) -> np.ndarray:
  return t.detach().cpu().numpy()


def lstm_kwargs(torch_lstm: Any) -> dict[str, Any]:
  """`lstm_jax.LSTM(...)` constructor kwargs that mirror `torch_lstm`.

  Args:
    torch_lstm: a `torch.nn.LSTM`.

  Returns:
    dict with hidden_size, num_layers, bidirectional, proj_size and dropout.
  """
  _check_is_lstm(torch_lstm)
  return {
    "hidden_size": int(torch_lstm.hidden_size),
    "num_layers": int(torch_lstm.num_layers),
    "bidirectional": bool(torch_lstm.bidirectional),
    "proj_size": int(torch_lstm.proj_size),
    "dropout": float(torch_lstm.dropout),
  }


def from_torch(torch_lstm: Any) -> dict[str, Any]:
  """Flax variables `{"params": ...}` for the `lstm_jax.LSTM` equal to `torch_lstm`.

  Args:
    torch_lstm: a `torch.nn.LSTM` (any num_layers, bidirectional, proj_size,
      bias, batch_first).

  Returns:
    `{"params": {"layer_{l}_{fwd,bwd}": {"w_ih", "w_hh", "bias"[, "w_proj"]}}}`
    with arrays in the torch parameters' dtype. Build the module with
    `lstm_jax.LSTM(**lstm_kwargs(torch_lstm))`.
  """
  _check_is_lstm(torch_lstm)
  tp = dict(torch_lstm.named_parameters())
  hidden = torch_lstm.hidden_size
  params = {}
  for layer in range(torch_lstm.num_layers):
    for name, sfx in _DIRECTIONS[: _num_directions(torch_lstm)]:
      w_ih = _numpy(tp[f"weight_ih_l{layer}{sfx}"])
      p = {
        "w_ih": w_ih.T,
        "w_hh": _numpy(tp[f"weight_hh_l{layer}{sfx}"]).T,
      }
      if torch_lstm.bias:
        p["bias"] = _numpy(tp[f"bias_ih_l{layer}{sfx}"]) + _numpy(
          tp[f"bias_hh_l{layer}{sfx}"]
        )
      else:
        p["bias"] = np.zeros((4 * hidden,), w_ih.dtype)
      if torch_lstm.proj_size > 0:
        p["w_proj"] = _numpy(tp[f"weight_hr_l{layer}{sfx}"]).T
      params[f"layer_{layer}_{name}"] = {k: jnp.asarray(v) for k, v in p.items()}
  return {"params": params}


def to_torch(variables: Mapping[str, Any], torch_lstm: Any) -> Any:
  """Loads `lstm_jax.LSTM` variables into `torch_lstm` in place.

  The summed bias goes into `bias_ih_l*` and `bias_hh_l*` is set to zero, which
  gives the same outputs as any split of the sum.

  Args:
    variables: `{"params": ...}` (or the params dict itself) of an
      `lstm_jax.LSTM` with the standard cell.
    torch_lstm: a `torch.nn.LSTM` with the matching structure.

  Returns:
    `torch_lstm`, for chaining.

  Raises:
    ValueError: the structures differ (layers, directions, projection, cell
      variant, a non-zero bias for a bias=False module) or a shape differs; the
      message names the parameter and gives the expected and actual shapes.
  """
  import torch  # optional dependency: imported lazily

  _check_is_lstm(torch_lstm)
  params = variables.get("params", variables)
  expected = {
    f"layer_{layer}_{name}"
    for layer in range(torch_lstm.num_layers)
    for name, _ in _DIRECTIONS[: _num_directions(torch_lstm)]
  }
  if set(params) != expected:
    raise ValueError(
      f"layer structure differs: torch.nn.LSTM(num_layers={torch_lstm.num_layers}, "
      f"bidirectional={torch_lstm.bidirectional}) expects {sorted(expected)}, "
      f"got {sorted(params)}"
    )
  tp = dict(torch_lstm.named_parameters())
  loads: list[tuple[str, np.ndarray]] = []

  def expect(torch_name: str, ours: str, value: Any, transpose: bool) -> None:
    value = np.asarray(value)
    target = tuple(tp[torch_name].shape)
    got = value.T.shape if transpose else value.shape
    if got != target:
      shape = tuple(reversed(target)) if transpose else target
      raise ValueError(
        f"{ours}: shape mismatch for torch parameter {torch_name}: "
        f"expected {shape}, got {value.shape}"
      )
    loads.append((torch_name, value.T if transpose else value))

  for layer in range(torch_lstm.num_layers):
    for name, sfx in _DIRECTIONS[: _num_directions(torch_lstm)]:
      mod = f"layer_{layer}_{name}"
      p = params[mod]
      extra = sorted(set(p) - set(_SUPPORTED))
      if extra:
        raise ValueError(
          f"{mod}: parameters {extra} have no torch.nn.LSTM equivalent "
          "(only the standard cell converts)"
        )
      has_proj = "w_proj" in p
      if has_proj != (torch_lstm.proj_size > 0):
        raise ValueError(
          f"{mod}/w_proj: expected "
          f"{'a projection' if torch_lstm.proj_size else 'no projection'} "
          f"(torch proj_size={torch_lstm.proj_size}), got "
          f"{'w_proj ' + str(np.shape(p['w_proj'])) if has_proj else 'none'}"
        )
      for key in ("w_ih", "w_hh", "bias"):
        if key not in p:
          raise ValueError(f"{mod}/{key}: missing")
      expect(f"weight_ih_l{layer}{sfx}", f"{mod}/w_ih", p["w_ih"], True)
      expect(f"weight_hh_l{layer}{sfx}", f"{mod}/w_hh", p["w_hh"], True)
      if has_proj:
        expect(f"weight_hr_l{layer}{sfx}", f"{mod}/w_proj", p["w_proj"], True)
      bias = np.asarray(p["bias"])
      if torch_lstm.bias:
        expect(f"bias_ih_l{layer}{sfx}", f"{mod}/bias", bias, False)
        loads.append((f"bias_hh_l{layer}{sfx}", np.zeros_like(bias)))
      else:
        hidden4 = 4 * torch_lstm.hidden_size
        if bias.shape != (hidden4,):
          raise ValueError(f"{mod}/bias: expected shape ({hidden4},), got {bias.shape}")
        if np.any(bias != 0):
          raise ValueError(
            f"{mod}/bias: torch.nn.LSTM has bias=False but the bias is non-zero "
            f"(max |bias| = {np.max(np.abs(bias)):.3g})"
          )

  # Shapes are all checked before anything is written: no half-loaded module.
  with torch.no_grad():
    for torch_name, value in loads:
      t = tp[torch_name]
      # Through float32 (float64 for a float64 module): numpy has no bfloat16.
      np_dtype = np.float64 if t.dtype == torch.float64 else np.float32
      t.copy_(torch.tensor(np.array(value, np_dtype)).to(t.dtype))
  return torch_lstm
