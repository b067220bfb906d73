"""The hand-written backward pass of the fused LSTM scan (`fused/scan.py`).

`backward(cfg, saved, cts)` is the `custom_vjp` backward of `scan._fused`:
one reverse loop that carries only dh and dc and leaves the gate gradients,
then the weight, bias and input gradients as large matmuls. Its docstring
derives the loop; one step's gate gradients are `cell.cell_pointwise_vjp`, the
gradient of the cell's one definition. `cfg` is `scan._Config`, read by
attribute (`fused/scan.py` imports this module, not the other way round).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from lstm_jax.kernels.fused.layout import (
  at,
  cast,
  loop_weights,
  preactivations,
  prepare,
  put,
  step_mm,
)
from lstm_jax.ops.cell import CellSaved, cell_pointwise, cell_pointwise_vjp, dot


def backward(cfg, saved, cts):
  """The backward of `scan._fused`: one reverse loop for dc/dh, weights after it.

  Step t in scan order (with `reverse`, "t - 1" is the step after t in time)
  enters with the carry (c_in_t, h_in_t), zeros on a reset step, forms the
  pre-activations a_t = x_t W_ih + h_in_t W_hh + b and runs the cell
  (`cell.cell_pointwise`: c_t = f c_in_t + i g, h_t = o tanh(c_t)). Without
  padding or resets, h_t reaches y_t and a_{t+1}, and c_t reaches h_t and
  c_{t+1} = f_{t+1} c_t + ..., so with d v = dL/dv::

    d h_t = d y_t + d a_{t+1} W_hh^T
    (d a_t, d c_in_t) = cell_pointwise_vjp(saved_t, d c_t, d h_t)
    d c_t = d c_in_{t+1}                  (= d c~_{t+1} f_{t+1})

  where `cell.cell_pointwise_vjp` holds the cell's own derivation (d c~ adds
  the path through h_t). The loop runs t = T-1 .. 0 carrying (dc, dh), the
  gradient w.r.t. the carry that leaves step t: at the start the cotangents of
  the final carry, then d c_in_{t+1} and d a_{t+1} W_hh^T. A step adds d y_t to
  dh, forms d a_t and hands back the gradient w.r.t. the carry entering it:
  * padding (mask false): the step passes the carry through and outputs 0, so
    (dc, dh) pass straight through, d y_t is dropped and d a_t = 0 (padded
    steps add nothing to the weight gradients);
  * reset: c_in_t = h_in_t = 0 are constants, so the gradient into the
    previous segment's carry is zero;
  * what is left after step 0 is the gradient w.r.t. `initial_carry`.

  Recurrent dropout (mask m <[B, H]>, the same at every step): the gates read
  h_in o m, a_t = x_t W_ih + (h_in_t o m) W_hh + b, so the gradient into the
  carry is d h_in_t = (d a_t W_hh^T) o m, and dW_hh below uses the saved
  h_in o m (the forward stores the dropped h_in, which is also what remat
  recomputes the gates from).

  Zoneout (z^c_t, z^h_t <bool>[B, H]): with c'_t, h'_t the new state above,
  c_t = z^c c_in_t + (1 - z^c) c'_t and h_t = z^h h_in_t + (1 - z^h) h'_t
  (h_t is also the output y_t). With (dc, dh) the gradient w.r.t. (c_t, h_t)
  the step forms d a_t from d c'_t = (1 - z^c) dc, d h'_t = (1 - z^h) dh as
  above (`cell_pointwise_vjp` of d c'_t and d h'_t), and
  hands back d c_in_t = d c'_t f_t + z^c dc, d h_in_t = (d a_t W_hh^T) o m +
  z^h dh. A zoned-out unit passes its gradient straight to the previous step
  (rate 1 is the identity map from the initial carry to every state).

  a_t is linear in x_t, W_ih, W_hh and b, so with dA <float32>[B*T, 4H] the
  stacked d a_t (written over the saved activations, in place)::

    dW_ih = sum_t x_t^T d a_t    = X^T dA       [I, 4H]
    dW_hh = sum_t h_in_t^T d a_t = H_in^T dA    [H, 4H]   (h_in after resets)
    db    = sum_{t, b} d a_t                    [4H]
    dx_t  = d a_t W_ih^T                        [B, I]

  as four large matmuls after the loop (module docstring: why that is fast).
  remat=True: only c_in and h_in were saved, so each step recomputes a_t from
  x_t and h_in_t, and the four sums accumulate inside the loop (there is no
  dA buffer). Checked against autodiff in tests/kernels/fused_test.py and
  tests/ops/masking_test.py.

  Args:
    cfg: the static settings.
    saved: the residuals of `_fused_fwd`.
    cts: cotangents of `_fused`'s results, dys <float>[B, T, H] and the final
      carry's (dc_T, dh_T) <float32>[B, H].

  Returns:
    Cotangents of w_ih, w_hh, bias, xs, c0, h0 (None for mask and reset).
  """
  w_ih, w_hh, bias, xs, mask, reset, regs, res = saved
  rmask, zcs, zhs = regs
  dys, (dc_t, dh_t) = cts
  lay = cfg.layout
  dt = lay.dtype
  batch, t = xs.shape[:2]
  hid = w_hh.shape[0]
  w = loop_weights(lay, w_ih, w_hh) if cfg.remat else None
  # dh_in = d_gates @ w_hh^T; prepared once (a transposed operand would be
  # re-packed by the CPU dot at every step).
  whh_t = prepare(w_hh.T, lay.wleft, dt)
  b = bias.astype(jnp.float32)
  c_ins, h_ins = res["c_in"], res["h_in"]
  if cfg.remat:
    # Only c_in and h_in were saved: recompute the gates at each step and
    # accumulate the weight gradients inside the loop (no [B, T, 4H] buffer).
    wih = cast(w_ih, dt)
    # dW_ih, dW_hh, db, dxs (dxs is dropped by XLA when unused).
    acc = tuple(jnp.zeros(a.shape, jnp.float32) for a in (w_ih, w_hh, bias, xs))
  else:
    # The gate gradients overwrite the saved activations step by step.
    acc = res["acts"]

  def body(j, carry):
    dc, dh, acc, nxt = carry
    k = j if cfg.reverse else t - 1 - j
    c_in = at(c_ins, k)
    if cfg.remat:
      x, h_in = at(xs, k), at(h_ins, k)
      gx = dot(x, wih, dt) if lay.proj == "hoist" else x
      # The forward step again; only its activations are read (XLA drops c, h).
      _, _, saved = cell_pointwise(
        preactivations(lay, w, b, gx, h_in), c_in, sigmoid="tanh"
      )
      acts = saved.acts
    else:
      acts = nxt
    dhn = dh + at(dys, k).astype(jnp.float32)  # d h_t = d y_t + d a_{t+1} W_hh^T
    dcn = dc
    if cfg.has_mask:  # a padded step: no d y_t, d a_t = 0
      m = at(mask, k)[:, None]
      dhn = jnp.where(m, dhn, 0.0)
      dcn = jnp.where(m, dcn, 0.0)
    dc_new, dh_new = dcn, dhn  # w.r.t. the new c', h' (before zoneout)
    if cfg.has_zc:  # zoned-out units: the gradient goes to c_in, not to c'
      zc = at(zcs, k)
      dc_new = jnp.where(zc, 0.0, dcn)
    if cfg.has_zh:
      zh = at(zhs, k)
      dh_new = jnp.where(zh, 0.0, dhn)
    dgates, dc_in = cell_pointwise_vjp(CellSaved(acts, c_in), dc_new, dh_new)
    dh_in = step_mm(dgates, whh_t, lay.wleft, dt)
    if cfg.has_rdrop:  # W_hh read h_in * m
      dh_in = dh_in * rmask
    if cfg.has_zc:
      dc_in = dc_in + jnp.where(zc, dcn, 0.0)
    if cfg.has_zh:
      dh_in = dh_in + jnp.where(zh, dhn, 0.0)
    if cfg.has_reset:  # the carry of the previous segment gets no gradient
      r = at(reset, k)[:, None]
      dc_in, dh_in = jnp.where(r, 0.0, dc_in), jnp.where(r, 0.0, dh_in)
    if cfg.has_mask:  # a held carry passes its gradient straight through
      dc_in, dh_in = jnp.where(m, dc_in, dc), jnp.where(m, dh_in, dh)
    if cfg.remat:
      d_wih, d_whh, d_b, d_xs = acc
      acc = (
        d_wih + dot(x.T, dgates, dt),
        d_whh + dot(h_in.T, dgates, dt),
        d_b + jnp.sum(dgates, axis=0),
        put(d_xs, dot(dgates, wih.T, dt), k),
      )
    else:
      # In place: the only other reader of the buffer is the read of the next
      # step's activations, after this write. (When the loop ops read the
      # buffer directly, XLA copies the whole buffer at every step.)
      acc = put(acc, dgates, k)
      nxt = at(acc, k + 1 if cfg.reverse else k - 1)  # clamped on the last step
    return dc_in, dh_in, acc, nxt

  first = 0 if cfg.reverse else t - 1
  nxt = None if cfg.remat else at(acc, first)
  init = (dc_t.astype(jnp.float32), dh_t.astype(jnp.float32), acc, nxt)
  dc0, dh0, acc, _ = jax.lax.fori_loop(0, t, body, init, unroll=cfg.unroll)
  if cfg.remat:
    dw_ih, dw_hh, dbias, dxs = acc
  else:
    dg2 = acc.reshape(batch * t, -1)
    # The weight gradients contract over B * T rows: XLA:CPU runs that
    # (transposed-operand) dot faster in float32 than in bfloat16 (209 vs 155
    # GFLOP/s, one core), and float32 is the more accurate; so no `dt` here.
    dw_ih = dot(xs.reshape(batch * t, -1).T, dg2, None)
    dw_hh = dot(h_ins.reshape(batch * t, hid).T, dg2, None)
    dbias = jnp.sum(dg2, axis=0)
    dxs = dot(dg2, cast(w_ih, dt).T, dt).reshape(xs.shape)
  dw = (dw_ih.astype(w_ih.dtype), dw_hh.astype(w_hh.dtype), dbias.astype(bias.dtype))
  # The masks (padding, resets, dropout and zoneout) get no gradient.
  no_grad = jax.tree.map(lambda _: None, regs)
  return (*dw, dxs.astype(xs.dtype), dc0, dh0, None, None, no_grad)
