r"""The BIG LSTM of Jozefowicz et al. (2016), declared by this file alone.

  python -m lstm_jax.main --config=experiments/big_lstm.py \
      --config.data.path=1b_words_train_and_heldout.txt --workdir=runs/big
  python -m lstm_jax.main --config=experiments/big_lstm.py:tiny --workdir=/tmp/big
  python benchmarks/fit.py experiments/big_lstm.py --mesh 2,8 --devices 16 --hbm 32

"Exploring the Limits of Language Modeling": on the One Billion Word
benchmark, 2 layers of 8192 LSTM cells with a 1024-wide projection (LSTMP),
1024-wide input embeddings, a 793,471-word vocabulary (`VOCAB_SIZE`, the
words seen at least 3 times), a sampled softmax with 8192 samples, Adagrad
at rate 0.2, windows of 20 words: about 1.8B parameters, test perplexity
30.6. The word-LM task (`lstm_jax/tasks/wordlm.py`) trains it: ids ranked
by frequency (what the sampled softmax's log-uniform proposal assumes), the
carry passed between windows, the full softmax in evaluation. The vocabulary
is padded to a multiple of `parallel.mesh_shape`'s "model" axis (793,472 on
8 or 16), so the embedding and softmax are split, not replicated.

Differences from the paper, stated: the paper ran 32 GPU workers of 128
rows each with asynchronous updates; here they are one synchronous batch of
4096 rows (the rate 0.2 was tuned for 128-row asynchronous steps and may
need retuning). The data are one whitespace-tokenised file (concatenate the
benchmark's training shards, then its held-out shard: the task takes the
last `data.valid_fraction` / `data.test_fraction` of the tokens). No
Kneser-Ney baseline at this size (`baseline.order = 0`: the pure-Python
n-gram would take hours on 800M words).

`tiny` is the same code path (sampled softmax, LSTMP, Adagrad, untied
embeddings) at seconds-on-CPU size: hidden 64, a 5,000-word vocabulary.
Memory and time at full size: benchmarks/README.md ("Does the BIG LSTM
fit?").
"""

import ml_collections

from experiments import base, wordlm

VARIANTS = ("tiny",)
# The One Billion Word benchmark's vocabulary (benchmarks/fit.py sizes the
# model with it; a training run takes the size from its data).
VOCAB_SIZE = 793_471


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The BIG LSTM; `arg="tiny"` is a seconds-long variant of the same path."""
  variant = base.parse_variants(arg, "big_lstm")
  config = wordlm.get_config()

  config.data.tokenizer = "whitespace"
  config.data.lowercase = False
  config.data.min_count = 3
  config.data.max_vocab = 0
  config.data.seq_len = 20
  config.data.batch_size = 4096
  config.data.eval_batch_size = 64
  config.data.valid_fraction = 0.001
  config.data.test_fraction = 0.001

  config.model.embed_dim = 1024
  config.model.tie_embeddings = False
  config.model.embed_dropout = 0.0
  config.model.softmax = "sampled"
  config.model.num_samples = 8192
  config.model.lstm.hidden_size = 8192
  config.model.lstm.proj_size = 1024
  config.model.lstm.num_layers = 2
  config.model.lstm.input_dropout = 0.0
  config.model.lstm.output_dropout = 0.0
  config.model.lstm.weight_drop = 0.0
  config.model.lstm.dropout = 0.25

  config.baseline.order = 0

  config.optim.name = "adagrad"
  config.optim.learning_rate = 0.2
  config.optim.schedule = "constant"
  config.optim.warmup_steps = 0
  config.optim.weight_decay = 0.0
  config.optim.clip_norm = 1.0

  config.parallel.mesh_shape = (-1, 8)
  config.train.steps = 200_000
  config.train.log_every = 100
  config.train.eval_every = 5000
  config.train.eval_batches = 100
  config.checkpoint.every_steps = 1000

  if "tiny" in variant.flags:
    config.data.min_count = 1
    config.data.max_vocab = 5000
    config.data.seq_len = 8
    config.data.batch_size = 8
    config.data.eval_batch_size = 8
    config.data.valid_fraction = 0.05
    config.data.test_fraction = 0.02  # the end-of-run test pass: ~30 batches
    config.model.embed_dim = 16
    config.model.num_samples = 256
    config.model.lstm.hidden_size = 64
    config.model.lstm.proj_size = 16
    config.model.lstm.dropout = 0.0
    config.parallel.mesh_shape = (-1, 1)
    config.train.steps = 8
    config.train.log_every = 2
    config.train.eval_every = 4
    config.train.eval_batches = 2
    config.checkpoint.every_steps = 4
  return config
