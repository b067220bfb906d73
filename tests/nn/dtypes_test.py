"""dtype "auto" (`nn/dtypes.py`): bfloat16 exactly where the hardware computes
it natively, by backend, GPU compute capability and CPU flags (injected), and
the flags as /proc/cpuinfo lists them, and the run's start line."""

import importlib.util
import pathlib

import jax
import jax.numpy as jnp
import pytest

from lstm_jax.nn import dtypes

# Flag sets of real CPUs (from /proc/cpuinfo, abridged): an AVX2-only AMD
# EPYC, an AMD EPYC with AVX-512 BF16 (Zen 4), an Intel Sapphire Rapids
# (AVX-512 BF16 and AMX) and an AMX-only list.
AVX2 = {"sse4_2", "avx", "avx2", "fma", "f16c"}
AVX512_BF16 = AVX2 | {"avx512f", "avx512bw", "avx512_bf16", "avx512_vnni"}
SAPPHIRE_RAPIDS = AVX512_BF16 | {"amx_bf16", "amx_tile", "amx_int8"}
AMX_ONLY = AVX2 | {"amx_bf16", "amx_tile"}


@pytest.mark.parametrize(
  "backend, capability, flags, expected",
  [
    ("cpu", None, AVX2, "float32"),
    ("cpu", None, set(), "float32"),
    ("cpu", None, AVX512_BF16, "bfloat16"),
    ("cpu", None, SAPPHIRE_RAPIDS, "bfloat16"),
    ("cpu", None, AMX_ONLY, "bfloat16"),
    ("tpu", None, set(), "bfloat16"),
    ("gpu", "7.0", set(), "float32"),  # V100
    ("gpu", "7.5", set(), "float32"),  # T4
    ("gpu", "8.0", set(), "bfloat16"),  # A100
    ("gpu", (9, 0), set(), "bfloat16"),  # H100
    ("gpu", None, set(), "float32"),  # no CUDA compute capability
    ("METAL", None, set(), "float32"),
  ],
)  # fmt: skip
def test_auto_is_bfloat16_only_where_native(backend, capability, flags, expected):
  name, reason = dtypes.choose_dtype(
    backend, compute_capability=capability, cpu_flags=flags
  )
  assert name == expected
  assert reason


def test_reason_names_what_decided():
  assert dtypes.choose_dtype("cpu", cpu_flags=AVX2) == (
    "float32",
    "CPU without avx512_bf16 or amx_bf16",
  )
  assert dtypes.choose_dtype("cpu", cpu_flags=SAPPHIRE_RAPIDS)[1] == (
    "CPU with avx512_bf16 and amx_bf16"
  )
  assert "7.0 < 8.0" in dtypes.choose_dtype("gpu", compute_capability="7.0")[1]


def test_cpu_flags_read_from_cpuinfo(tmp_path):
  cpuinfo = tmp_path / "cpuinfo"
  cpuinfo.write_text(
    "processor\t: 0\nmodel name\t: AMD EPYC\n"
    "flags\t\t: fpu sse4_2 avx2 avx512_bf16\nbugs\t\t: sysret_ss_attrs\n\n"
    "processor\t: 1\nflags\t\t: fpu\n"
  )
  assert dtypes.cpu_flags(str(cpuinfo)) == {"fpu", "sse4_2", "avx2", "avx512_bf16"}
  assert dtypes.cpu_flags(str(tmp_path / "missing")) == frozenset()


def test_auto_on_this_machine_and_the_names():
  # What "auto" resolves to here follows the rule for this backend's flags.
  flags = dtypes.cpu_flags() if jax.default_backend() == "cpu" else set()
  if jax.default_backend() == "cpu":
    assert dtypes.auto_dtype() == dtypes.choose_dtype("cpu", cpu_flags=flags)
  name = dtypes.auto_dtype()[0]
  assert dtypes.compute_dtype("auto") == dtypes.DTYPES[name]
  assert dtypes.compute_dtype("bfloat16") == jnp.bfloat16
  assert dtypes.compute_dtype(jnp.float32) == jnp.float32
  assert dtypes.compute_dtype(None) is None


def _experiment(name, arg):
  path = pathlib.Path(__file__).resolve().parents[2] / "experiments" / f"{name}.py"
  spec = importlib.util.spec_from_file_location(f"{name}_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def test_start_line_says_what_auto_chose():
  # The default char-LM asks for "auto"; its tiny variant computes in float32.
  name, reason = dtypes.auto_dtype()
  default = _experiment("charlm", "")
  assert default.model.lstm.dtype == "auto"
  assert dtypes.auto_note(default.model) == f'; dtype "auto" = {name} ({reason})'
  assert dtypes.auto_note(_experiment("charlm", "tiny").model) == ""
  seq2seq = _experiment("seq2seq", "tiny")  # a second LSTM section is found too
  seq2seq.model.decoder_lstm.dtype = "auto"
  assert name in dtypes.auto_note(seq2seq.model)


def test_auto_compiles_the_same_program_as_the_dtype_it_names():
  # "auto" costs nothing over naming its choice: the lowered program (the
  # default char-LM's two-layer LSTM, small) is the same text. With the
  # choice by flags above, an AVX2-only CPU runs exactly the float32 program,
  # and an avx512_bf16 one exactly the bfloat16 program.
  from lstm_jax.nn.layers import LSTM

  name = dtypes.auto_dtype()[0]
  x = jnp.ones((2, 5, 4), jnp.float32)

  def lowered(dtype):
    model = LSTM(hidden_size=8, num_layers=2, dtype=dtype)
    params = model.init(jax.random.key(0), x)
    return jax.jit(model.apply).lower(params, x).as_text()

  auto = lowered("auto")
  assert auto == lowered(name)
  other = "float32" if name == "bfloat16" else "bfloat16"
  assert auto != lowered(other)  # the comparison can tell the two apart
