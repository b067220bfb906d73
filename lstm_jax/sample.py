r"""Sample text from a trained character LM.

  python -m lstm_jax.sample --workdir=runs/charlm --prompt="def " \
      --length=300 --temperature=0.8 [--seed=0] [--checkpoint=latest|best]

The prompt is run through the model once (priming the carry); then each new
character is drawn from softmax(logits / temperature) (temperature 0 takes the
argmax) and fed back, inside one `lax.scan` that carries the LSTM state, so
generating n characters costs n single-step LSTM updates.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from lstm_jax import errors
from lstm_jax.data.text import Vocab

Array = jax.Array


@functools.partial(jax.jit, static_argnames=("model", "length", "temperature"))
def generate(
  params: Any,
  model: nn.Module,
  prompt_ids: Array,
  length: int,
  temperature: float,
  rng: Array,
) -> Array:
  """Continues `prompt_ids` <int32>[batch, prompt_len] by `length` tokens.

  Compiled once per (model, shapes, length, temperature).

  Returns:
    <int32>[batch, length] the generated tokens (the prompt excluded).
  """
  logits, carry = model.apply({"params": params}, {"inputs": prompt_ids})

  def step(state, key):
    last, carry = state
    if temperature == 0:
      token = jnp.argmax(last, axis=-1).astype(jnp.int32)
    else:
      token = jax.random.categorical(key, last / temperature).astype(jnp.int32)
    logits, carry = model.apply(
      {"params": params}, {"inputs": token[:, None]}, carry=carry
    )
    return (logits[:, -1], carry), token

  keys = jax.random.split(rng, length)
  _, tokens = jax.lax.scan(step, (logits[:, -1], carry), keys)
  return tokens.T


def sample(
  params: Any,
  model: nn.Module,
  vocab: Vocab,
  prompt: str,
  length: int,
  temperature: float,
  rng: Array,
) -> str:
  """Generates `length` characters after `prompt`; returns them (not the prompt).

  Raises:
    errors.ConfigError: the prompt is empty or has characters the vocabulary
      lacks (they are named).
  """
  if not prompt:
    raise errors.ConfigError("the prompt is empty; give at least one character.")
  missing = vocab.missing(prompt)
  if missing:
    raise errors.ConfigError(
      f"the prompt has characters that are not in the model's vocabulary: {missing}"
    )
  if temperature < 0:
    raise errors.ConfigError(f"temperature must be >= 0, got {temperature}")
  ids = jnp.asarray(vocab.encode(prompt))[None]
  tokens = generate(params, model, ids, length, float(temperature), rng)
  return vocab.decode(np.asarray(tokens[0]))


def load_run(workdir: str, which: str = "latest") -> tuple[Any, nn.Module, Vocab, int]:
  """Params, model and vocabulary of the run in `workdir`.

  Args:
    workdir: a training run's directory.
    which: "latest" or "best" (by `checkpoint.best_metric`) checkpoint.

  Returns:
    (params, model, vocab, step).

  Raises:
    errors.LstmJaxError: no run, no checkpoint, or not a char-LM run.
  """
  from lstm_jax import checkpoint, tasks  # noqa: PLC0415
  from lstm_jax import workdir as workdir_lib
  from lstm_jax.tasks.charlm import VOCAB_FILE

  names = (workdir_lib.CONFIG_FILE, workdir_lib.DATA_FILE, VOCAB_FILE)
  files = {n: os.path.join(workdir, n) for n in names}
  for name, path in files.items():
    if not os.path.exists(path):
      raise errors.LstmJaxError(
        f"{workdir} does not hold a trained char-LM run ({name} is missing); "
        "train one with `python -m lstm_jax.main --config=experiments/charlm.py "
        f"--workdir={workdir}`."
      )
  config = workdir_lib.load_config(workdir)
  with open(files[workdir_lib.DATA_FILE], encoding="utf-8") as f:
    info = json.load(f)
  model = tasks.get_task(config.task).make_model(config, info)
  vocab = Vocab.load(files[VOCAB_FILE])
  manager = checkpoint.make_manager(workdir, config)
  try:
    if which == "best":
      step = checkpoint.best_step(manager)
      if step is None:
        raise errors.LstmJaxError(f"{workdir} has no checkpoint with eval metrics yet.")
      restored = checkpoint.restore_step(manager, step, None)
    else:
      found = checkpoint.restore_latest(manager, None)
      if found is None:
        raise errors.LstmJaxError(f"{workdir} holds no checkpoint yet.")
      restored, step = found
  finally:
    manager.close()
  return restored["params"], model, vocab, step


def _define_flags() -> None:
  # Defined only when run as a program: importing this module (the trainer
  # does, for end-of-run samples) must not add flags to the global registry.
  flags.DEFINE_string("workdir", None, "Directory of a training run.", required=True)
  flags.DEFINE_string("prompt", "The ", "Text to continue (non-empty).")
  flags.DEFINE_integer("length", 300, "Characters to generate.")
  flags.DEFINE_float("temperature", 0.8, "0 = greedy (argmax).")
  flags.DEFINE_integer("seed", 0, "Sampling seed.")
  flags.DEFINE_enum("checkpoint", "latest", ["latest", "best"], "Which checkpoint.")


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  f = flags.FLAGS
  try:
    params, model, vocab, step = load_run(f.workdir, f.checkpoint)
    text = sample(
      params,
      model,
      vocab,
      f.prompt,
      f.length,
      f.temperature,
      jax.random.PRNGKey(f.seed),
    )
  except errors.LstmJaxError as e:
    sys.exit(f"error: {e}")
  print(f"# {f.workdir} step {step}, temperature {f.temperature}", file=sys.stderr)
  print(f.prompt + text)


if __name__ == "__main__":
  _define_flags()
  app.run(main)
