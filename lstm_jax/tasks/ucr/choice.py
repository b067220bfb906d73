"""Choosing the UCR/UEA classifier by validation, then scoring test once.

"Validation" is the held-out part of the training file, or, with
`data.valid_fraction` 0 (the default), the training file itself: the
LSTM-FCN authors' selection on the training fit (`chosen_on`: the training
split, unweighted, without augmentation).

Ours is an LSTM model. Its choices (`choice` in the test record):

  0 .. M-1   the candidates of `model.candidates` (or the one model)
  M          their ensemble, the mean probability (when M > 1)

Each is scored on the validation part with `score` = accuracy - 0.01 x
cross-entropy (accuracy first; the loss breaks ties). The rule is the
one-standard-error rule (Breiman et al. 1984; Hastie et al., The Elements of
Statistical Learning, 7.10): of the choices whose score is within one
standard error of the best, the first in `preference` wins, where the
standard error is that of a validation accuracy, sqrt(p (1 - p) / n) with
p = (correct + 1) / (n + 2) (never 0 on a small split that is all right).
The preference: the first candidate (the default's LSTM-FCN, the published
model), their ensemble, then the other candidates in order. Why not the
plain best: validation splits of UCR sets are small (6 ArrowHead series, 10
PickupGestureWiimoteZ), and the best of a few choices on ten series is
mostly the luckiest.

The opt-in kernel ensemble (`model.kernels` > 0, `experiments/ucr.py:
NAME,ensemble`) adds two choices after the LSTM's, MiniRocket + ridge
(`baselines.minirocket`, fit on the training part for validation) and its
mix with the LSTM ensemble (the last LSTM choice), chosen by the same rule
with the kernels preferred; its test accuracy is `ensemble/accuracy`,
never ours. Chosen kernels are refit on the whole official training file
(selection is done; small sets need every series) before test.

With the papers' BatchNorm in the FCN (`model.fcn_norm="batch"`), every
series the choice and the test read is normalised by the statistics of the
whole training split (`train_statistics`), not by its batch's.

Only the chosen classifiers are scored on the test file. The LSTM is never
refit: it trained on the training part (the whole file by default), at the
last checkpoint or validation's best (`checkpoint.best_metric`).
The record also keeps every candidate's own test accuracy (`m<i>/accuracy`,
not chosen by anything: the ablation of `experiments/ucr.py:NAME,ablation`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lstm_jax.baselines import minirocket
from lstm_jax.models.fcn import BATCH_STATS
from lstm_jax.tasks.base import Batch

# Weight of the cross-entropy in the selection `score`.
SCORE_LOSS_WEIGHT = 0.01


def train_statistics(model, params: Any, train: Batch) -> dict | None:
  """The FCN's BatchNorm statistics over the whole training split, or None
  when the model has no `norm="batch"` layer (`models.fcn`: precise
  BatchNorm, one pass over every training series in one batch)."""
  train = unweighted(train)

  def gather(p, b):
    return model.apply({"params": p}, b, mutable=[BATCH_STATS])[1]

  state = jax.jit(gather)(params, train)
  return state.get(BATCH_STATS) or None


def _variables(params: Any, stats: dict | None) -> dict:
  return {"params": params, **({BATCH_STATS: stats} if stats else {})}


def log_probs(
  model, params: Any, batches: Iterable[Batch], stats: dict | None = None
) -> tuple[np.ndarray, np.ndarray]:
  """(<float64>[choices, N, classes] log-probabilities, <int32>[N] labels).

  The LSTM choices: the single model; or each candidate, then (with more than
  one) their ensemble, the mean of their probabilities. `stats`: the
  BatchNorm statistics (`train_statistics`) of a `norm="batch"` FCN.
  """
  apply = jax.jit(model.apply)
  variables = _variables(params, stats)
  logps, labels = [], []
  for batch in batches:
    logits, _ = apply(variables, batch)
    if logits.ndim == 3:
      logits = jnp.swapaxes(logits, 0, 1)  # [members, batch, classes]
    logps.append(np.asarray(jax.nn.log_softmax(logits.astype(jnp.float32)), np.float64))
    labels.append(np.asarray(batch["labels"]))
  logp = np.concatenate(logps, axis=-2)
  if logp.ndim == 2:
    return logp[None], np.concatenate(labels)
  if len(logp) > 1:
    logp = np.concatenate([logp, mean_prob(logp)[None]])
  return logp, np.concatenate(labels)


def mean_prob(logp: np.ndarray) -> np.ndarray:
  """log of the mean probability over the first axis of log-probabilities."""
  return np.logaddexp.reduce(logp, axis=0) - np.log(len(logp))


def scores(logp: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
  """Per choice (<float>[choices]): accuracy, mean cross-entropy and score."""
  acc = (logp.argmax(-1) == labels).mean(-1)
  nll = -np.take_along_axis(logp, labels[None, :, None], -1)[..., 0].mean(-1)
  return {"accuracy": acc, "loss": nll, "score": acc - SCORE_LOSS_WEIGHT * nll}


def preference(num_lstm: int, kernels: bool) -> list[int]:
  """Choice indices, most preferred first (the module docstring says why).

  `num_lstm`: the LSTM choices (candidates and, with more than one, their
  ensemble, the last); the kernels and their mix follow them.
  """
  lstm = list(range(num_lstm))
  if num_lstm > 1:  # the first candidate, the ensemble, then the others
    lstm = [0, num_lstm - 1, *lstm[1:-1]]
  return [num_lstm, num_lstm + 1, *lstm] if kernels else lstm


def one_se_choice(
  score: np.ndarray, accuracy: np.ndarray, n: int, order: list[int]
) -> int:
  """The first of `order` whose score is within one standard error of the best."""
  best = int(np.argmax(score[order]))
  p = (accuracy[order[best]] * n + 1) / (n + 2)
  se = float(np.sqrt(p * (1 - p) / n))
  return next(i for i in order if score[i] >= score[order[best]] - se)


def predict(
  model,
  params: Any,
  arrays: Batch,
  train: Batch | None = None,
  choice: int | None = None,
) -> np.ndarray:
  """<int32>[N] predicted class indices of a split by the LSTM (for analysis).

  Args:
    model, params: the trained classifier.
    arrays: the split (`tasks.ucr.load_splits`).
    train: the training split, whose statistics a `norm="batch"` FCN
      normalises by (without it, by `arrays`' own).
    choice: which LSTM choice predicts (the test record's `choice`: ours);
      None: the last, the candidates' ensemble (their mean probability) or
      the one model.
  """
  stats = None if train is None else train_statistics(model, params, train)
  logp, _ = log_probs(model, params, [arrays], stats)
  return logp[-1 if choice is None else choice].argmax(-1).astype(np.int32)


def batches(arrays: Batch, size: int) -> list[Batch]:
  """Consecutive slices of `size` series of a split (the last may be shorter)."""
  n = len(arrays["labels"])
  return [{k: v[i : i + size] for k, v in arrays.items()} for i in range(0, n, size)]


def chosen_on(splits: dict[str, Batch]) -> Batch:
  """The split the candidates are evaluated and chosen on: "valid", or with
  no validation part (`data.valid_fraction` 0) the training file itself,
  unweighted and without augmentation (the authors' selection on the
  training fit)."""
  if "valid" in splits:
    return splits["valid"]
  return unweighted(splits["train"])


def unweighted(arrays: Batch) -> Batch:
  """A split without its training-loss class weights ("weights")."""
  return {k: v for k, v in arrays.items() if k != "weights"}


def _with_kernels(lstm_logp: np.ndarray, kernel_logp: np.ndarray) -> np.ndarray:
  """[choices + 2, N, classes]: the LSTM choices, the kernels, their mix."""
  mix = mean_prob(np.stack([lstm_logp[-1], kernel_logp]))
  return np.concatenate([lstm_logp, kernel_logp[None], mix[None]])


def choose_and_test(
  model,
  params: Any,
  splits: dict[str, Batch],
  *,
  seed: int,
  kernels: int,
  batch_size: int,
  batch_norm: bool = False,
) -> tuple[dict[str, float], np.ndarray]:
  """Ours (the LSTM choice) and, with `kernels`, the ensemble, scored once on test.

  Args:
    model, params: the trained classifier (`SequenceClassifier` or
      `CandidateClassifier`) at its best checkpoint.
    splits: `data.ucr.prepare`'s "train", "test" and ("valid", or the
      choice reads "train": `chosen_on`) arrays.
    seed: MiniRocket's kernels.
    kernels: MiniRocket kernels of the opt-in ensemble; 0 leaves it out.
    batch_size: series per forward pass.
    batch_norm: the FCN has `norm="batch"`: validation and test are
      normalised by the whole training split's statistics
      (`train_statistics`), so no series' prediction depends on its batch.

  Returns:
    ({accuracy, loss, score, choice, valid_score, valid_accuracy (ours),
    m<i>/accuracy (each candidate on test), and with kernels
    ensemble/accuracy, ensemble/choice}, ours' <float32>[N, classes] test
    probabilities).
  """
  stats = train_statistics(model, params, splits["train"]) if batch_norm else None
  valid, yv = log_probs(model, params, batches(chosen_on(splits), batch_size), stats)
  num_lstm, n = len(valid), len(yv)
  v = scores(valid, yv)
  choice = one_se_choice(v["score"], v["accuracy"], n, preference(num_lstm, False))
  test, yt = log_probs(model, params, batches(splits["test"], batch_size), stats)
  chosen = test[choice : choice + 1]
  out = {k: float(x[0]) for k, x in scores(chosen, yt).items()}
  out.update(
    choice=float(choice),
    valid_score=float(v["score"][choice]),
    valid_accuracy=float(v["accuracy"][choice]),
  )
  if num_lstm > 1:
    members = scores(test[: num_lstm - 1], yt)["accuracy"]
    out.update({f"m{i}/accuracy": float(a) for i, a in enumerate(members)})
  if kernels:
    out.update(_ensemble(valid, yv, test, yt, splits, seed, kernels))
  return out, np.exp(chosen[0]).astype(np.float32)


def _ensemble(valid, yv, test, yt, splits, seed, kernels) -> dict[str, float]:
  """The opt-in kernel ensemble's choice and test accuracy (never ours)."""
  num_classes, num_lstm = valid.shape[-1], len(valid)
  fitted = minirocket.fit(splits["train"], seed, kernels, num_classes)
  valid = _with_kernels(valid, minirocket.log_probs(fitted, splits["valid"]))
  v = scores(valid, yv)
  choice = one_se_choice(v["score"], v["accuracy"], len(yv), preference(num_lstm, True))
  if choice >= num_lstm:
    whole = {
      k: np.concatenate([splits["train"][k], splits["valid"][k]])
      for k in splits["train"]
    }
    refit = minirocket.fit(whole, seed, kernels, num_classes)
    test = _with_kernels(test, minirocket.log_probs(refit, splits["test"]))
  acc = scores(test[choice : choice + 1], yt)["accuracy"][0]
  return {"ensemble/accuracy": float(acc), "ensemble/choice": float(choice)}
