"""Load an export (``raylift.artifacts.export``) back into a model in eval mode."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from raylift import storage
from raylift.artifacts import export as files
from raylift.data.base import DatasetInfo
from raylift.errors import ExportError
from raylift.models.base import build_model


@dataclass
class ExportedModel:
    """A loaded export: the model in eval mode plus everything to use it."""

    path: str
    manifest: dict[str, Any]
    model: nn.Module
    info: DatasetInfo

    @property
    def preprocessing(self) -> dict[str, Any]:
        return self.manifest["preprocessing"]

    @property
    def metrics(self) -> dict[str, Any]:
        return self.manifest["metrics"]

    def sample(self) -> dict[str, Any]:
        return files.read_sample(self.path)

    @torch.no_grad()
    def logits(self, raw: Any) -> torch.Tensor:
        """Model output for raw inputs (preprocessed as in training)."""
        from raylift.data.preprocessing import preprocess

        return self.model(preprocess(self.preprocessing, raw))

    def predict(self, raw: Any) -> torch.Tensor:
        """Class indices (classification) or next-token ids per position (LM)."""
        return self.logits(raw).argmax(-1)


def load_export(path: str, device: str = "cpu") -> ExportedModel:
    """Rebuild the model from an export folder (local; download URIs first)."""
    path = os.path.expanduser(storage.local_path(path))
    if not os.path.isdir(path):
        raise ExportError(f"{path}: no such export folder")
    manifest = files.read_manifest(path)
    info = DatasetInfo.from_json(manifest["info"])
    spec = manifest["model"]
    params = spec.get("params", {})
    if spec.get("name") == "hf" and manifest.get("hf_files"):
        # The export is an HF model directory itself: no need for the run's source.
        params = {**params, "path": path, "config": None, "config_path": None}
    model = build_model(spec.get("name"), spec.get("import_path"), params, info)
    model.load_state_dict(files.read_weights(path, device))
    model.to(device).eval()
    return ExportedModel(path=path, manifest=manifest, model=model, info=info)
