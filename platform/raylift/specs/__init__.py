"""Typed specs for every YAML kind, and ``load_spec``."""

from __future__ import annotations

import os
import tempfile
from typing import Any

import yaml

from raylift.errors import SpecError
from raylift.specs.job import JobSpec
from raylift.specs.loader import load_model_file, validate
from raylift.specs.overrides import apply_overrides

__all__ = [
    "JobSpec",
    "check_data_files",
    "check_runnable",
    "dump_spec",
    "load_spec",
    "spec_from_dict",
]


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
    """Checks that need the file system: storage writable, init_from present."""
    if spec.storage.is_local:
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
    check_data_files(spec, file=file)
    init_from = spec.init_from_path
    if init_from is not None and "://" not in init_from:
        from raylift.artifacts.export import MANIFEST_NAME

        manifest = os.path.join(init_from, MANIFEST_NAME)
        if not os.path.isfile(manifest):
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
    """The data files the spec names exist (cheap; nothing is read)."""
    from raylift.data import DATASETS
    from raylift.errors import DataError

    try:
        DATASETS.parse_params(spec.data.name, spec.data.params).check_files()
    except DataError as exc:
        raise SpecError(str(exc), file=file, key="data.params") from None
