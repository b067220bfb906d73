r"""Character-level LSTM language model on the built-in corpus.

  python -m lstm_jax.main --config=experiments/charlm.py --workdir=runs/charlm
  python -m lstm_jax.main --config=experiments/charlm.py:tiny --workdir=/tmp/tiny
  python -m lstm_jax.main --config=experiments/charlm.py \
      --config.data.path=my.txt --workdir=runs/mine

The default corpus is Python's `pydoc_data.topics` (~465k characters); the
last 10% is validation. On another corpus the step count scales with its size
(`data.min_epochs`; docs/tasks.md, "The char-LM on a larger corpus", has measured figures). The run's measured time and validation bits per
character are in docs/tasks.md (an interpolated character 5-gram gets 1.905 on
the same split).
"""

import ml_collections
from ml_collections import config_dict

from experiments import base
from lstm_jax.nn.layers import lstm_config

# The `:variant`s of get_config (listed by `python -m lstm_jax.main --help`).
VARIANTS = ("tiny",)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The char-LM config; `arg="tiny"` is a seconds-long smoke-test variant."""
  variant = base.parse_variants(arg, "charlm")
  config = base.get_config()
  config.task = "charlm"

  config.data = ml_collections.ConfigDict()
  # UTF-8 text file to train on; unset = Python's built-in pydoc_data.topics.
  config.data.path = config_dict.placeholder(str)
  # Fraction of the corpus held out for validation: the LAST chars, no shuffle.
  config.data.valid_fraction = 0.1
  # Characters per training window (truncated-BPTT length).
  config.data.seq_len = 128
  # Rows per training batch.
  config.data.batch_size = 64
  # Rows per eval batch: validation is read as this many contiguous streams.
  config.data.eval_batch_size = 64
  # Training budget that scales with the corpus: the run makes at least this
  # many passes over the training text. The char-LM task raises train.steps
  # to ceil(min_epochs * train_chars / (batch_size * seq_len)) when that is
  # more (lstm_jax.tasks.charlm.budget_steps), before the trainer reads it;
  # config.json records the raised value. 0 = exactly train.steps. The
  # built-in corpus needs 256 steps for 5 passes, so its run stays at
  # train.steps = 900 (17.6 passes); a 4.3M-character corpus gets 2,362.
  config.data.min_epochs = 5.0

  # Tuned on this corpus for two CPU cores (the tuning runs: benchmarks/
  # README.md, "Tuning the char-LM default"): 2 x 384 with dropout 0.3 beats
  # 1 x 512. More steps buy little (the model overfits the ~420k training
  # characters) and cost time, so the run stops at 900 (time per step:
  # docs/tasks.md).
  config.model = ml_collections.ConfigDict()
  # Width of the input embedding.
  config.model.embed_dim = 64
  # Share the embedding matrix with the output layer (adds a projection to
  # embed_dim when the LSTM output has another width).
  config.model.tie_embeddings = False
  # Embedding dropout: in training, drop whole symbols (rows of the embedding
  # matrix) at this rate, one mask per batch (Merity et al., 2017); 0 = off.
  config.model.embed_dropout = 0.0
  # The LSTM stack (keys and their meaning: lstm_jax.nn.layers.lstm_config).
  # dtype "auto": bfloat16 matmul inputs where the hardware computes them
  # natively (TPU, Ampere+ GPUs, CPUs with AVX512_BF16 or AMX), float32
  # elsewhere, where emulated bfloat16 is slower; the run's first line says
  # which. The carry and the softmax stay float32.
  config.model.lstm = lstm_config(
    hidden_size=384, num_layers=2, dropout=0.3, dtype="auto"
  )

  config.sample = ml_collections.ConfigDict()
  # End-of-run sample: length in characters (0 = none).
  config.sample.length = 300
  # Softmax temperature of the sample (0 = greedy).
  config.sample.temperature = 0.8
  # Text the sample continues (must be corpus text).
  config.sample.prompt = "The "

  config.optim.learning_rate = 3e-3
  config.optim.warmup_steps = 100
  config.optim.b2 = 0.99
  config.optim.weight_decay = 0.1

  config.train.steps = 900
  config.train.log_every = 50
  config.train.eval_every = 300
  config.checkpoint.every_steps = 300
  config.checkpoint.best_metric = "eval/bpc"

  if "tiny" in variant.flags:
    base.tiny(config, steps=150, eval_every=50, checkpoint_every=50)
    config.data.seq_len = 32
    config.data.batch_size = 16
    config.data.eval_batch_size = 16
    config.data.min_epochs = 0.0  # exactly train.steps, whatever the corpus
    config.model.embed_dim = 16
    config.model.lstm.hidden_size = 64
    config.model.lstm.num_layers = 1
    config.model.lstm.dropout = 0.1
    config.model.lstm.dtype = "float32"
    config.train.eval_batches = 4
    config.sample.length = 60
  return config
