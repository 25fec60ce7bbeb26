"""The digits data set: shapes, split, standardisation and the raw sample (real data only)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from raylift.data import PreparedData, load_dataset, preprocess
from raylift.data.base import split_indices


def _load(name: str, params: dict | None = None, seed: int = 0, val: float = 0.1) -> PreparedData:
    return load_dataset(name, params, val_fraction=val, seed=seed)


@pytest.fixture(scope="module")
def digits0() -> PreparedData:
    return _load("digits", seed=0)


@pytest.fixture(scope="module")
def digits_raw() -> np.ndarray:
    from sklearn.datasets import load_digits

    return load_digits().data.astype(np.float32)


# --- digits -------------------------------------------------------------------------------


def test_digits_shapes_and_info(digits0: PreparedData) -> None:
    assert digits0.num_train + digits0.num_val == 1797
    assert digits0.num_val == 180
    assert digits0.train_inputs.dtype == torch.float32
    assert digits0.train_inputs.shape == (1617, 64)
    assert digits0.train_targets.dtype == torch.int64
    assert digits0.info.to_json() == {
        "task": "classification",
        "input_shape": [64],
        "num_classes": 10,
        "vocab_size": None,
        "input_dtype": "float32",
    }
    assert set(digits0.train_targets.tolist()) == set(range(10))
    assert 0.0 < digits0.baselines["majority_class_accuracy"] < 0.2


def _raw_rows(data: PreparedData, inputs: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(data.preprocessing["mean"])
    std = torch.tensor(data.preprocessing["std"])
    return (inputs * std + mean).round()


def test_digits_split_is_disjoint_and_complete(
    digits0: PreparedData, digits_raw: np.ndarray
) -> None:
    train_raw = _raw_rows(digits0, digits0.train_inputs)
    val_raw = _raw_rows(digits0, digits0.val_inputs)
    rows = torch.cat([train_raw, val_raw]).to(torch.int64).tolist()
    targets = torch.cat([digits0.train_targets, digits0.val_targets]).tolist()
    got = sorted((tuple(r), t) for r, t in zip(rows, targets, strict=True))
    from sklearn.datasets import load_digits

    expected_targets = load_digits().target.tolist()
    expected = sorted(
        (tuple(int(v) for v in r), int(t))
        for r, t in zip(digits_raw, expected_targets, strict=True)
    )
    assert got == expected
    train_idx, val_idx = split_indices(1797, 0.1, seed=0)
    assert set(train_idx.tolist()).isdisjoint(val_idx.tolist())
    assert torch.equal(val_raw, torch.from_numpy(digits_raw)[val_idx])


def test_digits_standardisation_uses_train_split_only(
    digits0: PreparedData, digits_raw: np.ndarray
) -> None:
    train_idx, _ = split_indices(1797, 0.1, seed=0)
    raw_train = torch.from_numpy(digits_raw)[train_idx]
    mean = torch.tensor(digits0.preprocessing["mean"])
    std = torch.tensor(digits0.preprocessing["std"])
    assert torch.allclose(mean, raw_train.mean(0), atol=1e-5)
    assert not torch.allclose(mean, torch.from_numpy(digits_raw).mean(0), atol=1e-5)
    live = raw_train.std(0) > 0
    assert torch.allclose(std[live], raw_train.std(0, unbiased=False)[live], atol=1e-5)
    assert torch.all(std[~live] == 1.0)  # constant pixels: no division by zero
    assert torch.allclose(digits0.train_inputs.mean(0), torch.zeros(64), atol=1e-5)
    assert torch.isfinite(digits0.val_inputs).all()


def test_digits_seed_determines_split(digits0: PreparedData) -> None:
    again = _load("digits", seed=0)
    assert torch.equal(again.train_inputs, digits0.train_inputs)
    assert torch.equal(again.val_targets, digits0.val_targets)
    other = _load("digits", seed=1)
    assert not torch.equal(other.val_targets, digits0.val_targets)


def test_digits_sample_is_raw_validation_data(digits0: PreparedData) -> None:
    sample = digits0.sample_raw_inputs
    assert isinstance(sample, torch.Tensor) and sample.dtype == torch.float32
    assert sample.shape == (64, 64)
    assert sample.min() >= 0 and sample.max() <= 16 and sample.max() > 1
    assert torch.equal(digits0.sample_targets, digits0.val_targets[:64])
    assert torch.allclose(
        preprocess(digits0.preprocessing, sample), digits0.val_inputs[:64], atol=1e-5
    )
    small = _load("digits", {"sample_size": 5})
    assert small.sample_raw_inputs.shape == (5, 64)
