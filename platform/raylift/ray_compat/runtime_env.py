"""Packing a working directory exactly as Ray's runtime_env will, and the GCS's size limit."""

from __future__ import annotations

from pathlib import Path

from raylift.ray_compat.requirements import Requirement

PACKAGING = "ray._private.runtime_env.packaging"
REQUIRES = [
    Requirement(PACKAGING, "GCS_STORAGE_MAX_SIZE"),
    Requirement(PACKAGING, "create_package", uses=("include_gitignore", "excludes", "logger")),
]


def package_limit_bytes() -> int:
    """The largest package a runtime_env may upload to the GCS (Ray's ``GCS_STORAGE_MAX_SIZE``)."""
    from ray._private.runtime_env.packaging import GCS_STORAGE_MAX_SIZE

    return int(GCS_STORAGE_MAX_SIZE)


def create_package(
    root: Path | str, target: Path, *, include_gitignore: bool, excludes: list[str]
) -> None:
    """Zip ``root`` into ``target`` with Ray's own rules (``excludes``, .gitignore, .rayignore)."""
    from ray._private.runtime_env.packaging import create_package as pack

    pack(str(root), target, include_gitignore, excludes=excludes, logger=None)
