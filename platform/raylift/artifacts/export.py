"""The one exported-model format that joins training, tuning and serving.

``<storage>/<run>/model/`` holds:

- ``weights.pt``: the model's state_dict (``torch.load(weights_only=True)``;
  LoRA adapters merged in, so it is always the plain model's)
- ``sample.pt``: a small held-out sample of raw inputs and targets
- ``raylift-model.json``: format version, model spec (registry name or import
  path + params), data spec and dataset info, preprocessing, final metrics,
  the run's spec, versions, and every file's size and sha256 (it seals the folder).
- for a Hugging Face model (``model.name: hf``) also a standard HF model
  directory's files (``config.json``, ``model.safetensors``,
  ``generation_config.json``): ``AutoModelForCausalLM.from_pretrained(export)``
  loads it outside raylift (``hf_files`` in the manifest lists them).

This module is the one place that knows those files. Rebuilding the model from
them is ``raylift.models.exported.load_export``; writing one from a training
checkpoint is ``raylift.training.exporting``.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from collections.abc import Callable
from typing import Any

import torch

from raylift import storage
from raylift.artifacts import sealed
from raylift.errors import CheckpointError, ExportError

MANIFEST_NAME = "raylift-model.json"
WEIGHTS_FILE = "weights.pt"
SAMPLE_FILE = "sample.pt"
EXPORT_FORMAT = "raylift-model/1"


def write_export(
    out_dir: str,
    *,
    weights: dict[str, torch.Tensor],
    sample: dict[str, Any],
    metadata: dict[str, Any],
    write_more: Callable[[str], list[str]] | None = None,
) -> str:
    """Write an export to ``out_dir`` (a local path or a URI), sealed; returns it.

    ``metadata`` goes into the manifest beside the format, creation time and versions;
    ``write_more(folder)`` may add files (an HF model's own), sealed with the rest:
    it returns their names, recorded as ``hf_files``.
    """
    import ray

    with tempfile.TemporaryDirectory(prefix="raylift-export-") as tmp:
        torch.save(weights, os.path.join(tmp, WEIGHTS_FILE))
        torch.save(sample, os.path.join(tmp, SAMPLE_FILE))
        if write_more is not None:
            metadata = {**metadata, "hf_files": sorted(write_more(tmp))}
        manifest = {
            "format": EXPORT_FORMAT,
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            **metadata,
            "versions": {"torch": torch.__version__, "ray": ray.__version__},
        }
        sealed.seal(tmp, manifest, manifest_name=MANIFEST_NAME)
        storage.upload_dir(tmp, out_dir)
    return out_dir


def read_manifest(path: str) -> dict[str, Any]:
    """The verified manifest of a local export folder."""
    try:
        manifest = sealed.verify(path, manifest_name=MANIFEST_NAME)
    except CheckpointError as exc:
        raise ExportError(f"not a complete raylift export: {exc}") from None
    if manifest.get("format") != EXPORT_FORMAT:
        raise ExportError(f"{path}: unsupported export format {manifest.get('format')!r}")
    return manifest


def is_export(path: str) -> bool:
    """Whether ``path`` (local or a URI) has an export manifest (not verified)."""
    return storage.read_text(storage.join(path, MANIFEST_NAME)) is not None


def load_weights(path: str, device: str = "cpu") -> dict[str, torch.Tensor]:
    """An export's state_dict (local or a URI), verified, loaded weights-only."""
    with local_copy(path) as local:
        read_manifest(local)
        return read_weights(local, device)


def read_weights(local: str, device: str = "cpu") -> dict[str, torch.Tensor]:
    """The state_dict of a local export folder whose manifest was read."""
    return torch.load(os.path.join(local, WEIGHTS_FILE), weights_only=True, map_location=device)


def read_sample(local: str) -> dict[str, Any]:
    """The held-out sample (``inputs``, ``targets``) of a local export folder."""
    return torch.load(os.path.join(local, SAMPLE_FILE), weights_only=True)


class local_copy:
    """Context manager: a local folder holding ``path``'s files."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    def __enter__(self) -> str:
        if not storage.is_remote(self.path):
            return storage.local_path(self.path)
        self._tmp = tempfile.TemporaryDirectory(prefix="raylift-dl-")
        return storage.download_dir(self.path, self._tmp.name)

    def __exit__(self, *exc: object) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
