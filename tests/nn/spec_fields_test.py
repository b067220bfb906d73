"""The modules' attributes are the LSTM's options: every Linen and NNX module
takes each option of its scope under the spec's name, with the spec's type and
default, shows it in its signature, and rejects what it does not take."""

import dataclasses
import inspect

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

import lstm_jax
from lstm_jax import nnx as lnnx
from lstm_jax.nn import layers, spec

# The options' names and defaults, written here once more by hand: what the
# config sections of existing runs hold (hidden_size has no default).
DEFAULTS = {
  "proj_size": 0, "cell": "standard", "forget_bias": 1.0, "chrono_max_len": None,
  "dtype": "float32", "remat": False, "unroll": 1, "impl": "auto",
  "recurrent_dropout": 0.0, "zoneout_cell": 0.0, "zoneout_hidden": 0.0,
  "weight_drop": 0.0, "num_layers": 1, "bidirectional": False, "dropout": 0.0,
  "input_dropout": 0.0, "hidden_dropout": 0.0, "output_dropout": 0.0,
  "ar_alpha": 0.0, "tar_beta": 0.0,
}  # fmt: skip
CELL = ("hidden_size", "proj_size", "cell", "forget_bias", "chrono_max_len", "dtype")
STACK_ONLY = (
  "num_layers", "bidirectional", "dropout", "input_dropout", "hidden_dropout",
  "output_dropout", "ar_alpha", "tar_beta",
)  # fmt: skip
LAYER = tuple(n for n in ("hidden_size", *DEFAULTS) if n not in STACK_ONLY)


def test_spec_declares_the_options():
  fields = {f.name: f for f in dataclasses.fields(spec.LSTMSpec)}
  assert set(fields) == {"hidden_size", *DEFAULTS}
  assert fields["hidden_size"].default is dataclasses.MISSING  # required
  assert {n: fields[n].default for n in DEFAULTS} == DEFAULTS
  assert spec.CELL_OPTIONS == CELL
  assert spec.LAYER_OPTIONS == LAYER
  assert set(spec.STACK_OPTIONS) == set(fields)


@pytest.mark.parametrize(
  "module, names",
  [(layers.LSTM, spec.STACK_OPTIONS), (layers.LSTMLayer, spec.LAYER_OPTIONS)],
  ids=["LSTM", "LSTMLayer"],
)
def test_linen_fields_equal_the_spec(module, names):
  want = {f.name: f for f in dataclasses.fields(spec.LSTMSpec)}
  have = {f.name: f for f in dataclasses.fields(module)}
  params = inspect.signature(module).parameters
  for name in names:
    assert have[name].default == want[name].default, name
    assert have[name].type == want[name].type, name
    assert params[name].default == (
      inspect.Parameter.empty if name == "hidden_size" else DEFAULTS[name]
    ), name
  # Nothing else of the spec: a stack option is not a layer's.
  assert set(have) & set(want) == set(names)
  assert next(iter(params)) == "hidden_size"  # the one positional option


def test_lstm_signature_shows_every_option():
  params = inspect.signature(lstm_jax.LSTM).parameters
  assert {"hidden_size", *DEFAULTS} <= set(params)
  assert params["hidden_size"].annotation == "int"
  assert params["dtype"].default == "float32"


@pytest.mark.parametrize(
  "make, names",
  [
    (lambda **o: lnnx.LSTM(3, 4, rngs=nnx.Rngs(0), **o), spec.STACK_OPTIONS),
    (lambda **o: lnnx.LSTMLayer(3, 4, rngs=nnx.Rngs(0), **o), spec.LAYER_OPTIONS),
    (lambda **o: lnnx.LSTMCell(3, 4, rngs=nnx.Rngs(0), **o), spec.CELL_OPTIONS),
  ],
  ids=["LSTM", "LSTMLayer", "LSTMCell"],
)
def test_nnx_attributes_equal_the_spec(make, names):
  model = nnx.eval_shape(make)
  annotations = {}
  for cls in reversed(type(model).__mro__):
    annotations.update(inspect.get_annotations(cls))
  want = {f.name: f.type for f in dataclasses.fields(spec.LSTMSpec)}
  for name in names[1:]:
    assert getattr(model, name) == DEFAULTS[name], name
    assert annotations[name] == want[name], name
  assert model.hidden_size == 4
  # Every option of the scope is taken by name; one of another scope is not.
  changed = {"proj_size": 2, "cell": "peephole", "dtype": "bfloat16"}
  model = nnx.eval_shape(lambda: make(**changed))
  assert {k: getattr(model, k) for k in changed} == changed
  other = next((n for n in spec.STACK_OPTIONS if n not in names), "num_layer")
  with pytest.raises(ValueError, match=rf"takes no option\(s\) \['{other}'\]"):
    make(**{other: 1})


def test_lstm_hands_the_layer_options_to_each_layer():
  options = {"proj_size": 2, "cell": "peephole", "impl": "reference", "unroll": 2}
  model = layers.LSTM(4, num_layers=2, **options)
  params = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 3, 5)))
  for name in ("layer_0_fwd", "layer_1_fwd"):
    assert params["params"][name]["peephole"].shape == (3, 4)
    assert params["params"][name]["w_proj"].shape == (4, 2)
  twin = lnnx.LSTM(5, 4, rngs=nnx.Rngs(0), num_layers=2, **options)
  for layer in (twin.layer_0_fwd, twin.layer_1_fwd):
    assert {k: getattr(layer, k) for k in options} == options


@pytest.mark.parametrize("dtype", ["float16", 16])
def test_bad_dtype_names_the_module(dtype):
  with pytest.raises(ValueError, match=r"LSTM\.dtype must be a JAX dtype or one of"):
    layers.LSTM(4, dtype=dtype).init(jax.random.key(0), jnp.zeros((1, 2, 3)))
