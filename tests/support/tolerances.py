"""Tolerances derived from floating-point bounds, for tests that compare two
computations of the same quantity.

Two programs that compute one sum in different orders (micro-batches against
the whole batch, a mesh or pmap against one device, the fused kernel against
autodiff) differ by rounding only. Each ordering of `n` terms is within
`(n - 1) * u * sum|x_i|` of the exact sum (Higham, "Accuracy and Stability of
Numerical Algorithms", 2nd ed., eq. 4.4; `u = eps / 2`), so two orderings are
within `n * eps * sum|x_i|` of each other. The functions below turn that into a
tolerance from the reduction length and a magnitude that the test states, so a
tolerance holds on any machine (any vector width, any XLA tiling) instead of
being the largest difference one machine happened to show.

Exact (bitwise) comparisons stay for the same program on the same machine
(a resumed run against an uninterrupted one, a restored checkpoint).
"""

from __future__ import annotations

import numpy as np

# Machine epsilon (the gap between 1 and the next number): 2**-23 for
# float32, 2**-7 for bfloat16 (8 significand bits), 2**-52 for float64.
F32_EPS = float(np.finfo(np.float32).eps)
BF16_EPS = 2.0**-7
F64_EPS = float(np.finfo(np.float64).eps)


def sum_tol(n_terms: int, magnitude: float = 1.0, eps: float = F32_EPS) -> float:
  """Largest difference between two orderings of one sum of `n_terms` terms.

  Args:
    n_terms: the reduction length (tokens in a batch, a matmul's inner size).
    magnitude: a bound on `sum|x_i|`; for a mean, on `max|x_i|`.
    eps: the machine epsilon of the accumulation dtype.

  Returns:
    `n_terms * eps * magnitude`.
  """
  return n_terms * eps * magnitude


def recurrence_tol(
  time_steps: int, width: int, magnitude: float = 1.0, eps: float = F32_EPS
) -> float:
  """Largest difference between two summation orders of an LSTM over time.

  Each step's pre-activations are sums of `width` products (input and hidden
  sizes), so two orders differ by `sum_tol(width)` there; the gates are
  Lipschitz with constant at most 1 (sigmoid 1/4, tanh 1), and the cell state
  carries the difference on with the forget gate (< 1): it grows by at most
  one step's rounding per step, `time_steps * sum_tol(width)` in all. The
  backward pass has the same structure in reverse.

  Args:
    time_steps: the length of the recurrence.
    width: the longest inner sum of one step (input size + hidden size).
    magnitude: a bound on the compared values (1 for h; |c| for the cell).
    eps: the machine epsilon of the compute dtype.

  Returns:
    `time_steps * width * eps * magnitude`.
  """
  return time_steps * sum_tol(width, magnitude, eps)


def sgd_params_tol(
  n_terms: int, steps: int, param_scale: float, moved: float, eps: float = F32_EPS
) -> float:
  """Largest difference between parameters after `steps` updates of a
  gradient-linear optimizer (SGD, momentum) from gradients that differ only
  by summation order.

  Each gradient is a mean over `n_terms` per-token terms, so two orders differ
  by `sum_tol(n_terms)` relative to its size, and a linear update carries that
  into the parameters: `n_terms * eps * moved`, where `moved` is how far the
  parameters went. Each update is also rounded to the parameter's own
  precision, one rounding of `eps * param_scale` per step.

  Adam is excluded on purpose: `m / (sqrt(v) + eps_adam)` has slope
  `lr / eps_adam` at a zero gradient, so a one-ulp difference in a gradient
  that is almost zero (a character that is almost never a target) becomes a
  visible step; no bound from the summation order holds through it.

  Args:
    n_terms: the gradient's reduction length (tokens per batch).
    steps: optimizer steps taken.
    param_scale: `max|p|` of the compared parameters.
    moved: `max|p_final - p_initial|` of the compared parameters.
    eps: the machine epsilon of the parameters' dtype.

  Returns:
    `eps * (steps * param_scale + n_terms * moved)`.
  """
  return eps * (steps * param_scale + n_terms * moved)


def lstm_tol(
  batch: int, time_steps: int, input_size: int, hidden_size: int, eps: float = F32_EPS
) -> float:
  """Two summation orders of an LSTM's outputs, final state and gradients,
  relative to `max(1, max|reference|)`.

  Forward, each step sums `input_size + hidden_size` products per gate;
  backward, `dh` sums `4 * hidden_size` (the four gates): `recurrence_tol`
  over the time steps at the wider of the two. A weight's gradient then sums
  one term per (row, step), `batch * time_steps` more roundings.

  Args:
    batch: rows.
    time_steps: sequence length.
    input_size: input features.
    hidden_size: hidden units (the recurrent input's width).
    eps: the machine epsilon of the compute dtype.

  Returns:
    `eps * time_steps * (max(input_size + hidden_size, 4 * hidden_size) + batch)`.
  """
  width = max(input_size + hidden_size, 4 * hidden_size)
  return eps * time_steps * (width + batch)


def bf16_recurrence_tol(time_steps: int, magnitude: float = 1.0) -> float:
  """Two bfloat16 paths of one LSTM (each rounds h, the gates' inputs, to
  bfloat16 every step, and accumulates in float32), relative to the values'
  size: one bfloat16 rounding per step that the two may place differently
  (a value near a rounding tie goes either way), carried on by the forget
  gate (< 1) without growth: `time_steps * BF16_EPS * magnitude`."""
  return time_steps * BF16_EPS * magnitude


def assert_close(actual, expected, tol: float, err_msg: str = "") -> None:
  """`|actual - expected| <= tol * max(1, max|expected|)` elementwise: a bound
  relative to the compared values' size (the bounds above are relative),
  absolute below 1 so values near zero need not match relatively."""
  expected = np.asarray(expected, np.float64)
  scale = max(1.0, float(np.max(np.abs(expected), initial=0.0)))
  np.testing.assert_allclose(
    np.asarray(actual, np.float64), expected, rtol=0, atol=tol * scale, err_msg=err_msg
  )
