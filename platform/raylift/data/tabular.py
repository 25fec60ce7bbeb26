"""``tabular``: your own CSV or Parquet table, read through Ray Data, for classification.

Ray is imported only when the data set is built, so ``import raylift.data`` stays light.
"""

from __future__ import annotations

import contextlib
import glob
import os
from collections.abc import Iterator
from typing import Any, Literal

import torch
from pydantic import Field

from raylift.data.base import DATASETS, DatasetInfo, PreparedData, split_indices
from raylift.data.preprocessing import fit_standardize, majority_class_accuracy
from raylift.errors import DataError
from raylift.registry import Params

Format = Literal["csv", "parquet"]
EXTENSIONS: dict[str, Format] = {
    ".csv": "csv",
    ".csv.gz": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}


class TabularParams(Params):
    path: str = Field(
        description=(
            "A CSV/Parquet file, a directory of them, or a glob; relative paths resolve "
            "against the current directory."
        )
    )
    label: str = Field(description="The column holding the class label.")
    features: list[str] | None = Field(
        None, min_length=1, description="Feature columns (default: every column but the label)."
    )
    format: Format | None = Field(
        None, description="'csv' or 'parquet' (default: from the file extension)."
    )
    sample_size: int = Field(
        64,
        ge=1,
        description="How many raw validation rows to keep with the export as a sample.",
    )

    def check_files(self) -> None:
        resolve_files(self.path, self.format)

    def with_absolute_paths(self) -> TabularParams:
        if "://" in self.path:
            return self
        return self.model_copy(update={"path": os.path.abspath(os.path.expanduser(self.path))})


def _format_of(path: str) -> Format | None:
    lower = path.lower()
    return next((fmt for ext, fmt in EXTENSIONS.items() if lower.endswith(ext)), None)


def _walk(directory: str) -> list[str]:
    """Files under ``directory``, skipping hidden/metadata names ('.x', '_SUCCESS')."""
    found: list[str] = []
    for root, dirs, names in os.walk(directory):
        dirs[:] = [d for d in dirs if not d.startswith((".", "_"))]
        found.extend(os.path.join(root, n) for n in names if not n.startswith((".", "_")))
    return sorted(found)


def resolve_files(path: str, fmt: Format | None) -> tuple[list[str], Format]:
    """The files named by ``path`` (file, directory or glob) and their format."""
    full = os.path.join(os.getcwd(), os.path.expanduser(path))
    if any(ch in path for ch in "*?["):
        files = [f for f in sorted(glob.glob(full, recursive=True)) if os.path.isfile(f)]
        if not files:
            raise DataError(f"table path pattern {path!r} matches no files")
    elif os.path.isdir(full):
        files = _walk(full)
        if not files:
            raise DataError(f"table directory {path!r} contains no files")
    elif os.path.isfile(full):
        files = [full]
    else:
        raise DataError(f"table file {path!r} does not exist ({full})")
    if fmt is not None:
        matching = [f for f in files if _format_of(f) == fmt]
        return (matching or files), fmt
    formats = {_format_of(f) for f in files} - {None}
    if len(formats) != 1:
        found = "both CSV and Parquet files" if formats else "no .csv or .parquet file"
        raise DataError(f"cannot tell the format of {path!r} ({found}); set 'format'")
    fmt = formats.pop()
    assert fmt is not None
    return [f for f in files if _format_of(f) == fmt], fmt


@contextlib.contextmanager
def _preserve_order() -> Iterator[None]:
    """Ray Data keeps row order while reading (so the seeded split is reproducible)."""
    import ray.data

    options = ray.data.DataContext.get_current().execution_options
    before = options.preserve_order
    options.preserve_order = True
    try:
        yield
    finally:
        options.preserve_order = before


def read_table(files: list[str], fmt: Format) -> Any:
    """A pandas DataFrame of ``files`` read with Ray Data."""
    import ray.data

    reader = ray.data.read_csv if fmt == "csv" else ray.data.read_parquet
    try:
        with _preserve_order():
            return reader(files).to_pandas()
    except Exception as exc:
        where = files[0] if len(files) == 1 else f"{len(files)} {fmt} files"
        raise DataError(f"cannot read {where} as {fmt}: {exc}") from exc


def _columns(frame: Any, params: TabularParams) -> list[str]:
    columns = [str(c) for c in frame.columns]
    wanted = [params.label, *(params.features or [])]
    for name in wanted:
        if name not in columns:
            raise DataError(f"column {name!r} is not in the table; columns: {', '.join(columns)}")
    features = params.features or [c for c in columns if c != params.label]
    if params.label in features:
        raise DataError(f"the label column {params.label!r} cannot also be a feature")
    if not features:
        raise DataError(f"the table has no feature columns besides the label {params.label!r}")
    return features


def _check_features(frame: Any, features: list[str]) -> None:
    from pandas.api.types import is_numeric_dtype

    bad = [f"{c} ({frame[c].dtype})" for c in features if not is_numeric_dtype(frame[c])]
    if bad:
        raise DataError(
            f"features must be numeric; these are not: {', '.join(bad)} "
            "(encode them as numbers or leave them out of 'features')"
        )
    missing = [c for c in features if frame[c].isna().any()]
    if missing:
        raise DataError(f"feature columns with missing values: {', '.join(missing)}")


def _class_labels(column: Any, label: str) -> list[Any]:
    if column.isna().any():
        raise DataError(f"the label column {label!r} has missing values")
    values = [v.item() if hasattr(v, "item") else v for v in column.unique()]
    try:
        labels = sorted(values)
    except TypeError:
        raise DataError(f"the label column {label!r} mixes value types") from None
    if len(labels) < 2:
        raise DataError(f"the label column {label!r} needs at least 2 classes, found {labels}")
    return labels


@DATASETS.register(
    "tabular", TabularParams, "classification on your CSV/Parquet table (read with Ray Data)"
)
def tabular(params: TabularParams, *, val_fraction: float, seed: int) -> PreparedData:
    """Numeric features standardised on the training split; labels in sorted order."""
    files, fmt = resolve_files(params.path, params.format)
    frame = read_table(files, fmt)
    features = _columns(frame, params)
    _check_features(frame, features)
    labels = _class_labels(frame[params.label], params.label)
    index = {v: i for i, v in enumerate(labels)}
    targets = torch.tensor(frame[params.label].map(index).to_numpy(), dtype=torch.int64)
    raw = torch.tensor(frame[features].to_numpy(dtype="float32"), dtype=torch.float32)
    if not torch.isfinite(raw).all():
        raise DataError("feature columns contain infinite values")
    train_idx, val_idx = split_indices(len(raw), val_fraction, seed)
    mean, std = fit_standardize(raw[train_idx])
    inputs = (raw - mean) / std
    sample_idx = val_idx[: params.sample_size]
    return PreparedData(
        train_inputs=inputs[train_idx],
        train_targets=targets[train_idx],
        val_inputs=inputs[val_idx],
        val_targets=targets[val_idx],
        info=DatasetInfo(
            task="classification", input_shape=(len(features),), num_classes=len(labels)
        ),
        preprocessing={
            "type": "standardize",
            "mean": mean.tolist(),
            "std": std.tolist(),
            "input_shape": [len(features)],
            "features": features,
            "class_labels": labels,
        },
        sample_raw_inputs=raw[sample_idx].clone(),
        sample_targets=targets[sample_idx].clone(),
        baselines={
            "majority_class_accuracy": majority_class_accuracy(targets[train_idx], targets[val_idx])
        },
        description=(
            f"tabular: {params.path} ({fmt}), {len(features)} features, {len(labels)} classes; "
            f"{len(train_idx)} train / {len(val_idx)} validation"
        ),
    )
