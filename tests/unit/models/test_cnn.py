"""The built-in CNN: output shape and the image shape it infers or is given."""

from __future__ import annotations

import pytest
import torch

from raylift.data.base import DatasetInfo
from raylift.errors import SpecError
from raylift.models import build_model

DIGITS = DatasetInfo(task="classification", input_shape=(64,), num_classes=10)


def test_cnn_output_shape_and_image_shape() -> None:
    model = build_model("cnn", None, {}, DIGITS)
    assert model.image_shape == (1, 8, 8)
    assert model(torch.randn(3, 64)).shape == (3, 10)
    wide = DatasetInfo(task="classification", input_shape=(48,), num_classes=4)
    given = build_model("cnn", None, {"image_shape": [3, 4, 4], "channels": [8]}, wide)
    assert given(torch.randn(2, 48)).shape == (2, 4)
    with pytest.raises(SpecError, match="cannot infer a square image from 48"):
        build_model("cnn", None, {}, wide)
    with pytest.raises(SpecError, match="does not hold"):
        build_model("cnn", None, {"image_shape": [1, 7, 7]}, DIGITS)
