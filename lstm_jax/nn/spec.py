"""The LSTM's options, declared once: `LSTMSpec`.

Each option is one field of the frozen dataclass `LSTMSpec`, with its default,
its documentation and its check. Everything else is derived from it:

* `LSTMSpec.to_config()` is the config section every experiment holds as
  `config.model.lstm` (`lstm_config(**overrides)` is a shortcut), and
  `LSTMSpec.from_config(section)` reads one back (from a ConfigDict or a run's
  config.json), naming the key of any unknown or bad value;
* the Linen modules `layers.LSTMLayer` / `layers.LSTM` and the NNX modules of
  `lstm_jax.nnx` take their attributes (names, defaults, docs) from the fields,
  and check them with `validate`.

An option's scope says who reads it: "layer" options are those of one
direction of one layer (`LSTMLayer`), "stack" options those of the stack
(`LSTM`, which has both and hands the layer ones to each `LSTMLayer`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import ml_collections
from ml_collections import config_dict

from lstm_jax.errors import ConfigError
from lstm_jax.kernels.dispatch import IMPLS

__all__ = [
  "CELLS",
  "DTYPE_NAMES",
  "LSTMOptionError",
  "LSTMSpec",
  "lstm_config",
  "option_fields",
  "validate",
]

CELLS = ("standard", "layernorm", "peephole")
# Compute dtypes of the config section, by name; parameters and carry stay f32.
DTYPE_NAMES = ("float32", "bfloat16")


class LSTMOptionError(ConfigError, ValueError):
  """An LSTM option out of range, of the wrong type, or unknown.

  A `ConfigError` (the CLI prints it as one line) and a `ValueError` (what a
  module given a bad attribute raises).
  """


def _at_least(low: float) -> Callable[[Any], str | None]:
  return lambda v: None if v >= low else f"must be >= {low}"


def _one_of(choices: tuple[str, ...]) -> Callable[[Any], str | None]:
  return lambda v: None if v in choices else f"must be one of {list(choices)}"


def _rate(closed: bool) -> Callable[[Any], str | None]:
  if closed:
    return lambda v: None if 0.0 <= v <= 1.0 else "must be in [0, 1]"
  return lambda v: None if 0.0 <= v < 1.0 else "must be in [0, 1)"


def _finite(v: Any) -> str | None:
  return None if math.isfinite(v) else "must be finite"


def _option(
  default: Any, doc: str, scope: str, check: Callable[[Any], str | None] | None = None
) -> Any:
  """A field of `LSTMSpec`: its default, one-paragraph doc, scope and check
  (a function returning what is wrong with a value, or None)."""
  meta = {"doc": doc, "scope": scope, "check": check}
  return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass(frozen=True, kw_only=True)
class LSTMSpec:
  """The options of an LSTM stack (see the module docstring); validated on
  construction (`LSTMOptionError` naming the field, expected vs got)."""

  hidden_size: int = _option(256, "cell size H of every layer.", "layer", _at_least(1))
  num_layers: int = _option(
    1, "stacked layers; layer l > 0 reads layer l-1's outputs.", "stack", _at_least(1)
  )
  bidirectional: bool = _option(
    False,
    "run a reversed copy of each layer; outputs are `[forward | backward]` on "
    "the feature axis.",
    "stack",
  )
  proj_size: int = _option(
    0, "if > 0, LSTMP projection of h to this size (PyTorch's `proj_size`).", "layer",
    _at_least(0),
  )  # fmt: skip
  dropout: float = _option(
    0.0,
    "dropout rate on the outputs of every layer but the last (task models also "
    "apply it to the last layer's output before their head).",
    "stack",
    _rate(closed=False),
  )
  cell: str = _option(
    "standard", 'cell variant: "standard", "layernorm" or "peephole".', "layer",
    _one_of(CELLS),
  )  # fmt: skip
  forget_bias: float = _option(
    1.0, "initial forget-gate bias (ignored when chrono_max_len is set).", "layer",
    _finite,
  )  # fmt: skip
  chrono_max_len: int | None = _option(
    None,
    "if set, chrono initialisation of the gate biases for sequences up to this "
    "long (Tallec & Ollivier, 2018); unset (None) or >= 3.",
    "layer",
    _at_least(3),
  )
  dtype: str = _option(
    "float32",
    'matmul compute dtype, "float32" or "bfloat16" (parameters and carry stay '
    "float32; with bfloat16 the outputs are within 0.03 max abs and 2e-3 mean "
    "abs of float32 for T <= 512, H <= 512 with the default init, measured on "
    "CPU: max 0.008-0.011, mean 6e-4, tests/nn/layers_test.py). The modules also "
    "take a JAX dtype, and None: the dtype of inputs and parameters.",
    "layer",
    _one_of(DTYPE_NAMES),
  )
  remat: bool = _option(
    False,
    "recompute step activations in the backward pass (saves memory).",
    "layer",
  )
  unroll: int = _option(
    1, "`lax.scan` unroll factor of the time loop.", "layer", _at_least(1)
  )
  impl: str = _option(
    "auto",
    'implementation: "auto" (the fastest correct path for the backend), '
    '"fused" (hand-written backward), "reference" (JAX autodiff), "pallas" '
    '(interpreted on CPU) or "cudnn" (GPU); see `lstm_jax.lstm_scan`.',
    "layer",
    _one_of(IMPLS),
  )
  # Regularisers (lstm_jax/ops/regularisation.py): all off at 0, and active
  # only in training (deterministic=False); every mask is sampled once per
  # batch, outside the time loop, and the fused path implements all of them.
  input_dropout: float = _option(
    0.0,
    "variational (locked) dropout of the stack's input, one mask per sequence "
    "shared by all steps (Gal & Ghahramani, 2016).",
    "stack",
    _rate(closed=False),
  )
  hidden_dropout: float = _option(
    0.0, "locked dropout of every layer's output but the last.", "stack",
    _rate(closed=False),
  )  # fmt: skip
  output_dropout: float = _option(
    0.0, "locked dropout of the last layer's output.", "stack", _rate(closed=False)
  )
  recurrent_dropout: float = _option(
    0.0,
    "dropout of h_{t-1} on the hidden-to-hidden path, one `[batch, P or H]` "
    "mask for all steps (the carry itself is not dropped).",
    "layer",
    _rate(closed=False),
  )
  zoneout_cell: float = _option(
    0.0,
    "zoneout rate of the cell state: a unit keeps its previous value with this "
    "probability at each step (Krueger et al., 2017).",
    "layer",
    _rate(closed=True),
  )
  zoneout_hidden: float = _option(
    0.0, "zoneout rate of the hidden state.", "layer", _rate(closed=True)
  )
  weight_drop: float = _option(
    0.0,
    "DropConnect rate of the recurrent matrix w_hh, one mask per batch "
    "(Merity et al., 2017).",
    "layer",
    _rate(closed=False),
  )
  ar_alpha: float = _option(
    0.0,
    "activation regularisation alpha * mean(h^2) of the (dropped) last-layer "
    "outputs over real steps (Merity et al., 2017), added to the training loss.",
    "stack",
    _at_least(0.0),
  )
  tar_beta: float = _option(
    0.0,
    "temporal AR beta * mean((h_t - h_{t-1})^2) of the undropped last-layer "
    "outputs over real steps, added to the training loss.",
    "stack",
    _at_least(0.0),
  )

  def __post_init__(self):
    validate(dataclasses.asdict(self), "LSTMSpec")

  def to_config(self) -> ml_collections.ConfigDict:
    """The config section (`config.model.lstm`): one key per field.

    `chrono_max_len` is a placeholder of type int, so that it can be set from
    the command line and hold a reference (`config.data.get_ref("seq_len")`).
    """
    c = ml_collections.ConfigDict()
    for f in dataclasses.fields(self):
      if f.name == "chrono_max_len":
        c[f.name] = config_dict.placeholder(int)
      c[f.name] = getattr(self, f.name)
    return c

  @classmethod
  def from_config(
    cls, section: Mapping[str, Any], prefix: str = "model.lstm"
  ) -> LSTMSpec:
    """The spec of a config section (a ConfigDict, or a dict from config.json).

    Args:
      section: every key of `to_config()`, no other.
      prefix: the section's path, used to name keys in errors.

    Raises:
      LSTMOptionError (a ConfigError): a key missing or unknown, or a value out
        of range, of the wrong type or not one of the choices; the message
        names the key (`model.lstm.hidden_size must be >= 1, got 0`).
    """
    values = dict(section)
    expected = {f.name for f in dataclasses.fields(cls)}
    if set(values) != expected:
      missing, extra = sorted(expected - set(values)), sorted(set(values) - expected)
      raise LSTMOptionError(
        f"{prefix} lacks keys {missing} / has unknown keys {extra} "
        f"(expected the keys of lstm_jax.nn.spec.LSTMSpec: {sorted(expected)})"
      )
    validate(values, prefix)
    return cls(**values)

  def options(self, scope: Iterable[str] = ("layer", "stack")) -> dict[str, Any]:
    """The fields of `scope` as keyword arguments, by name."""
    return {f.name: getattr(self, f.name) for f in option_fields(scope)}


def option_fields(scope: Iterable[str] = ("layer", "stack")) -> list[dataclasses.Field]:
  """`LSTMSpec`'s fields of the given scopes, in declaration order."""
  scope = tuple(scope)
  return [f for f in dataclasses.fields(LSTMSpec) if f.metadata["scope"] in scope]


def _type_error(f: dataclasses.Field, value: Any) -> str | None:
  """What is wrong with the type of `value` for field `f` (JSON-loaded values
  included: an int is a valid float), or None."""
  if f.name == "chrono_max_len" and value is None:
    return None
  kind = {"int": int, "int | None": int, "bool": bool, "float": float, "str": str}[
    f.type
  ]
  if isinstance(value, bool) and kind is not bool:
    ok = False
  elif kind is float:
    ok = isinstance(value, (int, float))
  else:
    ok = isinstance(value, kind)
  if ok:
    return None
  article = {int: "an int", bool: "a bool", float: "a number", str: "a string"}[kind]
  return f"must be {article}{' or None' if f.type == 'int | None' else ''}"


def validate(values: Mapping[str, Any], prefix: str) -> None:
  """Checks option values (any subset of `LSTMSpec`'s fields).

  Args:
    values: option name -> value.
    prefix: what holds them, named in errors (`model.lstm`, `LSTM`).

  Raises:
    LSTMOptionError: `{prefix}.{name} must be ..., got {value!r}`, or an
      unknown name with the list of known ones.
  """
  fields = {f.name: f for f in dataclasses.fields(LSTMSpec)}
  for name, value in values.items():
    f = fields.get(name)
    if f is None:
      raise LSTMOptionError(
        f"{prefix} has no LSTM option {name!r}; options: {sorted(fields)}"
      )
    problem = _type_error(f, value)
    if problem is None and value is not None and f.metadata["check"] is not None:
      problem = f.metadata["check"](value)
    if problem is not None:
      raise LSTMOptionError(f"{prefix}.{name} {problem}, got {value!r}")


def lstm_config(**overrides: Any) -> ml_collections.ConfigDict:
  """The LSTM's config section (`config.model.lstm`): `LSTMSpec(**overrides)`
  as a ConfigDict.

  Args:
    **overrides: new defaults for some options (e.g. `hidden_size=384`).

  Raises:
    LSTMOptionError: an unknown option or a bad value, named.
  """
  validate(overrides, "lstm_config")
  return LSTMSpec(**overrides).to_config()
