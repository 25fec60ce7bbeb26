"""The text data set: built-in corpora, files and globs, split and baseline (real data only)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from raylift.data import PreparedData, load_dataset, preprocess
from raylift.data.base import split_indices
from raylift.data.text import builtin_corpus
from raylift.errors import DataError


def _load(name: str, params: dict | None = None, seed: int = 0, val: float = 0.1) -> PreparedData:
    return load_dataset(name, params, val_fraction=val, seed=seed)


@pytest.fixture(scope="module")
def docs0() -> PreparedData:
    return _load("text", seed=0)


# --- text ---------------------------------------------------------------------------------


def _rebuild_corpus(data: PreparedData, seed: int, val: float) -> bytes:
    """The chunks, put back in corpus order using the split's permutation."""
    n = data.num_train + data.num_val
    train_idx, val_idx = split_indices(n, val, seed)
    t = data.info.input_shape[0]
    full = torch.zeros(n, t + 1, dtype=torch.int64)
    for idx, inputs, targets in (
        (train_idx, data.train_inputs, data.train_targets),
        (val_idx, data.val_inputs, data.val_targets),
    ):
        full[idx] = torch.cat([inputs[:, :1], targets], dim=1)
    return bytes(full.flatten().tolist())


def test_text_python_docs_chunks(docs0: PreparedData) -> None:
    corpus = builtin_corpus("python-docs")
    from pydoc_data.topics import topics

    assert corpus.startswith(topics[sorted(topics)[0]].encode())
    assert len(corpus) > 300_000
    n = len(corpus) // 65
    assert docs0.num_train + docs0.num_val == n
    assert docs0.train_inputs.shape == (docs0.num_train, 64)
    assert docs0.train_inputs.dtype == torch.int64 and docs0.train_targets.dtype == torch.int64
    assert torch.equal(docs0.train_inputs[:, 1:], docs0.train_targets[:, :-1])
    assert torch.equal(docs0.val_inputs[:, 1:], docs0.val_targets[:, :-1])
    assert _rebuild_corpus(docs0, seed=0, val=0.1) == corpus[: n * 65]
    assert docs0.info.to_json() == {
        "task": "language_modeling",
        "input_shape": [64],
        "num_classes": None,
        "vocab_size": 256,
        "input_dtype": "int64",
    }
    assert docs0.preprocessing == {
        "type": "bytes",
        "vocab_size": 256,
        "context_length": 64,
        "encoding": "utf-8",
    }


def test_text_unigram_baseline(docs0: PreparedData) -> None:
    loss = docs0.baselines["unigram_loss"]
    assert math.isfinite(loss) and 2.0 < loss < math.log(256)
    counts = torch.bincount(docs0.train_targets.flatten(), minlength=256).double() + 1
    probs = counts / counts.sum()
    expected = -probs.log()[docs0.val_targets.flatten()].mean()
    assert loss == pytest.approx(float(expected), rel=1e-9)


def test_text_seed_determines_split(docs0: PreparedData) -> None:
    again = _load("text", seed=0)
    assert torch.equal(again.val_inputs, docs0.val_inputs)
    other = _load("text", seed=1)
    assert not torch.equal(other.val_inputs, docs0.val_inputs)
    assert _rebuild_corpus(other, seed=1, val=0.1) == _rebuild_corpus(docs0, seed=0, val=0.1)


def test_text_sample_round_trips_through_preprocess(docs0: PreparedData) -> None:
    texts = docs0.sample_raw_inputs
    assert isinstance(texts, list) and len(texts) == 16
    assert docs0.sample_targets.shape == (16, 64)
    for text, targets in zip(texts, docs0.sample_targets, strict=True):
        ids = preprocess(docs0.preprocessing, text)
        assert ids.shape == (1, 64)
        assert torch.equal(ids[0, 1:], targets[:-1])


def test_licenses_corpus() -> None:
    corpus = builtin_corpus("licenses")
    assert len(corpus) == 70891
    text = corpus.decode("ascii")
    assert text.lstrip().startswith("Apache License")
    for heading in (
        "GNU GENERAL PUBLIC LICENSE",
        "GNU LESSER GENERAL PUBLIC LICENSE",
        "Mozilla Public License Version 2.0",
    ):
        assert heading in text
    data = _load("text", {"corpus": "licenses", "context_length": 32})
    assert data.num_train + data.num_val == len(corpus) // 33
    assert 0 < data.baselines["unigram_loss"] < math.log(256)


def test_text_paths_and_globs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    corpus = builtin_corpus("licenses")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_bytes(corpus[:3000])
    (tmp_path / "docs" / "b.txt").write_bytes(corpus[3000:6000])
    monkeypatch.chdir(tmp_path)
    one = _load("text", {"paths": ["docs/a.txt"], "context_length": 16, "corpus": "licenses"})
    assert _rebuild_corpus(one, seed=0, val=0.1) == corpus[: (3000 // 17) * 17]
    both = _load("text", {"paths": ["docs/*.txt"], "context_length": 16})
    assert both.num_train + both.num_val == 6002 // 17  # joined with a blank line
    capped = _load("text", {"paths": ["docs/*.txt"], "context_length": 16, "max_bytes": 1000})
    assert capped.num_train + capped.num_val == 1000 // 17
    with pytest.raises(DataError, match=r"'nothing/\*\.md' matches no files"):
        _load("text", {"paths": ["nothing/*.md"]})
    with pytest.raises(DataError, match="does not exist"):
        _load("text", {"paths": ["docs/c.txt"]})
    with pytest.raises(DataError, match="needs at least 130"):
        _load("text", {"corpus": "licenses", "max_bytes": 100})
