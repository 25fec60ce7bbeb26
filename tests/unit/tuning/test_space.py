"""Sweep specs: the search space is checked against the base job spec before anything starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from raylift.errors import SpecError
from raylift.testing.specs import write_sweep
from raylift.tuning.sweep import load_sweep


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({"train.lrr": {"uniform": [0.1, 0.2]}}, "no key 'train.lrr'.*did you mean \"lr\""),
        ({"train.lr": {"uniform": [0.2, 0.1]}}, r"low \(0.2\) must be < high \(0.1\)"),
        ({"train.lr": {"loguniform": [0, 0.1]}}, r"low \(0.0\) must be > 0"),
        ({"data.batch_size": {"choice": []}}, "choice needs at least one value"),
        ({"train.optimizer": {"uniform": [0.0, 1.0]}}, "needs a numeric field.*'adamw'"),
        ({"train.lr": {"uniform": [0.1, 0.2], "choice": [1]}}, "exactly one distribution"),
        ({"train.lr": {"uniform": [-1.0, 0.2]}}, r"-1.0 makes the base spec invalid"),
        ({"train.optimizer": {"choice": ["adamw", "lion"]}}, "'lion' makes the base spec invalid"),
    ],
)
def test_bad_spaces_are_refused_with_the_key(
    tmp_path: Path, space: dict[str, object], message: str
) -> None:
    with pytest.raises(SpecError, match=message) as caught:
        load_sweep(write_sweep(tmp_path, space=space))
    assert caught.value.key and caught.value.key.startswith("space.")
    assert caught.value.file and caught.value.file.endswith("sweep.yaml")
