"""benchmarks/ucr_dev.py: the development pair is TRAIN alone, cut in two.

The two written .ts files read back (through the task's own loader) as the
TRAIN file's series and labels, disjoint, together all of TRAIN, each class
split as `stratified_split` says.
"""

import sys
from pathlib import Path

import numpy as np
import pytest

from lstm_jax.data import ucr

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))
import ucr_dev  # noqa: E402


@pytest.mark.parametrize("name", ["ArrowHead", "BasicMotions", "JapaneseVowels"])
def test_dev_pair_is_train_cut_in_two(name, tmp_path):
  if name not in ucr.shipped_datasets():
    pytest.skip(f"{name} not shipped in an installed aeon/sktime")
  train = ucr.load_ts(ucr.resolve(name)[0])
  dev, held = (ucr.load_ts(str(p)) for p in ucr_dev.dev_pair(name, tmp_path, 0))
  keep, hold = ucr.stratified_split(np.asarray(train.labels), ucr_dev.HELD_OUT, 0)
  assert len(keep) + len(hold) == len(train.series)
  assert not set(keep.tolist()) & set(hold.tolist())
  for part, rows in ((dev, keep), (held, hold)):
    assert part.labels == [train.labels[i] for i in rows]
    assert part.metadata["classlabel"] == train.metadata["classlabel"]
    for got, i in zip(part.series, rows):
      np.testing.assert_array_equal(got, train.series[i])  # float32 round trip
