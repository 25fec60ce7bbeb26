"""The one exported-model format that joins training, tuning and serving.

``<storage>/<run>/model/`` holds:

- ``weights.pt``: the model's state_dict (``torch.load(weights_only=True)``;
  LoRA adapters merged in, so it is always the plain model's)
- ``sample.pt``: a small held-out sample of raw inputs and targets
- ``raylift-model.json``: format version, model spec (registry name or import
  path + params), data spec and :class:`DatasetInfo`, preprocessing, final
  metrics, the run's spec, versions, and every file's size and sha256.

``load_export`` rebuilds the model from that alone: no class names needed.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from raylift import storage
from raylift.data.base import DatasetInfo, PreparedData
from raylift.errors import CheckpointError, ExportError
from raylift.models.base import build_model
from raylift.models.lora import merge_lora_state_dict
from raylift.training import checkpoint as ckpt

MANIFEST_NAME = "raylift-model.json"
WEIGHTS_FILE = "weights.pt"
SAMPLE_FILE = "sample.pt"
EXPORT_FORMAT = "raylift-model/1"


def write_export(
    out_dir: str,
    *,
    weights: dict[str, torch.Tensor],
    spec: dict[str, Any],
    data: PreparedData,
    metrics: dict[str, Any],
    source_checkpoint: str | None = None,
) -> str:
    """Write an export to ``out_dir`` (a local path or a URI); returns it."""
    import ray

    with tempfile.TemporaryDirectory(prefix="raylift-export-") as tmp:
        torch.save(weights, os.path.join(tmp, WEIGHTS_FILE))
        torch.save(
            {"inputs": data.sample_raw_inputs, "targets": data.sample_targets},
            os.path.join(tmp, SAMPLE_FILE),
        )
        metadata = {
            "format": EXPORT_FORMAT,
            "name": spec["name"],
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "model": spec["model"],
            "data": spec["data"],
            "info": data.info.to_json(),
            "preprocessing": data.preprocessing,
            "metrics": metrics,
            "baselines": data.baselines,
            "spec": spec,
            "source_checkpoint": source_checkpoint,
            "versions": {"torch": torch.__version__, "ray": ray.__version__},
        }
        ckpt.seal(tmp, metadata, manifest_name=MANIFEST_NAME)
        storage.upload_dir(tmp, out_dir)
    return out_dir


def read_manifest(path: str) -> dict[str, Any]:
    """The verified manifest of a local export folder."""
    try:
        manifest = ckpt.verify(path, manifest_name=MANIFEST_NAME)
    except CheckpointError as exc:
        raise ExportError(f"not a complete raylift export: {exc}") from None
    if manifest.get("format") != EXPORT_FORMAT:
        raise ExportError(f"{path}: unsupported export format {manifest.get('format')!r}")
    return manifest


def load_weights(path: str) -> dict[str, torch.Tensor]:
    """An export's state_dict, loaded weights-only."""
    with local_copy(path) as local:
        read_manifest(local)
        return torch.load(os.path.join(local, WEIGHTS_FILE), weights_only=True, map_location="cpu")


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
        return torch.load(os.path.join(self.path, SAMPLE_FILE), weights_only=True)

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
    manifest = read_manifest(path)
    info = DatasetInfo.from_json(manifest["info"])
    spec = manifest["model"]
    model = build_model(spec.get("name"), spec.get("import_path"), spec.get("params", {}), info)
    weights = torch.load(os.path.join(path, WEIGHTS_FILE), weights_only=True, map_location=device)
    model.load_state_dict(weights)
    model.to(device).eval()
    return ExportedModel(path=path, manifest=manifest, model=model, info=info)


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


def plain_weights(
    weights: dict[str, torch.Tensor], spec: dict[str, Any]
) -> dict[str, torch.Tensor]:
    """A training state's model weights as the plain model's (LoRA merged in)."""
    lora = (spec.get("finetune") or {}).get("lora")
    return merge_lora_state_dict(weights, lora) if lora else weights


def export_from_checkpoint(checkpoint_dir: str, out_dir: str, data: PreparedData) -> dict[str, Any]:
    """Export the model in a (local, verified) training checkpoint folder.

    A sharded (FSDP) checkpoint is gathered into the full model; LoRA adapters
    (``finetune.lora``) are merged into the weights: the export is the plain model.
    """
    state = ckpt.load_state(checkpoint_dir)
    spec = json.loads(state["spec"])
    metrics = json.loads(state["metrics"])
    if state.get("sharded"):  # FSDP: gather every rank's shards into the full model
        from raylift.training.sharding import load_full_model_state

        weights = load_full_model_state(checkpoint_dir)
    else:
        weights = state["model"]
    write_export(
        out_dir,
        weights=plain_weights(weights, spec),
        spec=spec,
        data=data,
        metrics=metrics,
        source_checkpoint=os.path.basename(checkpoint_dir.rstrip("/")),
    )
    return metrics
