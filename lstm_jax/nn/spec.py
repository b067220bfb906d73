"""The LSTM's options, declared once, and `LSTMSpec`, the config section's value.

The options are the fields of three nested dataclasses, written out with their
types, defaults and documentation:

* `CellOptions`: those of one step (the cell);
* `LayerOptions`: those of one layer in one direction (the cell's and the
  time loop's);
* `StackOptions`: those of the stack, plus every layer option (the stack hands
  them to each layer).

The modules inherit them as their attributes (the Linen `layers.LSTMLayer` the
layer options, `layers.LSTM` all of them, the NNX `LSTMCell`, `LSTMLayer` and
`LSTM` of `lstm_jax.nnx` likewise), so a module and the config section take
the same names with the same defaults; `hidden_size` is required everywhere.
Adding an option is one field here, its line in the class's Attributes and
its entry in `_CHECKS`.

`LSTMSpec` is the config section's value: `to_config()` makes the section
every experiment holds as `config.model.lstm` (`lstm_config` is a shortcut),
`from_config(section)` reads one back (from a ConfigDict or a run's
config.json), naming the key of any unknown or bad value. `validate` holds the
checks of every option, which every holder of options runs on construction.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

import jax.numpy as jnp
import ml_collections
from jax.typing import DTypeLike
from ml_collections import config_dict

from lstm_jax.errors import ConfigError
from lstm_jax.kernels.dispatch import IMPLS
from lstm_jax.nn.dtypes import DTYPE_NAMES

__all__ = [
  "CELLS",
  "CELL_OPTIONS",
  "LAYER_OPTIONS",
  "STACK_OPTIONS",
  "LSTMOptionError",
  "LSTMSpec",
  "CellOptions",
  "LayerOptions",
  "StackOptions",
  "check_module_options",
  "lstm_config",
  "validate",
]

CELLS = ("standard", "layernorm", "peephole")


class LSTMOptionError(ConfigError, ValueError):
  """An LSTM option out of range, of the wrong type, or unknown.

  A `ConfigError` (the CLI prints it as one line) and a `ValueError` (what a
  module given a bad attribute raises).
  """


# eq and repr stay those of the classes that inherit the fields (Linen and NNX
# modules compare and print as modules; `LSTMSpec` declares its own).
@dataclasses.dataclass(eq=False, repr=False)
class CellOptions:
  """The options of one LSTM step (the cell).

  Attributes:
    hidden_size: cell size H.
    proj_size: if > 0, LSTMP projection of h to this size P (PyTorch's
      `proj_size`).
    cell: cell variant: "standard", "layernorm" or "peephole".
    forget_bias: initial forget-gate bias (ignored when chrono_max_len is set).
    chrono_max_len: if set (>= 3), chrono initialisation of the gate biases for
      sequences up to this long (Tallec & Ollivier, 2018); None: off.
    dtype: matmul compute dtype: "float32", "bfloat16" or "auto" (bfloat16
      where the hardware computes it natively, else float32: `nn/dtypes.py`);
      the modules also take a JAX dtype, or None for the dtype of their inputs
      and parameters. Parameters and carry stay float32; with bfloat16 the
      outputs are within 0.03 max abs and 2e-3 mean abs of float32 for
      T <= 512, H <= 512 with the default init (tests/nn/layers_test.py).
  """

  hidden_size: int
  proj_size: int = 0
  cell: str = "standard"
  forget_bias: float = 1.0
  chrono_max_len: int | None = None
  dtype: DTypeLike | None = "float32"

  def __post_init__(self):
    """Checks the options (a module's `dtype` may be a JAX dtype or None),
    then runs the next `__post_init__` (a Linen module's own)."""
    check_module_options(self)
    post_init = getattr(super(), "__post_init__", None)
    if post_init is not None:
      post_init()


@dataclasses.dataclass(eq=False, repr=False)
class LayerOptions(CellOptions):
  """The options of one LSTM layer in one direction: the `CellOptions` and
  those of the time loop.

  Attributes:
    remat: recompute step activations in the backward pass (saves memory).
    unroll: `lax.scan` unroll factor of the time loop.
    impl: implementation: "auto" (the fastest correct path for the backend),
      "fused" (hand-written backward), "reference" (JAX autodiff), "pallas"
      (interpreted on CPU) or "cudnn" (GPU); see `lstm_jax.lstm_scan`.
    recurrent_dropout: dropout of h_{t-1} on the hidden-to-hidden path, one
      `[batch, P or H]` mask for all steps (the carry itself is not dropped).
    zoneout_cell: zoneout rate of the cell state: a unit keeps its previous
      value with this probability at each step (Krueger et al., 2017).
    zoneout_hidden: zoneout rate of the hidden state.
    weight_drop: DropConnect rate of the recurrent matrix w_hh, one mask per
      batch (Merity et al., 2017).

  The regularisers (the dropout and zoneout rates, weight_drop: all off at 0)
  act only in training (`deterministic=False`); every mask is sampled once per
  batch, outside the time loop (`ops/regularisation.py`), and the fused path
  implements all of them.
  """

  remat: bool = False
  unroll: int = 1
  impl: str = "auto"
  recurrent_dropout: float = 0.0
  zoneout_cell: float = 0.0
  zoneout_hidden: float = 0.0
  weight_drop: float = 0.0


@dataclasses.dataclass(eq=False, repr=False)
class StackOptions(LayerOptions):
  """The options of a stack of LSTM layers: the `LayerOptions` (given to each
  layer) and these.

  Attributes:
    num_layers: stacked layers; layer l > 0 reads layer l-1's outputs.
    bidirectional: run a reversed copy of each layer; outputs are
      `[forward | backward]` on the feature axis.
    dropout: dropout rate on the outputs of every layer but the last (task
      models also apply it to the last layer's output before their head).
    input_dropout: variational (locked) dropout of the stack's input, one mask
      per sequence shared by all steps (Gal & Ghahramani, 2016).
    hidden_dropout: locked dropout of every layer's output but the last.
    output_dropout: locked dropout of the last layer's output.
    ar_alpha: activation regularisation alpha * mean(h^2) of the (dropped)
      last-layer outputs over real steps (Merity et al., 2017), added to the
      training loss.
    tar_beta: temporal AR beta * mean((h_t - h_{t-1})^2) of the undropped
      last-layer outputs over real steps, added to the training loss.
  """

  num_layers: int = 1
  bidirectional: bool = False
  dropout: float = 0.0
  input_dropout: float = 0.0
  hidden_dropout: float = 0.0
  output_dropout: float = 0.0
  ar_alpha: float = 0.0
  tar_beta: float = 0.0


CELL_OPTIONS = tuple(f.name for f in dataclasses.fields(CellOptions))
LAYER_OPTIONS = tuple(f.name for f in dataclasses.fields(LayerOptions))
STACK_OPTIONS = tuple(f.name for f in dataclasses.fields(StackOptions))


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


# The range of each option (beyond its type): a function returning what is
# wrong with a value, or None. The bools have none.
_open_rate, _closed_rate = _rate(closed=False), _rate(closed=True)
_CHECKS: dict[str, Callable[[Any], str | None]] = {
  "hidden_size": _at_least(1),
  "proj_size": _at_least(0),
  "cell": _one_of(CELLS),
  "forget_bias": _finite,
  "chrono_max_len": _at_least(3),
  "dtype": _one_of(DTYPE_NAMES),
  "unroll": _at_least(1),
  "impl": _one_of(IMPLS),
  "recurrent_dropout": _open_rate,
  "zoneout_cell": _closed_rate,
  "zoneout_hidden": _closed_rate,
  "weight_drop": _open_rate,
  "num_layers": _at_least(1),
  "dropout": _open_rate,
  "input_dropout": _open_rate,
  "hidden_dropout": _open_rate,
  "output_dropout": _open_rate,
  "ar_alpha": _at_least(0.0),
  "tar_beta": _at_least(0.0),
}
# The Python type of each option's value in a config section, by annotation
# (a JSON-loaded int is a valid float; dtype is a name there).
_KINDS = {
  "int": int, "int | None": int, "bool": bool, "float": float, "str": str,
  "DTypeLike | None": str,
}  # fmt: skip


@dataclasses.dataclass(kw_only=True)
class LSTMSpec(StackOptions):
  """The options of an LSTM stack as a config value (see the module
  docstring); validated on construction (`LSTMOptionError` naming the field,
  expected vs got). `dtype` is a name here: one of `dtypes.DTYPE_NAMES`."""

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
    expected = set(STACK_OPTIONS)
    if set(values) != expected:
      missing, extra = sorted(expected - set(values)), sorted(set(values) - expected)
      raise LSTMOptionError(
        f"{prefix} lacks keys {missing} / has unknown keys {extra} "
        f"(expected the keys of lstm_jax.nn.spec.LSTMSpec: {sorted(expected)})"
      )
    validate(values, prefix)
    return cls(**values)

  def options(self, names: tuple[str, ...] = STACK_OPTIONS) -> dict[str, Any]:
    """The options `names` (default all) as keyword arguments."""
    return {name: getattr(self, name) for name in names}


def _type_error(name: str, kind: type, value: Any) -> str | None:
  """What is wrong with the type of `value` for option `name`, or None."""
  optional = name == "chrono_max_len"
  if value is None and optional:
    return None
  if isinstance(value, bool) and kind is not bool:
    ok = False
  elif kind is float:
    ok = isinstance(value, (int, float))
  else:
    ok = isinstance(value, kind)
  if ok:
    return None
  article = {int: "an int", bool: "a bool", float: "a number", str: "a string"}[kind]
  return f"must be {article}{' or None' if optional else ''}"


def validate(values: Mapping[str, Any], prefix: str) -> None:
  """Checks option values (any subset of `LSTMSpec`'s fields) as a config
  section holds them.

  Args:
    values: option name -> value.
    prefix: what holds them, named in errors (`model.lstm`, `LSTM`).

  Raises:
    LSTMOptionError: `{prefix}.{name} must be ..., got {value!r}`, or an
      unknown name with the list of known ones.
  """
  kinds = {f.name: _KINDS[f.type] for f in dataclasses.fields(StackOptions)}
  for name, value in values.items():
    if name not in kinds:
      raise LSTMOptionError(
        f"{prefix} has no LSTM option {name!r}; options: {sorted(kinds)}"
      )
    problem = _type_error(name, kinds[name], value)
    check = _CHECKS.get(name)
    if problem is None and value is not None and check is not None:
      problem = check(value)
    if problem is not None:
      raise LSTMOptionError(f"{prefix}.{name} {problem}, got {value!r}")


def check_module_options(module: Any) -> None:
  """Checks a module's options as `validate` does, naming the module; its
  `dtype` may also be a JAX floating dtype or None.

  Raises:
    LSTMOptionError (a ValueError): `LSTM.cell must be one of [...], got 'gru'`.
  """
  owner = type(module).__name__
  names = [f.name for f in dataclasses.fields(module) if f.name in STACK_OPTIONS]
  validate({k: getattr(module, k) for k in names if k != "dtype"}, owner)
  dtype = module.dtype
  if isinstance(dtype, str):
    bad = dtype not in DTYPE_NAMES
  else:
    try:
      bad = dtype is not None and not jnp.issubdtype(jnp.dtype(dtype), jnp.floating)
    except TypeError:
      bad = True
  if bad:
    raise LSTMOptionError(
      f"{owner}.dtype must be a JAX dtype or one of {list(DTYPE_NAMES)}, got {dtype!r}"
    )


def lstm_config(**overrides: Any) -> ml_collections.ConfigDict:
  """The LSTM's config section (`config.model.lstm`): `LSTMSpec(**overrides)`
  as a ConfigDict.

  Args:
    **overrides: `hidden_size` and new defaults for other options (e.g.
      `hidden_size=384, num_layers=2`).

  Raises:
    LSTMOptionError: an unknown option, a bad value or no `hidden_size`, named.
  """
  validate(overrides, "lstm_config")
  if "hidden_size" not in overrides:
    raise LSTMOptionError("lstm_config needs hidden_size (the cell size H)")
  return LSTMSpec(**overrides).to_config()
