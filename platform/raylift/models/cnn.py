"""``cnn``: a small convolutional classifier for images given as flat pixel vectors."""

from __future__ import annotations

import math

import torch
from pydantic import Field, PositiveInt, field_validator
from torch import nn

from raylift.data.base import DatasetInfo
from raylift.errors import SpecError
from raylift.models.base import MODELS
from raylift.models.mlp import require_classification
from raylift.registry import Params


class CNNParams(Params):
    channels: list[PositiveInt] = Field(
        [16, 32], min_length=1, description="Output channels of each convolution."
    )
    kernel_size: int = Field(3, ge=1, description="Odd convolution kernel size ('same' padding).")
    hidden_size: int = Field(64, ge=1, description="Width of the fully connected hidden layer.")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout before the output layer.")
    image_shape: tuple[int, int, int] | None = Field(
        None,
        description=(
            "[channels, height, width] of one input; default: a square single-channel "
            "image inferred from the input size (64 -> [1, 8, 8])."
        ),
    )

    @field_validator("kernel_size")
    @classmethod
    def _odd_kernel(cls, value: int) -> int:
        if value % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {value}")
        return value


def image_shape_for(info: DatasetInfo, given: tuple[int, int, int] | None) -> tuple[int, int, int]:
    """The [C, H, W] an input of ``info.input_shape`` is reshaped to."""
    size = math.prod(info.input_shape)
    if given is not None:
        if math.prod(given) != size or min(given) < 1:
            raise SpecError(
                f"cnn image_shape {list(given)} does not hold the data's {size} input values"
            )
        return given
    side = math.isqrt(size)
    if side * side != size:
        raise SpecError(
            f"cnn cannot infer a square image from {size} input values; set image_shape"
        )
    return (1, side, side)


class CNN(nn.Module):
    """(B, C*H*W) or (B, C, H, W) inputs -> (B, num_classes) logits.

    Each convolution is followed by ReLU and, while the feature map is at least
    4x4, by 2x2 max pooling.
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        num_classes: int,
        channels: list[int],
        kernel_size: int = 3,
        hidden_size: int = 64,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.image_shape = tuple(image_shape)
        c, h, w = image_shape
        layers: list[nn.Module] = []
        for out in channels:
            layers += [nn.Conv2d(c, out, kernel_size, padding="same"), nn.ReLU()]
            if h >= 4 and w >= 4:
                layers.append(nn.MaxPool2d(2))
                h, w = h // 2, w // 2
            c = out
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c * h * w, hidden_size),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_size, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x.reshape(x.shape[0], *self.image_shape)))


@MODELS.register("cnn", CNNParams, "small convolutional classifier for images")
def cnn(params: CNNParams, info: DatasetInfo) -> nn.Module:
    num_classes = require_classification(info, "cnn")
    return CNN(
        image_shape_for(info, params.image_shape),
        num_classes,
        list(params.channels),
        params.kernel_size,
        params.hidden_size,
        params.dropout,
    )
