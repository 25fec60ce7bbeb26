"""training/exporting.py: an HF model's export is a standard HF model directory too."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from raylift.artifacts.export import read_manifest
from raylift.artifacts.sealed import verify
from raylift.data.base import load_dataset
from raylift.errors import CheckpointError
from raylift.models.base import build_model
from raylift.models.exported import load_export
from raylift.specs import spec_from_dict
from raylift.specs.resolve import resolve
from raylift.testing.specs import TINY_LLAMA
from raylift.training.exporting import write_model_export

LLAMA = {**TINY_LLAMA, "tie_word_embeddings": True}


def test_an_hf_export_loads_in_plain_transformers_with_the_same_outputs(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    text = {"corpus": "licenses", "context_length": 32}
    job = resolve(
        spec_from_dict(
            {
                "name": "hf-export",
                "model": {"name": "hf", "params": {"config": LLAMA}},
                "data": {"name": "text", "params": text},
                "train": {"max_steps": 1, "epochs": None},
            }
        )
    ).for_task("language_modeling")
    data = load_dataset("text", job.data.params, val_fraction=0.1, seed=0)
    torch.manual_seed(3)
    trained = build_model("hf", None, job.model.params, data.info).eval()
    out = tmp_path / "model"
    write_model_export(
        str(out), weights=trained.state_dict(), job=job, data=data, metrics={"step": 1}
    )

    manifest = read_manifest(str(out))
    assert {"config.json", "model.safetensors", "generation_config.json"} <= set(
        manifest["hf_files"]
    )
    assert set(manifest["hf_files"]) <= set(manifest["files"])  # sealed with the rest
    ids = data.val_inputs[:2]
    with torch.no_grad():
        expected = trained(ids)
        plain = AutoModelForCausalLM.from_pretrained(str(out)).eval()
        torch.testing.assert_close(plain(input_ids=ids).logits, expected)
        exported = load_export(str(out))  # from the export's own HF files
        torch.testing.assert_close(exported.model(ids), expected)
    assert plain.lm_head.weight.data_ptr() == plain.model.embed_tokens.weight.data_ptr()

    (out / "model.safetensors").write_bytes(b"tampered")
    with pytest.raises(CheckpointError, match=r"model\.safetensors"):
        verify(str(out), manifest_name="raylift-model.json")
