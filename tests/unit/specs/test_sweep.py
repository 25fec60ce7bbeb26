"""Sweep specs: schedulers and searchers refuse what they cannot do, naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from raylift.errors import SpecError
from raylift.tuning.sweep import load_sweep

ROOT = Path(__file__).resolve().parents[3]
BASE = str(ROOT / "jobs" / "digits-mlp.yaml")


def write_sweep(tmp_path: Path, **changes: object) -> str:
    data: dict[str, object] = {
        "kind": "sweep",
        "name": "s",
        "base": BASE,
        "space": {"train.lr": {"loguniform": [0.001, 0.01]}},
        "trial": {"scaling.min_workers": 1, "scaling.max_workers": 1},
    }
    data.update(changes)
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


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
