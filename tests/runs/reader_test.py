"""`reader.open_run`'s choice of checkpoint, refused cleanly when it cannot be
made. The choice itself ("tested" against the step expected from
metrics.jsonl, for every task) is checked in tests/system/tiny_tasks_test.py."""

import re

import pytest

from lstm_jax import errors
from lstm_jax.runs import reader
from tests.support import tiny_run


def test_tested_without_a_test_record_names_the_file_and_the_other_choices(
  tiny_reference,
):
  workdir = tiny_reference[0]  # the tiny char-LM run: validation only, no test set
  before = tiny_run.tree_snapshot(workdir)
  with pytest.raises(errors.LstmJaxError) as raised:
    reader.open_run(str(workdir), which="tested")
  assert str(raised.value).startswith(f"{workdir / 'metrics.jsonl'} has no test record")
  assert "which='latest' or which='best'" in str(raised.value)
  assert tiny_run.tree_snapshot(workdir) == before  # a reader writes nothing


def test_an_unknown_choice_lists_the_known_ones(tiny_reference):
  message = "which must be one of ('latest', 'best', 'tested'), got 'last'"
  with pytest.raises(errors.ConfigError, match=re.escape(message)):
    reader.open_run(str(tiny_reference[0]), which="last")
