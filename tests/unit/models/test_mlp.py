"""The built-in MLP."""

from __future__ import annotations

import pytest
import torch

from raylift.data.base import DatasetInfo
from raylift.models import build_model

DIGITS = DatasetInfo(task="classification", input_shape=(64,), num_classes=10)


@pytest.mark.parametrize("activation", ["relu", "gelu", "tanh"])
def test_mlp_output_shape(activation: str) -> None:
    model = build_model(
        "mlp", None, {"hidden_sizes": [32, 16], "dropout": 0.1, "activation": activation}, DIGITS
    )
    assert model(torch.randn(5, 64)).shape == (5, 10)
    linear = build_model("mlp", None, {"hidden_sizes": []}, DIGITS)
    assert sum(p.numel() for p in linear.parameters()) == 64 * 10 + 10
