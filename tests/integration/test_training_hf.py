"""Real local Ray: a tiny HF Llama (model: hf, from a config) trained on the builtin
byte-level text by 2 gloo workers, with DDP and then FSDP2; each run exports, and
the export loads back through load_export."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from raylift.models.exported import load_export
from raylift.specs import spec_from_dict
from raylift.testing.specs import TINY_LLAMA
from raylift.training.driver import run_training

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_local")]

LLAMA = dict(TINY_LLAMA)
UNIFORM = math.log(256)


def _spec(storage: Path, name: str, config: dict[str, Any], **extra: Any) -> dict[str, Any]:
    train = extra.pop("train", {})
    return {
        "name": name,
        "model": {"name": "hf", "params": {"config": config}},
        "data": {
            "name": "text",
            "params": {"corpus": "licenses", "context_length": 32},
            "batch_size": 16,
            "val_fraction": 0.1,
        },
        "train": {
            "epochs": None,
            "max_steps": 80,
            "lr": 0.01,
            "warmup_steps": 5,
            "checkpoint_every_steps": 40,
            "checkpoint_every_epochs": None,
            "log_every_steps": 10,
            "max_val_batches": 4,
            **train,
        },
        "scaling": {"min_workers": 2, "max_workers": 2, **extra.pop("scaling", {})},
        "storage": {"path": str(storage)},
        **extra,
    }


def _sample_loss(exported: Any) -> float:
    sample = exported.sample()
    with torch.no_grad():
        logits = exported.logits(sample["inputs"])
    return float(F.cross_entropy(logits.flatten(0, 1), sample["targets"].flatten()))


def test_an_hf_llama_trains_with_ddp_then_fsdp_and_its_exports_reload(tmp_path: Path) -> None:
    ddp = run_training(spec_from_dict(_spec(tmp_path, "hf-ddp", LLAMA)))
    assert ddp.metrics["step"] == 80
    # Below the uniform log(256) by far, and below the unigram baseline (~3.18 here).
    assert ddp.best_metrics["val_loss"] < ddp.best_metrics["unigram_loss"] - 0.1, ddp.best_metrics
    exported = load_export(ddp.export_dir)
    assert exported.manifest["model"]["name"] == "hf"
    assert type(exported.model.hf).__name__ == "LlamaForCausalLM"
    loss = _sample_loss(exported)
    assert math.isfinite(loss) and loss < UNIFORM - 1.0
    prompt = torch.tensor([list(b"License ")])
    greedy = exported.model.generate(prompt, 4, temperature=0.0)
    assert greedy.shape == (1, 12) and int(greedy.max()) < 256

    # FSDP2 (each decoder layer a unit, then the root), HF activation checkpointing,
    # and tied embeddings: the root keeps embed_tokens and lm_head together.
    tied = {**LLAMA, "tie_word_embeddings": True}
    fsdp = run_training(
        spec_from_dict(
            _spec(
                tmp_path,
                "hf-fsdp",
                tied,
                train={"activation_checkpointing": True},
                scaling={"strategy": "fsdp"},
            )
        )
    )
    assert fsdp.metrics["step"] == 80
    assert fsdp.best_metrics["val_loss"] < fsdp.best_metrics["unigram_loss"], fsdp.best_metrics
    run_dir = Path(fsdp.run_dir)
    newest = max(p for p in run_dir.glob("checkpoint_*") if p.is_dir())
    assert {".metadata", "__0_0.distcp", "__1_0.distcp"} <= {p.name for p in newest.iterdir()}
    sharded = load_export(fsdp.export_dir)  # the gathered, plain model
    hf = sharded.model.hf
    assert hf.lm_head.weight is hf.model.embed_tokens.weight
    assert set(sharded.model.state_dict()) <= set(exported.model.state_dict())
    loss = _sample_loss(sharded)
    assert math.isfinite(loss) and loss < UNIFORM - 1.0
