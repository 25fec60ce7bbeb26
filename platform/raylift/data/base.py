"""What every data source produces, and the data set registry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from raylift.errors import DataError
from raylift.registry import Params, Registry

Task = Literal["classification", "language_modeling"]


@dataclass(frozen=True)
class DatasetInfo:
    """What a model builder needs to know about the data (JSON-friendly)."""

    task: Task
    input_shape: tuple[int, ...]  # one example's model input, e.g. (64,) or (context,)
    num_classes: int | None = None  # classification
    vocab_size: int | None = None  # language modelling
    input_dtype: str = "float32"  # dtype of the model input ("float32" or "int64")

    def to_json(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "vocab_size": self.vocab_size,
            "input_dtype": self.input_dtype,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> DatasetInfo:
        return cls(
            task=raw["task"],
            input_shape=tuple(raw["input_shape"]),
            num_classes=raw.get("num_classes"),
            vocab_size=raw.get("vocab_size"),
            input_dtype=raw.get("input_dtype", "float32"),
        )


@dataclass
class PreparedData:
    """A deterministic train/validation split, ready for the training loop.

    ``train_inputs[i]``/``train_targets[i]`` is one example *after*
    preprocessing. ``preprocessing`` is a JSON-serialisable description that
    :func:`raylift.data.preprocessing.preprocess` applies to raw inputs at
    serving time. ``sample_raw_inputs``/``sample_targets`` is a small held-out
    sample (from the validation split) of *raw* inputs, kept with the export.
    """

    train_inputs: torch.Tensor
    train_targets: torch.Tensor
    val_inputs: torch.Tensor
    val_targets: torch.Tensor
    info: DatasetInfo
    preprocessing: dict[str, Any]
    sample_raw_inputs: Any
    sample_targets: torch.Tensor
    baselines: dict[str, float] = field(default_factory=dict)
    description: str = ""

    @property
    def num_train(self) -> int:
        return int(self.train_inputs.shape[0])

    @property
    def num_val(self) -> int:
        return int(self.val_inputs.shape[0])


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Deterministic (train, val) index tensors: a permutation seeded with ``seed``.

    The validation split gets ``round(n * val_fraction)`` examples, at least one;
    both splits must be non-empty.
    """
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    num_val = max(1, round(n * val_fraction))
    if num_val >= n:
        raise DataError(
            f"{n} example(s) are too few to split with val_fraction={val_fraction}: "
            "both the training and the validation split need at least one"
        )
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[num_val:], perm[:num_val]


# factory(params, *, val_fraction: float, seed: int) -> PreparedData
DataFactory = Callable[..., PreparedData]
DATASETS: Registry[DataFactory] = Registry("data set")


def load_dataset(
    name: str, params: dict[str, Any] | Params | None, *, val_fraction: float, seed: int
) -> PreparedData:
    """Build the named data set with a deterministic split."""
    entry = DATASETS.get(name)
    parsed = (
        params if isinstance(params, Params) else entry.params_model.model_validate(params or {})
    )
    return entry.factory(parsed, val_fraction=val_fraction, seed=seed)
