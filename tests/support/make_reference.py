"""PyTorch reference runs of `torch.nn.LSTM`, live and stored.

`torch_parity_test.py` compares `lstm_jax.LSTM` with `torch.nn.LSTM` in two
ways: live, against torch in the same process (skipped where torch is not
installed), and against `tests/fixtures/torch_reference.npz`, arrays this script
wrote from torch, which needs no torch at test time.

The stored file holds, for each config in `CONFIGS` (float32): the weights in
lstm_jax layout (`convert.from_torch`), inputs, lengths, initial state, output
cotangents, and torch's outputs, final `(h_n, c_n)` and the gradients of
`sum(ys * dys) + sum(h_n * dh) + sum(c_n * dc)` w.r.t. the inputs, initial
state and weights (weights' gradients in lstm_jax layout too).

Regenerate (from the repository root, torch installed via `pip install -e .[test]`)::

  python tests/support/make_reference.py            # writes tests/fixtures/torch_reference.npz
  pytest tests/nn/torch_parity_test.py -q      # the stored and live checks

Regenerate only when `CONFIGS` changes: the arrays depend on torch's CPU
kernels, not on lstm_jax. The file stays small (< 1 MB; 52 KB now).
"""

from __future__ import annotations

import copy
import json
import os
import sys
from typing import Any

import numpy as np

REFERENCE_PATH = os.path.join(
  os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
  "fixtures",
  "torch_reference.npz",
)

# Each config: torch.nn.LSTM arguments + batch/time + lengths (None = full) +
# whether an initial state is passed.
CONFIGS: dict[str, dict[str, Any]] = {
  "uni": dict(input_size=5, hidden_size=8, num_layers=1, bidirectional=False,
              proj_size=0, batch=3, time=6, lengths=None, h0=False),
  "bi_2layer_proj_h0": dict(input_size=4, hidden_size=6, num_layers=2,
                            bidirectional=True, proj_size=3, batch=2, time=5,
                            lengths=None, h0=True),
  "bi_lengths": dict(input_size=3, hidden_size=5, num_layers=2, bidirectional=True,
                     proj_size=0, batch=4, time=7, lengths=[7, 3, 1, 5], h0=True),
}  # fmt: skip


def make_inputs(cfg: dict[str, Any], seed: int) -> dict[str, np.ndarray]:
  """Random float32 inputs, initial state and cotangents for `cfg` (numpy only)."""
  rng = np.random.default_rng(seed)
  d = 2 if cfg["bidirectional"] else 1
  n, b, t = cfg["num_layers"] * d, cfg["batch"], cfg["time"]
  h, out = cfg["hidden_size"], cfg["proj_size"] or cfg["hidden_size"]
  f32 = np.float32
  arrays = {
    "x": rng.normal(size=(b, t, cfg["input_size"])).astype(f32),
    "dys": rng.normal(size=(b, t, d * out)).astype(f32),
    "dh": rng.normal(size=(n, b, out)).astype(f32),
    "dc": rng.normal(size=(n, b, h)).astype(f32),
    "lengths": np.asarray(cfg["lengths"] or [t] * b, np.int32),
  }
  if cfg["h0"]:
    arrays["h0"] = rng.normal(size=(n, b, out)).astype(f32) * f32(0.5)
    arrays["c0"] = rng.normal(size=(n, b, h)).astype(f32) * f32(0.5)
  # Zero the output cotangent on padding: torch's padded outputs are constants.
  mask = np.arange(t)[None, :] < arrays["lengths"][:, None]
  arrays["dys"] *= mask[:, :, None]
  return arrays


def make_torch_lstm(cfg: dict[str, Any], seed: int, bias: bool = True):
  """A float32 `torch.nn.LSTM` for `cfg` with seeded random weights."""
  import torch

  torch.manual_seed(seed)
  return torch.nn.LSTM(
    cfg["input_size"],
    cfg["hidden_size"],
    num_layers=cfg["num_layers"],
    bidirectional=cfg["bidirectional"],
    proj_size=cfg["proj_size"],
    bias=bias,
    batch_first=True,
  ).float()


def grads_as_ours(torch_lstm) -> dict[str, Any]:
  """`torch_lstm`'s `.grad`s mapped like `convert.from_torch` maps weights.

  d/d(bias) of our summed bias equals torch's d/d(bias_ih) (= d/d(bias_hh)), so
  the copy gets bias_ih = grad and bias_hh = 0 before the weight mapping.
  """
  from lstm_jax.nn import convert

  g = copy.deepcopy(torch_lstm)
  for (name, p), (_, pg) in zip(
    torch_lstm.named_parameters(), g.named_parameters(), strict=True
  ):
    pg.data = p.grad.detach().clone()
    if name.startswith("bias_hh"):
      pg.data.zero_()
  return convert.from_torch(g)["params"]


def run_torch(torch_lstm, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
  """Torch's outputs and gradients for `arrays` (see `make_inputs`).

  Variable lengths go through `pack_padded_sequence(enforce_sorted=False)`;
  padded output steps come back as zeros.

  Returns:
    numpy `ys [B, T, D*out]`, `h_n`, `c_n`, `grad_x` (and `grad_h0`,
    `grad_c0` if an initial state was given), and `grads`, the weights'
    gradients in lstm_jax layout.
  """
  import torch
  from torch.nn.utils import rnn

  torch_lstm.zero_grad()
  x = torch.tensor(arrays["x"], requires_grad=True)
  b, t, _ = x.shape
  lengths = arrays["lengths"]
  state = None
  if "h0" in arrays:
    h0 = torch.tensor(arrays["h0"], requires_grad=True)
    c0 = torch.tensor(arrays["c0"], requires_grad=True)
    state = (h0, c0)
  if np.all(lengths == t):
    ys, (h_n, c_n) = torch_lstm(x, state)
  else:
    packed = rnn.pack_padded_sequence(
      x, torch.tensor(lengths, dtype=torch.int64), batch_first=True,
      enforce_sorted=False,
    )  # fmt: skip
    ys, (h_n, c_n) = torch_lstm(packed, state)
    ys, _ = rnn.pad_packed_sequence(ys, batch_first=True, total_length=t)
  loss = (
    (ys * torch.tensor(arrays["dys"])).sum()
    + (h_n * torch.tensor(arrays["dh"])).sum()
    + (c_n * torch.tensor(arrays["dc"])).sum()
  )
  loss.backward()
  out = {
    "ys": ys.detach().numpy(),
    "h_n": h_n.detach().numpy(),
    "c_n": c_n.detach().numpy(),
    "grad_x": x.grad.numpy(),
    "grads": grads_as_ours(torch_lstm),
  }
  if state is not None:
    out["grad_h0"] = h0.grad.numpy()
    out["grad_c0"] = c0.grad.numpy()
  return out


def _flatten(prefix: str, tree: dict[str, Any], out: dict[str, np.ndarray]) -> None:
  for k, v in tree.items():
    if isinstance(v, dict):
      _flatten(f"{prefix}/{k}", v, out)
    else:
      out[f"{prefix}/{k}"] = np.asarray(v)


def unflatten(flat: dict[str, np.ndarray], prefix: str) -> dict[str, Any]:
  """Inverse of the `prefix/a/b` key flattening used in the .npz file."""
  tree: dict[str, Any] = {}
  for key, value in flat.items():
    if not key.startswith(prefix + "/"):
      continue
    *path, leaf = key[len(prefix) + 1 :].split("/")
    node = tree
    for p in path:
      node = node.setdefault(p, {})
    node[leaf] = value
  return tree


def main(path: str = REFERENCE_PATH) -> None:
  from lstm_jax.nn import convert

  flat: dict[str, np.ndarray] = {"configs": np.asarray(json.dumps(CONFIGS))}
  for i, (name, cfg) in enumerate(CONFIGS.items()):
    torch_lstm = make_torch_lstm(cfg, seed=100 + i)
    arrays = make_inputs(cfg, seed=200 + i)
    ref = run_torch(torch_lstm, arrays)
    _flatten(f"{name}/params", convert.from_torch(torch_lstm)["params"], flat)
    _flatten(f"{name}/grads", ref.pop("grads"), flat)
    _flatten(f"{name}/inputs", arrays, flat)
    _flatten(f"{name}/torch", ref, flat)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  np.savez_compressed(path, **flat)
  print(f"wrote {path}: {os.path.getsize(path)} bytes, configs {list(CONFIGS)}")


if __name__ == "__main__":
  sys.path.insert(
    0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  )
  main(*sys.argv[1:])
