"""What every data source produces, and the data set registry."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from raylift.errors import DataError, SpecError
from raylift.registry import Params, Registry

Task = Literal["classification", "language_modeling"]

IGNORE_INDEX = -100
"""A language-model target that is not trained on (a prompt token, padding): no loss."""


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
    preprocessing; the four splits may be tensors or any object that indexes
    like one (``x[index_tensor]``, ``x[start:stop]``, ``len``, ``shape``), such
    as memory-mapped token windows that read only the rows asked for.
    ``preprocessing`` is a JSON-serialisable description that
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
    # Language models on packed sequences: (N, T) position ids per example, restarting
    # at 0 where each packed document starts (the model then attends within documents
    # only); None: positions 0..T-1. Indexed like the inputs.
    train_positions: Any = None
    val_positions: Any = None
    # The local HF tokenizer directory (or tokenizer.json) the text was tokenized with,
    # for data sets that tokenize (tokens, chat); an HF export carries its files.
    tokenizer_path: str | None = None

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


# factory(params, *, val_fraction: float, seed: int[, tokenizer: str | None]
#         [, work_dir: str | None]) -> PreparedData
# A factory that tokenizes text declares ``tokenizer`` (the job's data.tokenizer);
# one that writes files (e.g. prepares token shards) declares ``work_dir`` (the
# run's folder). load_dataset passes each only to factories that declare it.
DataFactory = Callable[..., PreparedData]
DATASETS: Registry[DataFactory] = Registry("data set")


def _declares(factory: DataFactory, name: str) -> bool:
    return name in inspect.signature(factory).parameters


def uses_tokenizer(name: str) -> bool:
    """Whether the named data set tokenizes text (takes ``data.tokenizer``)."""
    return _declares(DATASETS.get(name).factory, "tokenizer")


def load_dataset(
    name: str,
    params: dict[str, Any] | Params | None,
    *,
    val_fraction: float,
    seed: int,
    tokenizer: str | None = None,
    work_dir: str | None = None,
) -> PreparedData:
    """Build the named data set with a deterministic split.

    ``tokenizer`` (the job's ``data.tokenizer``) is for data sets that tokenize
    text; naming one for any other data set is a spec error. ``work_dir`` is
    where a data set may write what it derives (the run's folder).
    """
    entry = DATASETS.get(name)
    parsed = (
        params if isinstance(params, Params) else entry.params_model.model_validate(params or {})
    )
    extra: dict[str, Any] = {}
    if _declares(entry.factory, "tokenizer"):
        extra["tokenizer"] = tokenizer
    elif tokenizer is not None:
        raise SpecError(
            f"data set {name!r} does not use a tokenizer (it is for tokens and chat); "
            "remove data.tokenizer",
            key="data.tokenizer",
        )
    if _declares(entry.factory, "work_dir"):
        extra["work_dir"] = work_dir
    return entry.factory(parsed, val_fraction=val_fraction, seed=seed, **extra)
