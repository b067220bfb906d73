r"""Word-level LSTM language model on the built-in corpus (or any text file).

  python -m lstm_jax.main --config=experiments/wordlm.py --workdir=runs/wordlm
  python -m lstm_jax.main --config=experiments/wordlm.py:tiny --workdir=/tmp/tiny
  python -m lstm_jax.main --config=experiments/wordlm.py:awd \
      --config.data.path=ptb.txt --config.data.tokenizer=whitespace --workdir=runs/awd

The default corpus is Python's `pydoc_data.topics` (98k words with the
"regex" tokeniser and an `<eos>` per line; the first 80% trains, then 10%
validation, 10% test; 2,801 words seen twice or more in training, the rest
`<unk>`: 4.9% of the test words). The run's test record holds the LSTM's
perplexity beside an interpolated modified Kneser-Ney 5-gram's, trained on
the same split with the same vocabulary. Measured (seed 0, 2026-12-05):
test perplexity 64.06 (validation 60.21 at step 1,500, still falling:
62.2 at 1,050, 60.6 at 1,350) against the Kneser-Ney 5-gram's 73.57
(validation 65.64); 39.2 minutes wall, 7.1 CPU-minutes, on 2 shared CPU
cores. docs/tasks.md, "The other tasks".

Variants: `tiny` (seconds on CPU, the tests' run) and `awd`, the AWD-LSTM
recipe of Merity et al. (2018): 3 layers of 1150 units, 400-wide tied
embedding, embedding dropout 0.1, locked dropout 0.4 (input) / 0.25
(between layers) / 0.4 (output), weight-drop 0.5 on w_hh, AR 2 / TAR 1,
BPTT 70, batch 20. Its published test perplexities (with NT-ASGD, before
fine-tuning and the cache): PTB 58.8 (57.3 after fine-tuning), WikiText-2
68.6 (65.8); it is meant for a GPU and a PTB/WikiText file (whitespace
tokeniser). AWD-LSTM's averaged SGD becomes schedule-free AdamW here
(`optim.schedule_free`: the evaluated parameters are the average of the
iterates). Not yet run on PTB/WikiText: no figure of ours to put beside
the published ones.
"""

import ml_collections

from experiments import base
from lstm_jax.nn.layers import lstm_config

# The `:variant`s of get_config (listed by `python -m lstm_jax.main --help`).
VARIANTS = ("tiny", "awd")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The word-LM config; `arg` is "tiny", "awd" or None."""
  # tiny and awd are alternatives: awd's full-size settings would undo tiny's.
  variant = base.parse_variants(arg, "wordlm", flags=(), choices=("tiny", "awd"))
  config = base.get_config()
  config.task = "wordlm"

  config.data = ml_collections.ConfigDict()
  # UTF-8 text file to train on; unset = Python's built-in pydoc_data.topics.
  config.data.path = ml_collections.config_dict.placeholder(str)
  # "regex" (raw text: words and punctuation runs, empty lines skipped) or
  # "whitespace" (pre-tokenised PTB/WikiText files); lowercase first?
  config.data.tokenizer = "regex"
  config.data.lowercase = True
  # Vocabulary from the training split: words seen at least min_count times,
  # at most max_vocab words in all (0 = no cap); the rest are <unk>.
  config.data.min_count = 2
  config.data.max_vocab = 0
  # Validation, then test: the last fractions of the tokens, in order.
  config.data.valid_fraction = 0.1
  config.data.test_fraction = 0.1
  # Words per training window (truncated-BPTT length).
  config.data.seq_len = 64
  # Rows per training batch (= contiguous streams when train.stateful).
  config.data.batch_size = 32
  # Rows per eval batch: validation and test are read as this many streams.
  config.data.eval_batch_size = 16
  # Where the carry resets: "never" (one stream), "document" or "line".
  config.data.reset = "never"
  # At least this many passes over the training tokens: train.steps is
  # raised to ceil(min_epochs * train_tokens / (batch_size * seq_len)) when
  # that is more (as the char-LM's); 0 = exactly train.steps.
  config.data.min_epochs = 0.0

  config.model = ml_collections.ConfigDict()
  # Width of the word embedding (and of the tied output layer).
  config.model.embed_dim = 256
  # Output weights = the embedding table (a projection of h to embed_dim
  # first if the LSTM's output width differs).
  config.model.tie_embeddings = True
  # Drop whole words (embedding rows) at this rate per batch; 0 = off.
  config.model.embed_dropout = 0.1
  # Output layer: "full" (softmax over the whole vocabulary), "sampled"
  # (training: a sampled softmax over num_samples log-uniform candidates,
  # which assumes ids ranked by frequency, as the vocabulary's are;
  # evaluation: the full softmax) or "adaptive" (Grave et al. 2017, exact;
  # needs tie_embeddings=False). lstm_jax/ops/softmax.py has the maths.
  config.model.softmax = "full"
  # "sampled": candidate words per training step, shared by the batch.
  config.model.num_samples = 1024
  # "adaptive": the first id of each tail cluster (increasing, below the
  # vocabulary size); cluster i projects h to width / div_value**(i+1).
  config.model.cutoffs = (1000, 2000)
  config.model.div_value = 4.0
  # Storage dtype of the embedding and output matrices: "float32" or
  # "bfloat16" (half the memory of the largest parameters; the products are
  # computed in float32). The LSTM's parameters stay float32.
  config.model.param_dtype = "float32"
  # Pad the vocabulary to a multiple of parallel.mesh_shape's "model" axis
  # when its matrices are large enough to be split (the padding's logits are
  # -inf: losses are unchanged). False on such a mesh: the run is refused,
  # as the matrices would be replicated on every device.
  config.model.pad_vocab = True
  # The LSTM stack (keys: lstm_jax.nn.layers.lstm_config).
  config.model.lstm = lstm_config(
    hidden_size=256,
    num_layers=1,
    input_dropout=0.4,
    output_dropout=0.4,
    weight_drop=0.3,
  )

  config.baseline = ml_collections.ConfigDict()
  # Order of the interpolated modified Kneser-Ney n-gram scored on the test
  # split in the same run (lstm_jax.baselines.kneser_ney); 0 = none.
  config.baseline.order = 5

  config.optim.learning_rate = 3e-3
  config.optim.warmup_steps = 50
  config.optim.weight_decay = 0.1

  config.train.steps = 1500
  config.train.stateful = True
  config.train.log_every = 50
  config.train.eval_every = 150
  config.checkpoint.every_steps = 150
  config.checkpoint.best_metric = "eval/loss"

  if variant.choice == "tiny":
    base.tiny(config)
    config.data.seq_len = 16
    config.data.batch_size = 8
    config.data.eval_batch_size = 8
    config.model.embed_dim = 16
    config.model.lstm.hidden_size = 32
    config.train.eval_batches = 4
    config.baseline.order = 3
  elif variant.choice == "awd":
    config.data.seq_len = 70
    config.data.batch_size = 20
    config.data.eval_batch_size = 10
    config.data.min_count = 1
    config.model.embed_dim = 400
    config.model.lstm = lstm_config(
      hidden_size=1150,
      num_layers=3,
      input_dropout=0.4,
      hidden_dropout=0.25,
      output_dropout=0.4,
      weight_drop=0.5,
      ar_alpha=2.0,
      tar_beta=1.0,
    )
    config.model.embed_dropout = 0.1
    # AWD-LSTM's NT-ASGD, in Adam form: schedule-free AdamW (evaluated on
    # the average of the iterates) at a constant rate after warmup.
    config.optim.schedule_free = True
    config.optim.schedule = "constant"
    config.optim.warmup_steps = 1000
    config.optim.learning_rate = 2e-3
    config.optim.weight_decay = 1.2e-6
    config.optim.clip_norm = 0.25
    config.train.steps = 60000
    config.train.eval_every = 1000
    config.checkpoint.every_steps = 1000
  return config
