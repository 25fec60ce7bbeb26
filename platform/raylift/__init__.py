"""raylift: train, tune and serve PyTorch models on a Ray cluster.

Public API (import-light: Ray and torch load only when used)::

    from raylift import load_spec, run_training, load_export, connect
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from raylift.errors import (
    AuthError,
    CheckpointError,
    ClusterError,
    DataError,
    ExportError,
    JobError,
    JobStopped,
    RayliftError,
    RegistryError,
    SpecError,
    StorageError,
    TrainingError,
    UnknownJobError,
)
from raylift.version import __version__ as __version__

__all__ = [
    "AuthError",
    "CheckpointError",
    "ClusterError",
    "DataError",
    "ExportError",
    "JobError",
    "JobStopped",
    "RayliftError",
    "RegistryError",
    "SpecError",
    "StorageError",
    "TrainingError",
    "UnknownJobError",
    "connect",
    "load_export",
    "load_spec",
    "run_training",
]

_LAZY = {
    "load_spec": "raylift.specs",
    "run_training": "raylift.training.driver",
    "load_export": "raylift.models.exported",
    "connect": "raylift.ops.connect",
}

if TYPE_CHECKING:
    from raylift.models.exported import load_export
    from raylift.ops.connect import connect
    from raylift.specs import load_spec
    from raylift.training.driver import run_training


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'raylift' has no attribute {name!r}")
