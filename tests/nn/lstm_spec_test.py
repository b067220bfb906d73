"""The LSTM's options (`nn/spec.py`): the config section they make, reading it
back (old runs' config.json included), the checks (the modules' attributes:
tests/nn/spec_fields_test.py), and the check of `lstm_scan`'s parameter keys."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from lstm_jax.errors import ConfigError
from lstm_jax.kernels import dispatch
from lstm_jax.nn import layers
from lstm_jax.nn.spec import LSTMSpec, lstm_config
from lstm_jax.workdir import rundir

# The `model.lstm` section of the config.json that `main` wrote at commit
# 3a8fc8a (before LSTMSpec) for `experiments/adding.py:tiny`, copied from the
# file: what the spec must still read, and write for the same settings.
OLD_RUN_SECTION = {
  "ar_alpha": 0.0, "bidirectional": False, "cell": "standard", "chrono_max_len": 20,
  "dropout": 0.0, "dtype": "float32", "forget_bias": 1.0, "hidden_dropout": 0.0,
  "hidden_size": 16, "impl": "auto", "input_dropout": 0.0, "num_layers": 1,
  "output_dropout": 0.0, "proj_size": 0, "recurrent_dropout": 0.0, "remat": False,
  "tar_beta": 0.0, "unroll": 1, "weight_drop": 0.0, "zoneout_cell": 0.0,
  "zoneout_hidden": 0.0,
}  # fmt: skip


def test_config_section_is_the_old_one():
  # Same keys and defaults as the section main's lstm_config made (so every
  # existing config and workdir still loads and resumes).
  section = LSTMSpec(hidden_size=16, chrono_max_len=20).to_config()
  assert rundir.config_to_dict(section) == OLD_RUN_SECTION
  assert rundir.config_to_dict(lstm_config(hidden_size=16, chrono_max_len=20)) == (
    OLD_RUN_SECTION
  )
  default = rundir.config_to_dict(lstm_config(hidden_size=8))
  assert default["chrono_max_len"] is None
  # chrono_max_len stays an int placeholder: settable from None, typed.
  section = lstm_config(hidden_size=8)
  section.chrono_max_len = 12
  assert section.chrono_max_len == 12
  with pytest.raises(TypeError):
    section.chrono_max_len = "long"


def test_old_run_section_reads_back_and_builds_the_module():
  spec = LSTMSpec.from_config(OLD_RUN_SECTION)
  assert spec == LSTMSpec(hidden_size=16, chrono_max_len=20)
  assert LSTMSpec.from_config(spec.to_config()) == spec
  model = layers.lstm_from_config(OLD_RUN_SECTION)
  assert (model.hidden_size, model.chrono_max_len, model.dtype) == (16, 20, "float32")
  params = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((2, 3, 5)))
  assert params["params"]["layer_0_fwd"]["w_hh"].shape == (16, 64)


@pytest.mark.parametrize(
  "key, value, expected",
  [
    ("hidden_size", 0, "must be >= 1, got 0"),
    ("hidden_size", 16.0, "must be an int, got 16.0"),
    ("num_layers", 0, "must be >= 1, got 0"),
    ("proj_size", -1, "must be >= 0, got -1"),
    ("unroll", 0, "must be >= 1, got 0"),
    ("bidirectional", "yes", "must be a bool, got 'yes'"),
    ("cell", "gru", "must be one of ['standard', 'layernorm', 'peephole'], got 'gru'"),
    ("impl", "cuda", "must be one of ['auto', 'fused', 'reference', 'pallas', 'cudnn']"),
    ("dtype", "float16", "must be one of ['auto', 'float32', 'bfloat16'], got 'float16'"),
    ("chrono_max_len", 2, "must be >= 3, got 2"),
    ("dropout", 1.0, "must be in [0, 1), got 1.0"),
    ("weight_drop", -0.1, "must be in [0, 1), got -0.1"),
    ("zoneout_cell", 1.5, "must be in [0, 1], got 1.5"),
    ("ar_alpha", -1.0, "must be >= 0.0, got -1.0"),
    ("tar_beta", math.nan, "must be >= 0.0, got nan"),
    ("forget_bias", math.inf, "must be finite, got inf"),
  ],
)  # fmt: skip
def test_bad_value_names_the_key(key, value, expected):
  section = {**OLD_RUN_SECTION, key: value}
  with pytest.raises(ConfigError) as err:
    LSTMSpec.from_config(section, prefix="model.decoder_lstm")
  assert str(err.value).startswith(f"model.decoder_lstm.{key} {expected}")
  with pytest.raises(ValueError, match=f"LSTMSpec.{key} "):  # also a ValueError
    LSTMSpec(**{"hidden_size": 8, key: value})


def test_unknown_or_missing_key():
  with pytest.raises(
    ConfigError, match=r"model.lstm lacks keys \[\] / has unknown keys \['hiden_size'\]"
  ):
    LSTMSpec.from_config({**OLD_RUN_SECTION, "hiden_size": 8})
  missing = {k: v for k, v in OLD_RUN_SECTION.items() if k != "remat"}
  with pytest.raises(
    ConfigError, match=r"lacks keys \['remat'\] / has unknown keys \[\]"
  ):
    LSTMSpec.from_config(missing)
  with pytest.raises(
    ConfigError, match=r"lstm_config has no LSTM option 'layers'; options: \["
  ):
    lstm_config(layers=2)
  with pytest.raises(ConfigError, match=r"lstm_config.dropout must be in \[0, 1\)"):
    lstm_config(hidden_size=8, dropout=2.0)
  with pytest.raises(ConfigError, match=r"lstm_config needs hidden_size"):
    lstm_config(num_layers=2)


def test_lstm_takes_the_initializers():
  model = layers.LSTM(
    3, num_layers=2, bidirectional=True, proj_size=2,
    kernel_init=nn.initializers.constant(0.5), recurrent_init=nn.initializers.ones,
  )  # fmt: skip
  params = model.init(jax.random.key(0), jnp.zeros((1, 2, 4)))["params"]
  assert len(params) == 4
  for layer in params.values():
    np.testing.assert_array_equal(layer["w_ih"], 0.5)
    np.testing.assert_array_equal(layer["w_proj"], 0.5)
    np.testing.assert_array_equal(layer["w_hh"], 1.0)


def _params(extra=None, drop=None):
  p = {"w_ih": jnp.zeros((3, 8)), "w_hh": jnp.zeros((2, 8)), "bias": jnp.zeros(8)}
  p.update(extra or {})
  return {k: v for k, v in p.items() if k != drop}


@pytest.mark.parametrize(
  "params, match",
  [
    (_params({"w_hh ": jnp.zeros((2, 8))}), r"unknown key\(s\) \['w_hh '\];"),
    (_params({"weight_ih_l0": jnp.zeros((8, 3))}),
     r"unknown key\(s\) \['weight_ih_l0'\] \(PyTorch's names: .*from_torch"),
    (_params({"ln_scale": jnp.ones(8)}), r"unknown key\(s\) \['ln_scale'\]"),
    (_params(drop="bias"), r"no key\(s\) \['bias'\]"),
  ],
  ids=["typo", "torch", "variant", "missing"],
)  # fmt: skip
def test_lstm_scan_rejects_unknown_parameter_keys(params, match):
  with pytest.raises(ValueError, match=match) as err:
    dispatch.lstm_scan(params, jnp.zeros((1, 2, 3)))
  assert "expected ['w_ih', 'w_hh', 'bias'] and optionally ['w_proj', 'peephole'," in (
    str(err.value)
  )
