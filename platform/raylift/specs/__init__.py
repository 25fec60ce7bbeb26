"""Typed specs for every YAML kind: ``load`` dispatches on ``kind`` (train, sweep, serve)."""

from __future__ import annotations

import os
import tempfile
from typing import Any

import yaml
from pydantic import BaseModel

from raylift.errors import SpecError
from raylift.registry import did_you_mean
from raylift.specs.job import JobSpec
from raylift.specs.loader import load_model_file, position, read_yaml, validate
from raylift.specs.overrides import apply_overrides
from raylift.specs.serve import ServeSpec
from raylift.specs.sweep import SweepSpec

__all__ = [
    "KINDS",
    "JobSpec",
    "ServeSpec",
    "SweepSpec",
    "check_data_files",
    "check_runnable",
    "dump_spec",
    "kind_of",
    "load",
    "load_spec",
    "spec_from_dict",
]

# Every YAML kind and its model; a file without ``kind`` is a training job.
KINDS: dict[str, type[BaseModel]] = {"train": JobSpec, "sweep": SweepSpec, "serve": ServeSpec}
Spec = JobSpec | SweepSpec | ServeSpec


def kind_of(path: str | os.PathLike[str], overrides: list[str] | None = None) -> str:
    """The ``kind`` of a spec file (``train`` when it has none); SpecError if unknown."""
    data, node = read_yaml(path)
    if overrides:
        data = apply_overrides(data, overrides, file=str(path))
    return _kind(data, node, str(path))


def load(path: str | os.PathLike[str], overrides: list[str] | None = None) -> Spec:
    """Load and validate a spec file of any kind; ``overrides`` are ``--set`` strings."""
    file = str(path)
    data, node = read_yaml(file)
    if overrides:
        data = apply_overrides(data, overrides, file=file)
    model = KINDS[_kind(data, node, file)]
    return validate(model, data, file=file, node=node)  # type: ignore[return-value]


def _kind(data: dict[str, Any], node: yaml.Node | None, file: str) -> str:
    kind = data.get("kind", "train")
    if kind not in KINDS:
        line, column = position(node, ["kind"])
        raise SpecError(
            f"unknown kind {kind!r}{did_you_mean(str(kind), list(KINDS))}; "
            f"known kinds: {', '.join(KINDS)}",
            file=file,
            key="kind",
            line=line,
            column=column,
        )
    return str(kind)


def load_spec(path: str | os.PathLike[str], overrides: list[str] | None = None) -> JobSpec:
    """Load and validate a job spec file; ``overrides`` are ``--set`` strings."""
    return load_model_file(JobSpec, path, overrides)


def spec_from_dict(
    data: dict[str, Any], overrides: list[str] | None = None, *, file: str | None = None
) -> JobSpec:
    """Validate an in-memory mapping (e.g. a spec carried inside a checkpoint)."""
    if overrides:
        data = apply_overrides(data, overrides, file=file)
    return validate(JobSpec, data, file=file)


def dump_spec(spec: JobSpec) -> str:
    """The fully resolved spec as YAML (what ``--dry-run`` prints)."""
    return yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False)


def check_runnable(spec: JobSpec, *, file: str | None = None) -> None:
    """Checks that need the file system: storage writable, data files and init_from present."""
    check_storage(spec, file=file)
    check_init_from(spec, file=file)  # before the data: its tokenizer may be the default
    check_data_files(spec, file=file)


def check_storage(spec: JobSpec, *, file: str | None = None) -> None:
    """A local storage root can be created and written."""
    if not spec.storage.is_local:
        return
    root = spec.storage.path.removeprefix("file://")
    probe = root
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not _writable_dir(probe):
        raise SpecError(
            f"storage path {root!r} is not writable ({probe!r} is not a writable "
            "directory); choose another with --set storage.path=DIR",
            file=file,
            key="storage.path",
        )


def check_init_from(spec: JobSpec, *, file: str | None = None) -> None:
    """A local ``init_from`` is an export (a URI is read by the workers)."""
    init_from = spec.init_from_path
    if init_from is None or "://" in init_from:
        return
    from raylift.artifacts.export import MANIFEST_NAME

    if not os.path.isfile(os.path.join(init_from, MANIFEST_NAME)):
        raise SpecError(
            f"{init_from!r} is not an exported model (no {MANIFEST_NAME}); "
            "train the pretraining job first, or point init_from at its model/ folder",
            file=file,
            key="init_from",
        )


def _writable_dir(path: str) -> bool:
    """True if a folder can really be created in ``path`` (os.access lies for root)."""
    if not os.path.isdir(path):
        return False
    try:
        probe = tempfile.mkdtemp(prefix=".raylift-probe-", dir=path)
    except OSError:
        return False
    os.rmdir(probe)
    return True


def check_data_files(spec: JobSpec, *, file: str | None = None) -> None:
    """The data files the spec names exist, and the tokenizer a data set needs
    (``data.tokenizer`` or the model's own) is there (cheap; nothing is loaded)."""
    from raylift.data import DATASETS
    from raylift.errors import DataError

    params = DATASETS.parse_params(spec.data.name, spec.data.params)
    try:
        params.check_files()
    except DataError as exc:
        raise SpecError(str(exc), file=file, key="data.params") from None
    try:
        params.check_tokenizer(spec.data.tokenizer or _default_tokenizer(spec))
    except SpecError as exc:
        raise exc.with_file(file) if file else exc from None


def _default_tokenizer(spec: JobSpec) -> str | None:
    from raylift.specs.resolve import default_tokenizer

    model = spec.model.model_dump(mode="json") if spec.model is not None else None
    return default_tokenizer(model, spec.init_from_path)
