"""The tabular data set: CSV and Parquet through Ray Data (starts a local Ray)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from raylift.data import PreparedData, load_dataset, preprocess
from raylift.data.base import split_indices
from raylift.errors import DataError


def _load(name: str, params: dict | None = None, seed: int = 0, val: float = 0.1) -> PreparedData:
    return load_dataset(name, params, val_fraction=val, seed=seed)


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
