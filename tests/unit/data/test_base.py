"""The data set registry: names, params, the seeded split, and what importing data pulls in."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from raylift.data import DATASETS, PreparedData, load_dataset
from raylift.data.base import split_indices
from raylift.errors import DataError, RegistryError

REPO = Path(__file__).resolve().parents[3]


def _load(name: str, params: dict | None = None, seed: int = 0, val: float = 0.1) -> PreparedData:
    return load_dataset(name, params, val_fraction=val, seed=seed)


# --- registry ---------------------------------------------------------------------------


def test_registered_names() -> None:
    names = DATASETS.names()
    assert {"chat", "digits", "tabular", "text"} <= set(names) and names == sorted(names)


def test_unknown_name_lists_known_names_with_did_you_mean() -> None:
    with pytest.raises(RegistryError) as err:
        _load("digit")
    message = str(err.value)
    assert 'did you mean "digits"' in message
    assert f"known: {', '.join(DATASETS.names())}" in message and "digits, tabular" in message


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("digits", {"sample_sise": 3}),
        ("digits", {"sample_size": 0}),
        ("text", {"corpus": "shakespeare"}),
        ("text", {"context_lenght": 32}),
        ("tabular", {"path": "x.csv"}),  # label missing
    ],
)
def test_bad_params_are_validation_errors(name: str, params: dict) -> None:
    with pytest.raises(ValidationError):
        _load(name, params)


def test_every_param_has_a_description() -> None:
    for name in DATASETS.names():
        for field_name, field in DATASETS.get(name).params_model.model_fields.items():
            assert field.description, f"{name}.{field_name} has no description"


def test_split_indices_is_a_seeded_partition() -> None:
    train, val = split_indices(100, 0.2, seed=3)
    assert len(val) == 20
    assert sorted(torch.cat([train, val]).tolist()) == list(range(100))
    again = split_indices(100, 0.2, seed=3)
    assert torch.equal(train, again[0]) and torch.equal(val, again[1])
    assert not torch.equal(val, split_indices(100, 0.2, seed=4)[1])
    for bad in (0.0, 1.0, -0.1):
        with pytest.raises(DataError, match="val_fraction"):
            split_indices(100, bad, seed=0)
    with pytest.raises(DataError, match="too few"):
        split_indices(1, 0.5, seed=0)


def test_importing_data_does_not_import_ray_or_sklearn() -> None:
    code = (
        "import sys, raylift.data, raylift.models; "
        "bad = [m for m in ('ray', 'sklearn', 'pandas') if m in sys.modules]; "
        "assert not bad, bad"
    )
    env_path = str(REPO / "platform")
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
