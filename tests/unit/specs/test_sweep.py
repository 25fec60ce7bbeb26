"""Sweep specs: schedulers and searchers refuse what they cannot do, naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from raylift.errors import SpecError
from raylift.testing.specs import write_sweep
from raylift.tuning.sweep import load_sweep


def test_schedulers_and_searchers_refuse_what_they_cannot_do(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="pbt can only change train"):
        load_sweep(
            write_sweep(
                tmp_path,
                space={"model.params.dropout": {"uniform": [0.0, 0.2]}},
                scheduler={"type": "pbt", "mutations": ["model.params.dropout"]},
            )
        )
    with pytest.raises(SpecError, match="grid needs grid values"):
        load_sweep(write_sweep(tmp_path, search={"type": "grid"}))
    with pytest.raises(SpecError, match="trial: min_workers"):
        load_sweep(write_sweep(tmp_path, trial={"scaling.max_workers": 1}))
