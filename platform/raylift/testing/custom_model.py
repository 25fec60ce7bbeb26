"""A user model builder, loaded by import path (``raylift.testing.custom_model:build``)
in tests/unit/models/test_base.py, as a user's ``model.import_path`` is."""

from __future__ import annotations

import math

from torch import nn

from raylift.data.base import DatasetInfo


def build(info: DatasetInfo, hidden: int = 32) -> nn.Module:
    """A one-hidden-layer classifier for ``info``."""
    assert info.num_classes is not None
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(math.prod(info.input_shape), hidden),
        nn.ReLU(),
        nn.Linear(hidden, info.num_classes),
    )


def not_a_module(info: DatasetInfo) -> str:
    """A broken builder: returns something that is not an nn.Module."""
    return "oops"
