"""``mlp``: a multi-layer perceptron classifier over flattened inputs."""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field, PositiveInt
from torch import nn

from raylift.data.base import DatasetInfo
from raylift.errors import SpecError
from raylift.models.base import MODELS
from raylift.registry import Params

Activation = Literal["relu", "gelu", "tanh"]
ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}


class MLPParams(Params):
    hidden_sizes: list[PositiveInt] = Field(
        [128, 64], description="Width of each hidden layer (an empty list: a linear model)."
    )
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout after each hidden layer.")
    activation: Activation = Field("relu", description="Hidden activation: relu, gelu or tanh.")


def require_classification(info: DatasetInfo, model: str) -> int:
    """``info.num_classes``, or a SpecError when the data set is not a classification one."""
    if info.task != "classification" or not info.num_classes:
        raise SpecError(f"model {model!r} needs a classification data set, got task {info.task!r}")
    return info.num_classes


class MLP(nn.Module):
    """(B, *input_shape) float inputs -> (B, num_classes) logits."""

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        hidden_sizes: list[int],
        dropout: float = 0.0,
        activation: Activation = "relu",
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for size in hidden_sizes:
            layers += [nn.Linear(width, size), ACTIVATIONS[activation]()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = size
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))


@MODELS.register("mlp", MLPParams, "multi-layer perceptron classifier")
def mlp(params: MLPParams, info: DatasetInfo) -> nn.Module:
    num_classes = require_classification(info, "mlp")
    return MLP(
        math.prod(info.input_shape),
        num_classes,
        list(params.hidden_sizes),
        params.dropout,
        params.activation,
    )
