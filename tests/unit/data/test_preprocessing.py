"""Preprocessing: byte encoding and the checks on raw inputs before they reach a model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from raylift.data import PreparedData, load_dataset, preprocess
from raylift.data.preprocessing import decode_bytes, encode_text
from raylift.errors import DataError


def _load(name: str, params: dict | None = None, seed: int = 0, val: float = 0.1) -> PreparedData:
    return load_dataset(name, params, val_fraction=val, seed=seed)


@pytest.fixture(scope="module")
def digits0() -> PreparedData:
    return _load("digits", seed=0)


# --- preprocessing ------------------------------------------------------------------------


def test_encode_decode_round_trip() -> None:
    text = "naïve café — ok"
    ids = encode_text(text)
    assert len(ids) == len(text.encode("utf-8")) and max(ids) > 127
    assert decode_bytes(ids) == text
    assert decode_bytes(torch.tensor(ids)) == text
    assert decode_bytes(ids[:3]) == "na\ufffd"  # a split character is replaced
    with pytest.raises(DataError):
        decode_bytes([300])


def test_preprocess_bytes() -> None:
    prep = {"type": "bytes", "vocab_size": 256, "context_length": 8, "encoding": "utf-8"}
    out = preprocess(prep, "hello")
    assert out.dtype == torch.int64 and out.tolist() == [list(b"hello")]
    assert preprocess(prep, "0123456789abc").tolist() == [list(b"56789abc")]  # the last 8
    assert preprocess(prep, ["abc", "xyz"]).shape == (2, 3)
    for bad, match in [
        ("", "empty"),
        (["abc", "abcd"], "same length"),
        (42, "got int"),
        ([], "non-empty"),
        (["ok", 3], "position 1"),
    ]:
        with pytest.raises(DataError, match=match):
            preprocess(prep, bad)


def test_preprocess_standardize_validates(digits0: PreparedData) -> None:
    prep = digits0.preprocessing
    one = digits0.sample_raw_inputs[0]
    assert preprocess(prep, one.tolist()).shape == (1, 64)
    assert preprocess(prep, np.asarray(one)).shape == (1, 64)
    nan = one.clone()
    nan[3] = float("nan")
    cases = [
        (one[:63].tolist(), "shape"),
        ([one.tolist(), one[:10].tolist()], "could not read"),
        (nan, "NaN"),
        ("1, 2, 3", "got str"),
        ([True] * 64, "real numbers"),
        ([["a"] * 64], "could not read"),
        (torch.full((64,), 255.0), r"\[0, 16\]"),
        (torch.zeros(0, 64), "non-empty"),
    ]
    for raw, match in cases:
        with pytest.raises(DataError, match=match):
            preprocess(prep, raw)
    with pytest.raises(DataError, match="unknown preprocessing type"):
        preprocess({"type": "resize"}, [1.0])
