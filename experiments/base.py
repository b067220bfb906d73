"""Every config key, declared once with its default and what it means.

Experiments import this and override values; they never add keys, so a typo on
the command line (`--config.trian.steps=5`) fails naming the key, because the
config is loaded with `lock_config=True`. Keys whose default is "unset" are
typed placeholders, so `--config.data.path=my.txt` still type-checks.

Run an experiment (not this file) with, for example::

  python -m lstm_jax.main --config=experiments/charlm.py --workdir=runs/charlm
"""

import ml_collections
from ml_collections import config_dict


def get_config() -> ml_collections.ConfigDict:
  """The base config: the key schema and neutral defaults."""
  config = ml_collections.ConfigDict()
  # Seed of parameter init, dropout and batch order; the run is a function of it.
  config.seed = 0
  # Task module under lstm_jax/tasks/ that provides data, model, loss, report.
  config.task = "charlm"

  config.data = ml_collections.ConfigDict()
  # UTF-8 text file to train on; unset = Python's built-in pydoc_data.topics.
  config.data.path = config_dict.placeholder(str)
  # Fraction of the corpus held out for validation: the LAST chars, no shuffle.
  config.data.valid_fraction = 0.1
  # Characters per training window (truncated-BPTT length).
  config.data.seq_len = 128
  # Rows per training batch.
  config.data.batch_size = 32
  # Rows per eval batch: validation is read as this many contiguous streams.
  config.data.eval_batch_size = 32

  config.model = ml_collections.ConfigDict()
  # Width of the input embedding.
  config.model.embed_dim = 64
  # LSTM cell size of every layer.
  config.model.hidden_size = 256
  # Stacked LSTM layers.
  config.model.num_layers = 1
  # Dropout on every LSTM layer's output (between layers and before the head).
  config.model.dropout = 0.0
  # Cell variant: "standard", "layernorm" or "peephole".
  config.model.cell = "standard"
  # If > 0, LSTMP projection of h to this size.
  config.model.proj_size = 0
  # Share the embedding matrix with the output layer (adds a projection to
  # embed_dim when the LSTM output has another width).
  config.model.tie_embeddings = False
  # Matmul compute dtype: "float32" or "bfloat16" (params and carry stay f32).
  config.model.dtype = "float32"
  # Recompute LSTM step activations in the backward pass (saves memory).
  config.model.remat = False
  # lax.scan unroll factor of the LSTM time loop.
  config.model.unroll = 1
  # LSTM implementation: "auto", "fused", "reference", "pallas" or "cudnn" (see
  # lstm_scan; what a path cannot take falls back, with the reason logged).
  config.model.impl = "auto"
  # Initial forget-gate bias.
  config.model.forget_bias = 1.0

  config.optim = ml_collections.ConfigDict()
  # "adamw" (decoupled weight decay), "adam" or "sgd" (L2 added to the grads).
  config.optim.name = "adamw"
  # Peak learning rate.
  config.optim.learning_rate = 1e-3
  # "constant", "warmup_cosine" or "step"; all start with a linear warmup.
  config.optim.schedule = "warmup_cosine"
  # Linear warmup from 0 to learning_rate over this many updates.
  config.optim.warmup_steps = 100
  # Length of the whole schedule incl. warmup (cosine); unset = train.steps.
  config.optim.decay_steps = config_dict.placeholder(int)
  # The cosine ends at learning_rate * final_lr_fraction.
  config.optim.final_lr_fraction = 0.1
  # "step" schedule: multiply the rate by step_factor every step_every updates.
  config.optim.step_every = 1000
  config.optim.step_factor = 0.5
  # Adam(W) moments and epsilon.
  config.optim.b1 = 0.9
  config.optim.b2 = 0.999
  config.optim.eps = 1e-8
  # SGD momentum (0 = plain SGD) and Nesterov.
  config.optim.momentum = 0.9
  config.optim.nesterov = False
  # Weight decay on weight matrices and embeddings only (see optim.decay_mask).
  config.optim.weight_decay = 0.0
  # Clip gradients to this global norm; 0 = no clipping.
  config.optim.clip_norm = 1.0
  # Skip (do not apply) an update whose gradient has a NaN or Inf.
  config.optim.skip_nonfinite = True

  config.train = ml_collections.ConfigDict()
  # Total optimizer steps of the run.
  config.train.steps = 1000
  # Log train metrics every N steps (means over those steps).
  config.train.log_every = 50
  # Evaluate (and save a checkpoint with the eval metrics) every N steps;
  # there is always an eval at the last step.
  config.train.eval_every = 500
  # Eval batches per evaluation; unset = the whole validation split.
  config.train.eval_batches = config_dict.placeholder(int)
  # Stop after this many evals without improving checkpoint.best_metric;
  # 0 = never stop early.
  config.train.early_stop_patience = 0
  # Stop the run after this many consecutive steps with a non-finite loss.
  config.train.max_nonfinite_steps = 20
  # Stateful LM training: carry the LSTM state from one window to the next.
  config.train.stateful = False
  # End-of-run sample: length in chars (0 = none), temperature (0 = greedy),
  # prompt.
  config.train.sample_length = 300
  config.train.sample_temperature = 0.8
  config.train.sample_prompt = "The "

  config.checkpoint = ml_collections.ConfigDict()
  # Save every N steps (plus at each eval, at the end and on SIGTERM).
  config.checkpoint.every_steps = 500
  # Keep the last N checkpoints (the best one is kept in addition).
  config.checkpoint.keep = 2
  # Eval metric that ranks checkpoints and drives early stopping.
  config.checkpoint.best_metric = "eval/bpc"
  # "min" or "max": which direction of best_metric is better.
  config.checkpoint.best_mode = "min"

  config.parallel = ml_collections.ConfigDict()
  # Device mesh (data, model); -1 = all remaining devices. Batches are split
  # over "data"; parameters are replicated (the "model" axis is reserved).
  config.parallel.mesh_shape = (1, 1)
  return config
