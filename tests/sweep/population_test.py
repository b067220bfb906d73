"""Population mode: K members in one vmapped step equal K ordinary runs.

The reference is the ordinary trainer's own pieces (`optim.make_optimizer`
with Python floats and `steps.make_train_step` on a model built with each
member's dropout rate), run one member at a time: nothing of
`lstm_jax.sweep.population` takes part in it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lstm_jax.errors import ConfigError
from lstm_jax.sweep import population
from lstm_jax.sweep import spec as sweep_spec
from lstm_jax.sweep import table as sweep_table
from lstm_jax.training import build, steps
from tests.support import tolerances
from tests.support.toy import sign_config

MEMBERS = [
  {
    "optim.learning_rate": 1e-2,
    "optim.weight_decay": 0.0,
    "model.lstm.dropout": 0.0,
    "seed": 0,
  },
  {
    "optim.learning_rate": 3e-3,
    "optim.weight_decay": 0.1,
    "model.lstm.dropout": 0.1,
    "seed": 1,
  },
  {
    "optim.learning_rate": 2e-2,
    "optim.weight_decay": 0.0,
    "model.lstm.dropout": 0.3,
    "seed": 2,
  },
  {
    "optim.learning_rate": 5e-3,
    "optim.weight_decay": 0.2,
    "model.lstm.dropout": 0.2,
    "seed": 3,
  },
]


def _config(steps_=6):
  config = sign_config.get_config()
  config.data.seq_len = 8
  config.data.batch_size = 8
  config.data.eval_examples = 16
  config.model.lstm.hidden_size = 8
  config.model.lstm.num_layers = 2  # an inter-layer nn.Dropout exists
  config.optim.warmup_steps = 2
  config.train.steps = steps_
  config.train.log_every = 3
  config.train.eval_every = 3
  config.checkpoint.every_steps = 3
  # SGD + momentum: an update linear in the gradient, so the vmapped members
  # and the one-by-one runs (the same float32 math, batched differently)
  # differ by the gradients' summation order only: a bound the comparison
  # below can state (tests/support/tolerances.py, sgd_params_tol). Adam would
  # magnify that rounding at near-zero gradients.
  config.optim.name = "sgd"
  return config


def _trials(config, members):
  taken = set()
  return [sweep_spec.make_trial(config, m, taken) for m in members]


def _one_by_one(trial, n_steps):
  """The ordinary trainer's step for one member: losses and final params."""
  cfg = trial.config
  built = build.build(cfg)
  data, tx = built.datasets, built.tx
  state = built.init_state(jax.random.key(cfg.seed))
  initial = state.params
  step = jax.jit(steps.make_train_step(built.model, built.task.loss_and_metrics, tx))
  losses, norms = [], []
  for i in range(n_steps):
    state, m, loss = step(state, jax.tree.map(jnp.asarray, data.train_batch(i)))
    losses.append(float(loss))
    norms.append(float(m["grad_norm"][0]))
  return np.array(losses), np.array(norms), state.params, initial


# Two members in the default suite (each one-by-one run is its own compile);
# all four, every hyperparameter varied, in the slow suite.
@pytest.mark.parametrize(
  "members",
  [
    pytest.param(MEMBERS[1:3], id="two"),
    pytest.param(MEMBERS, id="four", marks=pytest.mark.slow),
  ],
)
def test_vmapped_population_equals_members_run_one_by_one(members):
  n_steps = 6
  trials = _trials(_config(), members)
  pop = population.build(trials)
  state = population.stack([pop["init"](k) for k in range(len(trials))])
  keep = jnp.asarray(population.keep_probs(trials))
  active = jnp.ones(len(trials), bool)
  losses, norms = [], []
  for i in range(n_steps):
    batch = population.stack([d.train_batch(i) for d in pop["datasets"]])
    state, m, loss = pop["train_step"](state, batch, keep, active)
    losses.append(np.asarray(loss))
    norms.append(np.asarray(m["grad_norm"][0]))
  losses, norms = np.stack(losses, 1), np.stack(norms, 1)
  config = _config()
  tokens = config.data.batch_size * config.data.seq_len
  for k, trial in enumerate(trials):
    ref_loss, ref_norm, ref_params, initial = _one_by_one(trial, n_steps)
    # Losses and gradient norms: means over the batch's tokens, in another
    # summation order, after up to n_steps updates from parameters within
    # the bound below: sum_tol(tokens * steps) relative.
    rtol = tolerances.sum_tol(tokens * n_steps)
    np.testing.assert_allclose(losses[k], ref_loss, rtol=rtol)
    np.testing.assert_allclose(norms[k], ref_norm, rtol=rtol)
    got = population.member(state.params, k)
    for a, b, p0 in zip(
      jax.tree.leaves(got), jax.tree.leaves(ref_params), jax.tree.leaves(initial)
    ):
      b, p0 = np.asarray(b), np.asarray(p0)
      tol = tolerances.sgd_params_tol(
        tokens, n_steps, np.max(np.abs(b)), np.max(np.abs(b - p0))
      )
      np.testing.assert_allclose(a, b, rtol=0, atol=tol)
  # The members really differ (different seeds, rates): not one run repeated.
  assert np.ptp(losses[:, -1]) > 1e-3


@pytest.mark.slow
def test_a_diverging_member_stops_alone(tmp_path):
  config = _config(steps_=6)
  config.optim.name = "adamw"  # its update is ~lr for every weight (below)
  config.train.max_nonfinite_steps = 2
  # A finite learning rate (the config check refuses inf) so large that Adam's
  # first update (about lr / warmup_steps per weight) puts the weights near
  # float32's largest value (3.4e38): the next forward pass overflows, every
  # later loss is non-finite, and the member stops after two of them.
  bad = {**MEMBERS[0], "optim.learning_rate": 3e38}
  statuses = population.run(_trials(config, [bad, *MEMBERS[1:3]]), str(tmp_path / "a"))
  assert statuses == ["diverged", "finished", "finished"]
  population.run(_trials(config, MEMBERS[1:3]), str(tmp_path / "b"))
  for trial in _trials(config, MEMBERS[1:3]):
    got = sweep_table.eval_history(str(tmp_path / "a" / trial.name), "eval/loss")
    want = sweep_table.eval_history(str(tmp_path / "b" / trial.name), "eval/loss")
    assert len(got) == 2
    # the same members with and without a diverged neighbour: vmapped float32 math in another batch, rounding only
    np.testing.assert_allclose([v for _, v in got], [v for _, v in want], atol=1e-5)
    assert (
      sweep_table.read_trial(str(tmp_path / "a" / trial.name))["status"] == "finished"
    )


def test_members_differing_in_a_shape_key_are_refused():
  config = _config()
  trials = _trials(
    config, [{"model.lstm.hidden_size": 8}, {"model.lstm.hidden_size": 16}]
  )
  with pytest.raises(ConfigError, match=r"'model\.lstm\.hidden_size'"):
    population.check_members(trials)
