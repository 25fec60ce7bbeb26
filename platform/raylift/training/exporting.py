"""A training checkpoint -> the export format (``raylift.artifacts.export``).

A sharded (FSDP) checkpoint is gathered into the full model; LoRA adapters
(``finetune.lora``) are merged into the weights: the export is the plain model.
"""

from __future__ import annotations

import json
import os
from typing import Any

import torch

from raylift.artifacts import checkpoints
from raylift.artifacts.export import write_export
from raylift.data.base import PreparedData
from raylift.models.lora import merge_lora_state_dict
from raylift.specs.resolve import ResolvedJob, load_resolved


def write_model_export(
    out_dir: str,
    *,
    weights: dict[str, torch.Tensor],
    job: ResolvedJob,
    data: PreparedData,
    metrics: dict[str, Any],
    source_checkpoint: str | None = None,
) -> str:
    """Write the export of a model trained by ``job`` on ``data``; returns ``out_dir``.

    An HF model's export is also a standard HF model directory (``hf_directory``).
    """
    spec = job.as_json()
    write_more = None
    if job.model.name == "hf":

        def write_more(folder: str) -> list[str]:
            return hf_directory(job, data, weights, folder)

    return write_export(
        out_dir,
        weights=weights,
        write_more=write_more,
        sample={"inputs": data.sample_raw_inputs, "targets": data.sample_targets},
        metadata={
            "name": job.name,
            "model": job.model.model_dump(mode="json"),
            "data": job.data.model_dump(mode="json"),
            "info": data.info.to_json(),
            "preprocessing": data.preprocessing,
            "metrics": metrics,
            "baselines": data.baselines,
            "spec": spec,
            "objective": job.objective.model_dump() if job.train.metric else None,
            "source_checkpoint": source_checkpoint,
        },
    )


def hf_directory(
    job: ResolvedJob, data: PreparedData, weights: dict[str, torch.Tensor], folder: str
) -> list[str]:
    """The trained HF model's own files in ``folder`` (config.json, model.safetensors...)."""
    from raylift.models.base import build_model
    from raylift.models.hf import save_pretrained

    model = build_model(job.model.name, job.model.import_path, job.model.params, data.info)
    model.load_state_dict(weights)
    return save_pretrained(model, folder)


def plain_weights(weights: dict[str, torch.Tensor], job: ResolvedJob) -> dict[str, torch.Tensor]:
    """A training state's model weights as the plain model's (LoRA merged in)."""
    lora = job.finetune.lora if job.finetune is not None else None
    return merge_lora_state_dict(weights, lora.model_dump()) if lora is not None else weights


def export_from_checkpoint(checkpoint_dir: str, out_dir: str, data: PreparedData) -> dict[str, Any]:
    """Export the model in a (local, verified) training checkpoint folder; its metrics."""
    state = checkpoints.load_state(checkpoint_dir)
    job = load_resolved(state["spec"])
    metrics = json.loads(state["metrics"])
    if state.get("sharded"):  # FSDP: gather every rank's shards into the full model
        from raylift.training.sharding import load_full_model_state

        weights = load_full_model_state(checkpoint_dir)
    else:
        weights = state["model"]
    write_model_export(
        out_dir,
        weights=plain_weights(weights, job),
        job=job,
        data=data,
        metrics=metrics,
        source_checkpoint=os.path.basename(checkpoint_dir.rstrip("/")),
    )
    return metrics
