"""Turn raw inputs into model inputs, as described by a data set's ``preprocessing``.

The same description is stored with an exported model, so serving applies
exactly the transformation that training used. Two kinds exist:

* ``{"type": "standardize", "mean", "std", "input_shape", ...}``: numbers,
  one example of ``input_shape`` or a batch of them -> float32 ``(B, *input_shape)``.
* ``{"type": "bytes", "vocab_size": 256, "context_length": T, "encoding": "utf-8"}``:
  a string (or a list of strings of equal encoded length) -> int64 ``(B, L)``,
  keeping the last ``T`` bytes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from raylift.errors import DataError

STD_EPS = 1e-6


def encode_text(s: str) -> list[int]:
    """The UTF-8 bytes of ``s`` as token ids (0..255)."""
    return list(s.encode("utf-8"))


def decode_bytes(ids: Sequence[int] | torch.Tensor) -> str:
    """Token ids (0..255) back to text; invalid UTF-8 becomes U+FFFD."""
    values = ids.flatten().tolist() if isinstance(ids, torch.Tensor) else list(ids)
    try:
        return bytes(values).decode("utf-8", errors="replace")
    except (ValueError, TypeError) as exc:
        raise DataError(f"byte ids must be integers in 0..255: {exc}") from None


def fit_standardize(train: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-feature mean and std of ``train`` (N, F); a (near-)constant feature gets std 1."""
    mean = train.mean(dim=0)
    std = train.std(dim=0, unbiased=False)
    std = torch.where(std < STD_EPS, torch.ones_like(std), std)
    return mean, std


def majority_class_accuracy(train_targets: torch.Tensor, val_targets: torch.Tensor) -> float:
    """Validation accuracy of always predicting the training split's most common class."""
    majority = int(torch.bincount(train_targets).argmax())
    return float((val_targets == majority).float().mean())


def preprocess(preprocessing: dict[str, Any], raw: Any) -> torch.Tensor:
    """Raw inputs -> a batch of model inputs; bad input raises :class:`DataError`."""
    kind = preprocessing.get("type")
    if kind == "standardize":
        return _standardize(preprocessing, raw)
    if kind == "bytes":
        return _bytes(preprocessing, raw)
    raise DataError(f"unknown preprocessing type {kind!r} (known: bytes, standardize)")


def _standardize(preprocessing: dict[str, Any], raw: Any) -> torch.Tensor:
    shape = tuple(int(d) for d in preprocessing["input_shape"])
    if isinstance(raw, str | bytes | dict) or raw is None:
        raise DataError(
            f"expected numbers shaped {list(shape)} (or a batch of them), got {type(raw).__name__}"
        )
    try:
        x = torch.as_tensor(raw)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise DataError(
            f"expected numbers shaped {list(shape)} (or a batch of them); "
            f"could not read the input as an array of numbers: {exc}"
        ) from None
    if x.dtype == torch.bool or x.is_complex() or not (x.is_floating_point() or _is_int(x)):
        raise DataError(f"expected real numbers, got values of type {x.dtype}")
    x = x.to(torch.float32)
    if tuple(x.shape) == shape:
        x = x.unsqueeze(0)
    if x.dim() != len(shape) + 1 or tuple(x.shape[1:]) != shape or x.shape[0] == 0:
        raise DataError(
            f"expected one input of shape {list(shape)} or a non-empty batch "
            f"[batch, {', '.join(map(str, shape))}], got shape {list(x.shape)}"
        )
    if not torch.isfinite(x).all():
        raise DataError("input contains NaN or infinite values")
    bounds = preprocessing.get("input_range")
    if bounds is not None:
        low, high = float(bounds[0]), float(bounds[1])
        if x.min() < low or x.max() > high:
            raise DataError(
                f"input values must lie in [{low:g}, {high:g}], "
                f"got values from {float(x.min()):g} to {float(x.max()):g}"
            )
    mean = torch.tensor(preprocessing["mean"], dtype=torch.float32).reshape(shape)
    std = torch.tensor(preprocessing["std"], dtype=torch.float32).reshape(shape)
    return (x - mean) / std


def _is_int(x: torch.Tensor) -> bool:
    return x.dtype in (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def _bytes(preprocessing: dict[str, Any], raw: Any) -> torch.Tensor:
    context = int(preprocessing["context_length"])
    encoding = preprocessing.get("encoding", "utf-8")
    texts = [raw] if isinstance(raw, str) else raw
    if not isinstance(texts, list | tuple) or not texts:
        raise DataError(f"expected a string or a non-empty list of strings, got {_kind(raw)}")
    rows: list[bytes] = []
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise DataError(f"expected a string at position {i}, got {_kind(text)}")
        data = text.encode(encoding)
        if not data:
            raise DataError(f"the text at position {i} is empty; the model needs at least 1 byte")
        rows.append(data[-context:])
    lengths = sorted({len(r) for r in rows})
    if len(lengths) > 1:
        raise DataError(
            f"the texts of a batch must have the same length in bytes (after keeping the last "
            f"{context}), got lengths {lengths}; send them one at a time"
        )
    return torch.tensor([list(r) for r in rows], dtype=torch.int64)


def _kind(value: Any) -> str:
    return type(value).__name__


def unigram_loss(train_targets: torch.Tensor, val_targets: torch.Tensor, vocab: int) -> float:
    """Mean cross-entropy (nats) of ``val_targets`` under the add-one smoothed
    unigram distribution of ``train_targets``."""
    counts = torch.bincount(train_targets.flatten(), minlength=vocab).double() + 1.0
    log_p = counts.log() - math.log(float(counts.sum()))
    return float(-log_p[val_targets.flatten()].mean())
