"""Gradient-flow diagnostics: is the gradient vanishing or exploding?

For one batch (the current training batch) and the current parameters:

* `dLoss/dh_t` for every step t of every LSTM layer: the gradient of the
  task's loss with respect to a zero `h_probe` added to h after each step
  inside the scan (`recurrent.lstm_scan_reference`), so it is the full
  derivative, through the recurrence, not only the output path. Its norm
  (over batch and features) against the distance in time from the last step
  says how much the loss still hears from each step. (For a loss on the last
  step only, such as a long-range classification, this is the classic
  vanishing-gradient curve; for a per-step loss such as a language model's,
  every step also hears its own loss, so the curve is flatter.)
* the gradient norm of each module (`lstm/layer_0_fwd`, `out`, ...);
* the fraction of training steps since the last diagnostic whose gradient
  norm exceeded `optim.clip_norm` (clipping fired);
* forget-gate activations of each layer (mean, and the fractions above 0.9
  and below 0.1), recomputed from the layer's inputs and outputs.

`Monitor` runs this every `diagnostics.every_steps` steps (0 = off) from the
training loop, writes the scalars to `metrics.jsonl` and TensorBoard (split
"diagnostics"), plots the curves to `<workdir>/gradient_flow.png` and warns
when the curve of layer 0 falls by more than `diagnostics.vanishing_factor`
over the sequence (vanishing) or grows by more than
`diagnostics.exploding_factor`, or clipping fired on more than
`diagnostics.clip_warn_fraction` of the steps (exploding), naming the remedy.
The diagnostic model runs with `impl="reference"`, same parameters.
"""

from __future__ import annotations

import copy
import os
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from lstm_jax.nn import layers
from lstm_jax.training import build
from lstm_jax.util import plotting

PLOT_FILE = "gradient_flow.png"


def _is_call(context, cls) -> bool:
  return isinstance(context.module, cls) and context.method_name == "__call__"


def probe_shapes(model: nn.Module, params: Any, batch: Any) -> list[tuple[int, ...]]:
  """The `h_probe` shape `[layers * directions, batch, time, out]` of each
  `layers.LSTM` the model calls, in call order, and whether each of its
  (layer, direction) runs backward."""
  shapes = []

  def record(next_fun, args, kwargs, context):
    if _is_call(context, layers.LSTM):
      m, x = context.module, args[0]
      n = m.num_layers * m.num_directions
      shape = (n, x.shape[0], x.shape[1], m.proj_size or m.hidden_size)
      shapes.append((shape, tuple(m.bidirectional and k % 2 == 1 for k in range(n))))
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(record):
    jax.eval_shape(lambda p: model.apply({"params": p}, batch), params)
  return shapes


def make_gradient_flow(model: nn.Module, loss_fn, params: Any, batch: Any):
  """`flow(params, batch) -> (probe grads, param grads, forget gates)`, jitted,
  and the reverse flags of each LSTM's (layer, direction) (for `summarize`).

  probe grads: one <float32>[layers * directions, batch, time, out] per LSTM.
  forget gates: one (<float32>[batch, time, hidden], mask) per LSTMLayer.
  """
  found = probe_shapes(model, params, batch)
  shapes = [s for s, _ in found]

  def loss_with_probes(params, probes, batch):
    it = iter(probes)
    gates = []

    def inject(next_fun, args, kwargs, context):
      if _is_call(context, layers.LSTM):
        return next_fun(*args, **{**kwargs, "h_probe": tuple(next(it))})
      if _is_call(context, layers.LSTMLayer):
        ys, carry = next_fun(*args, **kwargs)
        gates.append(_forget_gates(context.module, args, kwargs, ys))
        return ys, carry
      return next_fun(*args, **kwargs)

    with nn.intercept_methods(inject):
      outputs, _ = model.apply({"params": params}, batch)
    return loss_fn(outputs, batch)[0], gates

  def flow(params, batch):
    zeros = [jnp.zeros(s, jnp.float32) for s in shapes]
    (_, gates), (g_params, g_probes) = jax.value_and_grad(
      loss_with_probes, argnums=(0, 1), has_aux=True
    )(params, zeros, batch)
    return g_probes, g_params, gates

  return jax.jit(flow), [r for _, r in found]


def _forget_gates(module, args, kwargs, ys):
  """sigmoid(x_t W_f + h_{t-1} U_f + b_f) from a layer's inputs and outputs
  (standard and peephole-free cells; exact for the standard cell)."""
  names = ("x", "mask", "segment_ids", "initial_carry")
  call = {**dict(zip(names, args)), **kwargs}
  p = module.variables["params"]
  x, hid = call["x"], module.hidden_size
  ys = ys.astype(jnp.float32)
  h0 = call.get("initial_carry")
  h0 = jnp.zeros_like(ys[:, 0]) if h0 is None else h0.h
  if module.reverse:
    prev = jnp.concatenate([ys[:, 1:], h0[:, None]], axis=1)
  else:
    prev = jnp.concatenate([h0[:, None], ys[:, :-1]], axis=1)
  f = x @ p["w_ih"][:, hid : 2 * hid] + prev @ p["w_hh"][:, hid : 2 * hid]
  f = jax.nn.sigmoid(f + p["bias"][hid : 2 * hid])
  mask = call.get("mask")
  mask = jnp.ones(f.shape[:2], bool) if mask is None else mask
  return f, mask


def curve(probe_grad: np.ndarray, reverse: bool = False) -> np.ndarray:
  """||dLoss/dh_t|| by distance in time from the last step: <float64>[time].

  Args:
    probe_grad: <float32>[batch, time, out] one layer's probe gradient.
    reverse: a backward-direction layer (its "last" step is t = 0).
  """
  norms = np.sqrt(np.sum(np.square(probe_grad.astype(np.float64)), axis=(0, 2)))
  return norms if reverse else norms[::-1]


def decay_ratio(norms: np.ndarray) -> float:
  """Median norm over the nearest 5% of distances / over the farthest 5%."""
  k = max(1, len(norms) // 20)
  near, far = float(np.median(norms[:k])), float(np.median(norms[-k:]))
  if near == 0.0:
    return 1.0
  # A gradient that underflowed to 0 counts as float32's smallest normal
  # number: the ratio stays finite (metrics.jsonl is strict JSON) and is a
  # lower bound of the true decay.
  return near / max(far, float(np.finfo(np.float32).tiny))


def warnings_for(values: dict[str, float], cfg: ml_collections.ConfigDict) -> list[str]:
  """The warnings that the diagnostic `values` call for (see module doc)."""
  out = []
  decay, length = values["dh_decay"], int(values["time"])
  if decay > cfg.vanishing_factor:
    out.append(
      f"vanishing gradient: dLoss/dh_t of layer 0 falls by {decay:.3g}x over "
      f"{length} steps (more than diagnostics.vanishing_factor="
      f"{cfg.vanishing_factor:g}); the loss hardly hears the early steps. Try "
      f"model.lstm.forget_bias=1.0 or chrono init (model.lstm.chrono_max_len="
      f"{length}), or shorter sequences."
    )
  if decay < 1.0 / cfg.exploding_factor:
    out.append(
      f"exploding gradient: dLoss/dh_t of layer 0 grows by {1 / decay:.3g}x "
      f"over {length} steps (more than diagnostics.exploding_factor="
      f"{cfg.exploding_factor:g}). Try optim.clip_norm=1.0 or a lower "
      "optim.learning_rate."
    )
  if values.get("clip_fraction", 0.0) > cfg.clip_warn_fraction:
    out.append(
      f"exploding gradient: clipping fired on {values['clip_fraction']:.0%} of "
      f"the steps (more than diagnostics.clip_warn_fraction="
      f"{cfg.clip_warn_fraction:g}). Try a lower optim.learning_rate."
    )
  return out


def _module_norms(grads: Any) -> dict[str, float]:
  norms = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(grads)[0]:
    name = "/".join(str(getattr(k, "key", k)) for k in path[:-1]) or "params"
    norms[name] = norms.get(name, 0.0) + float(
      np.sum(np.square(leaf, dtype=np.float64))
    )
  return {f"grad_norm/{k}": float(np.sqrt(v)) for k, v in norms.items()}


def summarize(
  probe_grads, param_grads, gates, reverse_flags
) -> tuple[dict[str, float], list]:
  """Scalars for the log and the curves to plot, from `flow`'s outputs."""
  curves = []
  for lstm_grads, flags in zip(probe_grads, reverse_flags):
    curves += [curve(np.asarray(g), r) for g, r in zip(lstm_grads, flags)]
  values = {"time": float(len(curves[0])), "dh_decay": decay_ratio(curves[0])}
  values["dh_near"], values["dh_far"] = float(curves[0][0]), float(curves[0][-1])
  values.update(_module_norms(jax.device_get(param_grads)))
  for i, (f, mask) in enumerate(jax.device_get(gates)):
    f = f[np.asarray(mask)]
    values[f"forget_mean/{i}"] = float(f.mean())
    values[f"forget_above_0.9/{i}"] = float((f > 0.9).mean())
    values[f"forget_below_0.1/{i}"] = float((f < 0.1).mean())
  return values, curves


def plot(curves: list[np.ndarray], path: str, title: str = "") -> None:
  """Log-scale ||dLoss/dh_t|| against distance in time, one line per layer
  (skipped, with one warning per process, without matplotlib)."""
  fig = plotting.figure(path, figsize=(6.5, 4))
  if fig is None:
    return
  ax = fig.subplots()
  # float32 gradients underflow to 0 below ~1e-38 (forget bias 0 at T=400
  # reaches that in ~200 steps); drawn at float32's smallest normal number.
  tiny = np.finfo(np.float32).tiny
  for i, c in enumerate(curves):
    ax.semilogy(np.arange(len(c)), np.maximum(c, tiny), label=f"layer/direction {i}")
  ax.set_xlabel("distance in time from the last step (steps)")
  ax.set_ylabel("||dLoss / dh_t||")
  ax.set_title(title or "gradient flow")
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=100)


class Monitor:
  """What the training loop calls: `observe` every step, `maybe_run` after.

  Inactive (both calls do nothing) when `diagnostics.every_steps` is 0.
  """

  def __init__(self, config, task, info: dict[str, Any], workdir: str, writer):
    self.cfg = config.diagnostics
    self.every = int(self.cfg.every_steps)
    self.clip = float(config.optim.clip_norm)
    self._norms: list[Any] = []
    if not self.every:
      return
    reference = copy.deepcopy(config)
    with reference.unlocked():
      reference.model.lstm.impl = "reference"  # h_probe is a reference-path input
    # The probes run outside the trainer's mesh: the single-device path.
    self.model = build.build(reference, info=info, model_axis=1).model
    self.loss_fn, self.workdir, self.writer = task.loss_and_metrics, workdir, writer
    self._flow = None

  def observe(self, step_metrics: dict[str, Any]) -> None:
    if self.every:
      self._norms.append(step_metrics["grad_norm"][0])

  def maybe_run(self, step: int, params: Any, batch: Any) -> list[str]:
    """Runs the diagnostics at multiples of `every_steps`; returns warnings."""
    if not self.every or step % self.every:
      return []
    values, curves = self.run(params, batch)
    if self.clip > 0 and self._norms:
      values["clip_fraction"] = float(
        np.mean(np.asarray(jax.device_get(self._norms)) > self.clip)
      )
    self._norms = []
    self.writer.write(step, "diagnostics", values)
    plot(curves, os.path.join(self.workdir, PLOT_FILE), f"gradient flow at step {step}")
    found = warnings_for(values, self.cfg)
    for text in found:
      logging.warning("step %d: %s", step, text)
      self.writer.note(f"warning (step {step}): {text}")
    return found

  def run(self, params: Any, batch: Any) -> tuple[dict[str, float], list]:
    if self._flow is None:
      self._flow = make_gradient_flow(self.model, self.loss_fn, params, batch)
    flow, flags = self._flow
    probes, grads, gates = flow(params, batch)
    return summarize(probes, grads, gates, flags)
