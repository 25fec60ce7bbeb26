"""The data set registry: digits, text, tabular and preprocessing (real data only)."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from raylift.data import DATASETS, PreparedData, load_dataset, preprocess
from raylift.data.base import split_indices
from raylift.data.preprocessing import decode_bytes, encode_text
from raylift.data.text import builtin_corpus
from raylift.errors import DataError, RegistryError

REPO = Path(__file__).resolve().parents[2]


def _load(name: str, params: dict | None = None, seed: int = 0, val: float = 0.1) -> PreparedData:
    return load_dataset(name, params, val_fraction=val, seed=seed)


@pytest.fixture(scope="module")
def digits0() -> PreparedData:
    return _load("digits", seed=0)


@pytest.fixture(scope="module")
def digits_raw() -> np.ndarray:
    from sklearn.datasets import load_digits

    return load_digits().data.astype(np.float32)


@pytest.fixture(scope="module")
def docs0() -> PreparedData:
    return _load("text", seed=0)


# --- registry ---------------------------------------------------------------------------


def test_registered_names() -> None:
    assert DATASETS.names() == ["digits", "tabular", "text"]


def test_unknown_name_lists_known_names_with_did_you_mean() -> None:
    with pytest.raises(RegistryError) as err:
        _load("digit")
    message = str(err.value)
    assert 'did you mean "digits"' in message
    assert "known: digits, tabular, text" in message


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("digits", {"sample_sise": 3}),
        ("digits", {"sample_size": 0}),
        ("text", {"corpus": "shakespeare"}),
        ("text", {"context_lenght": 32}),
        ("tabular", {"path": "x.csv"}),  # label missing
    ],
)
def test_bad_params_are_validation_errors(name: str, params: dict) -> None:
    with pytest.raises(ValidationError):
        _load(name, params)


def test_every_param_has_a_description() -> None:
    for name in DATASETS.names():
        for field_name, field in DATASETS.get(name).params_model.model_fields.items():
            assert field.description, f"{name}.{field_name} has no description"


def test_split_indices_is_a_seeded_partition() -> None:
    train, val = split_indices(100, 0.2, seed=3)
    assert len(val) == 20
    assert sorted(torch.cat([train, val]).tolist()) == list(range(100))
    again = split_indices(100, 0.2, seed=3)
    assert torch.equal(train, again[0]) and torch.equal(val, again[1])
    assert not torch.equal(val, split_indices(100, 0.2, seed=4)[1])
    for bad in (0.0, 1.0, -0.1):
        with pytest.raises(DataError, match="val_fraction"):
            split_indices(100, bad, seed=0)
    with pytest.raises(DataError, match="too few"):
        split_indices(1, 0.5, seed=0)


# --- digits -------------------------------------------------------------------------------


def test_digits_shapes_and_info(digits0: PreparedData) -> None:
    assert digits0.num_train + digits0.num_val == 1797
    assert digits0.num_val == 180
    assert digits0.train_inputs.dtype == torch.float32
    assert digits0.train_inputs.shape == (1617, 64)
    assert digits0.train_targets.dtype == torch.int64
    assert digits0.info.to_json() == {
        "task": "classification",
        "input_shape": [64],
        "num_classes": 10,
        "vocab_size": None,
        "input_dtype": "float32",
    }
    assert set(digits0.train_targets.tolist()) == set(range(10))
    assert 0.0 < digits0.baselines["majority_class_accuracy"] < 0.2


def _raw_rows(data: PreparedData, inputs: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(data.preprocessing["mean"])
    std = torch.tensor(data.preprocessing["std"])
    return (inputs * std + mean).round()


def test_digits_split_is_disjoint_and_complete(
    digits0: PreparedData, digits_raw: np.ndarray
) -> None:
    train_raw = _raw_rows(digits0, digits0.train_inputs)
    val_raw = _raw_rows(digits0, digits0.val_inputs)
    rows = torch.cat([train_raw, val_raw]).to(torch.int64).tolist()
    targets = torch.cat([digits0.train_targets, digits0.val_targets]).tolist()
    got = sorted((tuple(r), t) for r, t in zip(rows, targets, strict=True))
    from sklearn.datasets import load_digits

    expected_targets = load_digits().target.tolist()
    expected = sorted(
        (tuple(int(v) for v in r), int(t))
        for r, t in zip(digits_raw, expected_targets, strict=True)
    )
    assert got == expected
    train_idx, val_idx = split_indices(1797, 0.1, seed=0)
    assert set(train_idx.tolist()).isdisjoint(val_idx.tolist())
    assert torch.equal(val_raw, torch.from_numpy(digits_raw)[val_idx])


def test_digits_standardisation_uses_train_split_only(
    digits0: PreparedData, digits_raw: np.ndarray
) -> None:
    train_idx, _ = split_indices(1797, 0.1, seed=0)
    raw_train = torch.from_numpy(digits_raw)[train_idx]
    mean = torch.tensor(digits0.preprocessing["mean"])
    std = torch.tensor(digits0.preprocessing["std"])
    assert torch.allclose(mean, raw_train.mean(0), atol=1e-5)
    assert not torch.allclose(mean, torch.from_numpy(digits_raw).mean(0), atol=1e-5)
    live = raw_train.std(0) > 0
    assert torch.allclose(std[live], raw_train.std(0, unbiased=False)[live], atol=1e-5)
    assert torch.all(std[~live] == 1.0)  # constant pixels: no division by zero
    assert torch.allclose(digits0.train_inputs.mean(0), torch.zeros(64), atol=1e-5)
    assert torch.isfinite(digits0.val_inputs).all()


def test_digits_seed_determines_split(digits0: PreparedData) -> None:
    again = _load("digits", seed=0)
    assert torch.equal(again.train_inputs, digits0.train_inputs)
    assert torch.equal(again.val_targets, digits0.val_targets)
    other = _load("digits", seed=1)
    assert not torch.equal(other.val_targets, digits0.val_targets)


def test_digits_sample_is_raw_validation_data(digits0: PreparedData) -> None:
    sample = digits0.sample_raw_inputs
    assert isinstance(sample, torch.Tensor) and sample.dtype == torch.float32
    assert sample.shape == (64, 64)
    assert sample.min() >= 0 and sample.max() <= 16 and sample.max() > 1
    assert torch.equal(digits0.sample_targets, digits0.val_targets[:64])
    assert torch.allclose(
        preprocess(digits0.preprocessing, sample), digits0.val_inputs[:64], atol=1e-5
    )
    small = _load("digits", {"sample_size": 5})
    assert small.sample_raw_inputs.shape == (5, 64)


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


def test_importing_data_does_not_import_ray_or_sklearn() -> None:
    code = (
        "import sys, raylift.data, raylift.models; "
        "bad = [m for m in ('ray', 'sklearn', 'pandas') if m in sys.modules]; "
        "assert not bad, bad"
    )
    env_path = str(REPO / "platform")
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


# --- tabular (starts Ray Data) ------------------------------------------------------------

IRIS_FEATURES = [
    "sepal length (cm)",
    "sepal width (cm)",
    "petal length (cm)",
    "petal width (cm)",
]


@pytest.fixture(scope="module")
def ray_local():
    import ray

    ray.init(num_cpus=1, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def iris_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sklearn.datasets import load_iris

    bunch = load_iris(as_frame=True)
    frame = bunch.frame.copy()
    frame["species"] = [bunch.target_names[t] for t in bunch.target]
    root = tmp_path_factory.mktemp("iris")
    bunch.frame.to_csv(root / "numeric.csv", index=False)
    frame.to_csv(root / "iris.csv", index=False)
    frame.to_parquet(root / "iris.parquet", index=False)
    (root / "parts").mkdir()
    frame.iloc[:75].to_parquet(root / "parts" / "part-0.parquet", index=False)
    frame.iloc[75:].to_parquet(root / "parts" / "part-1.parquet", index=False)
    (root / "parts" / "_SUCCESS").write_text("")
    frame.to_csv(root / "iris.data", index=False)
    frame.assign(colour="red").to_csv(root / "with_text.csv", index=False)
    frame[frame["species"] == "setosa"].to_csv(root / "setosa.csv", index=False)
    return root


@pytest.mark.slow
def test_tabular_csv_and_parquet_agree(ray_local: None, iris_files: Path) -> None:
    params = {"path": str(iris_files / "iris.csv"), "label": "species", "features": IRIS_FEATURES}
    csv = _load("tabular", params, seed=0, val=0.2)
    parquet = _load("tabular", {**params, "path": str(iris_files / "iris.parquet")}, 0, 0.2)
    parts = _load("tabular", {**params, "path": str(iris_files / "parts")}, 0, 0.2)
    assert csv.info.num_classes == 3 and csv.info.input_shape == (4,)
    assert csv.num_train == 120 and csv.num_val == 30
    assert csv.preprocessing["class_labels"] == ["setosa", "versicolor", "virginica"]
    assert csv.preprocessing["features"] == IRIS_FEATURES
    for other in (parquet, parts):
        assert torch.allclose(other.train_inputs, csv.train_inputs, atol=1e-5)
        assert torch.equal(other.val_targets, csv.val_targets)
    assert 0.2 < csv.baselines["majority_class_accuracy"] < 0.5


@pytest.mark.slow
def test_tabular_split_and_standardisation(ray_local: None, iris_files: Path) -> None:
    from sklearn.datasets import load_iris

    raw = torch.as_tensor(load_iris().data, dtype=torch.float32)
    labels = torch.as_tensor(load_iris().target, dtype=torch.int64)
    data = _load("tabular", {"path": str(iris_files / "numeric.csv"), "label": "target"}, 5, 0.2)
    assert data.preprocessing["features"] == IRIS_FEATURES  # default: all but the label
    assert data.preprocessing["class_labels"] == [0, 1, 2]
    train_idx, val_idx = split_indices(150, 0.2, seed=5)
    mean = torch.tensor(data.preprocessing["mean"])
    assert torch.allclose(mean, raw[train_idx].mean(0), atol=1e-5)
    assert not torch.allclose(mean, raw.mean(0), atol=1e-4)
    assert torch.equal(data.val_targets, labels[val_idx])
    assert torch.equal(data.sample_raw_inputs, raw[val_idx])
    assert torch.allclose(
        preprocess(data.preprocessing, data.sample_raw_inputs), data.val_inputs, atol=1e-5
    )
    again = _load("tabular", {"path": str(iris_files / "numeric.csv"), "label": "target"}, 6, 0.2)
    assert not torch.equal(again.val_targets, data.val_targets)


@pytest.mark.slow
def test_tabular_errors(ray_local: None, iris_files: Path) -> None:
    base = {"label": "species", "features": IRIS_FEATURES}
    with pytest.raises(DataError, match="does not exist"):
        _load("tabular", {**base, "path": str(iris_files / "missing.csv")})
    with pytest.raises(DataError, match="matches no files"):
        _load("tabular", {**base, "path": str(iris_files / "*.json")})
    with pytest.raises(DataError, match=r"column 'kind' is not in the table; columns: sepal"):
        _load("tabular", {**base, "path": str(iris_files / "iris.csv"), "label": "kind"})
    with pytest.raises(DataError, match=r"not: colour \("):
        _load("tabular", {"path": str(iris_files / "with_text.csv"), "label": "species"})
    with pytest.raises(DataError, match="at least 2 classes"):
        _load("tabular", {**base, "path": str(iris_files / "setosa.csv")})
    with pytest.raises(DataError, match="set 'format'"):
        _load("tabular", {**base, "path": str(iris_files / "iris.data")})
    named = _load("tabular", {**base, "path": str(iris_files / "iris.data"), "format": "csv"})
    assert named.info.num_classes == 3
