"""Spec files for tests: a minimal job, a sweep over a shipped job, the error a bad one gives."""

from __future__ import annotations

from pathlib import Path

import yaml

from raylift.errors import SpecError
from raylift.specs import check_runnable, load_spec
from raylift.testing import REPO_ROOT

MINIMAL_JOB = """\
name: t
model: {name: mlp}
data: {name: digits}
"""
DIGITS_JOB = REPO_ROOT / "jobs" / "digits-mlp.yaml"


def write(tmp_path: Path, text: str, name: str = "job.yaml") -> Path:
    """``text`` as the file ``tmp_path/name``."""
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(tmp_path: Path, text: str, overrides: list[str] | None = None) -> SpecError:
    """The SpecError a job spec ``text`` gives when loaded and checked as ``raylift train`` does."""
    path = write(tmp_path, text)
    try:
        check_runnable(load_spec(path, overrides), file=str(path))
    except SpecError as exc:
        return exc
    raise AssertionError(f"no SpecError for:\n{text}")


def write_sweep(tmp_path: Path, **changes: object) -> str:
    """A one-key sweep over the shipped digits job (one worker per trial), with ``changes``."""
    data: dict[str, object] = {
        "kind": "sweep",
        "name": "s",
        "base": str(DIGITS_JOB),
        "space": {"train.lr": {"loguniform": [0.001, 0.01]}},
        "trial": {"scaling.min_workers": 1, "scaling.max_workers": 1},
    }
    data.update(changes)
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


# A two-block gpt and LoRA settings small enough for unit tests.
TINY_GPT = {"num_layers": 2, "num_heads": 2, "embed_dim": 32}
LORA = {"rank": 4, "alpha": 8.0, "dropout": 0.0}


def lora_job() -> dict[str, object]:
    """A validated job mapping: the tiny gpt fine-tuned with LoRA on the licenses corpus."""
    from raylift.specs import spec_from_dict

    spec = spec_from_dict(
        {
            "name": "lora-test",
            "model": {"name": "gpt", "params": TINY_GPT},
            "data": {"name": "text", "params": {"corpus": "licenses", "context_length": 32}},
            "train": {"max_steps": 3, "epochs": None},
            "finetune": {"lora": {"rank": LORA["rank"], "alpha": LORA["alpha"]}},
        }
    )
    return spec.model_dump(mode="json")


# A Llama-architecture HF config small enough for unit tests (byte-level vocabulary).
TINY_LLAMA: dict[str, object] = {
    "model_type": "llama",
    "vocab_size": 256,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 64,
}
