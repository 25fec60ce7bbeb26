"""``digits``: scikit-learn's bundled 8x8 handwritten digits (1797 images, no download)."""

from __future__ import annotations

import torch
from pydantic import Field

from raylift.data.base import DATASETS, DatasetInfo, PreparedData, split_indices
from raylift.data.preprocessing import fit_standardize, majority_class_accuracy
from raylift.registry import Params


class DigitsParams(Params):
    sample_size: int = Field(
        64,
        ge=1,
        description="How many raw validation examples to keep with the export as a sample.",
    )


@DATASETS.register(
    "digits", DigitsParams, "scikit-learn's 8x8 handwritten digits, 10 classes (1797 images)"
)
def digits(params: DigitsParams, *, val_fraction: float, seed: int) -> PreparedData:
    """Standardised 64-pixel inputs; mean/std are computed on the training split only."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    raw = torch.as_tensor(bunch.data, dtype=torch.float32)
    targets = torch.as_tensor(bunch.target, dtype=torch.int64)
    train_idx, val_idx = split_indices(len(raw), val_fraction, seed)
    mean, std = fit_standardize(raw[train_idx])
    inputs = (raw - mean) / std
    sample_idx = val_idx[: params.sample_size]
    return PreparedData(
        train_inputs=inputs[train_idx],
        train_targets=targets[train_idx],
        val_inputs=inputs[val_idx],
        val_targets=targets[val_idx],
        info=DatasetInfo(task="classification", input_shape=(64,), num_classes=10),
        preprocessing={
            "type": "standardize",
            "mean": mean.tolist(),
            "std": std.tolist(),
            "input_shape": [64],
            "input_range": [0, 16],
        },
        sample_raw_inputs=raw[sample_idx].clone(),
        sample_targets=targets[sample_idx].clone(),
        baselines={
            "majority_class_accuracy": majority_class_accuracy(targets[train_idx], targets[val_idx])
        },
        description=(
            f"digits: 8x8 grey-level images (pixel values 0..16), 10 classes; "
            f"{len(train_idx)} train / {len(val_idx)} validation"
        ),
    )
