"""Real exports for serving tests, trained in-process in a few seconds (no Ray Train).

``make_export`` trains the spec's model on its data set with plain torch and
writes a genuine export with ``write_model_export`` (the same format ``raylift
train`` writes: weights, held-out raw sample, manifest with checksums), so the
serving code under test loads exactly what a user's run would give it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from raylift.data.base import load_dataset
from raylift.models.base import build_model
from raylift.specs import spec_from_dict
from raylift.specs.resolve import resolve
from raylift.training.exporting import write_model_export


def digits_spec(name: str = "digits-test", hidden_sizes: list[int] | None = None) -> dict[str, Any]:
    """A small digits MLP job spec (as a dict), for ``make_export``."""
    return {
        "name": name,
        "model": {"name": "mlp", "params": {"hidden_sizes": hidden_sizes or [64]}},
        "data": {"name": "digits", "batch_size": 64},
        "train": {"epochs": 1, "lr": 0.01},
    }


def gpt_spec(name: str = "gpt-test") -> dict[str, Any]:
    """A one-layer GPT job spec (as a dict) on the python-docs corpus, for ``make_export``."""
    return {
        "name": name,
        "model": {
            "name": "gpt",
            "params": {"num_layers": 1, "num_heads": 2, "embed_dim": 32},
        },
        "data": {"name": "text", "params": {"corpus": "python-docs", "context_length": 32}},
        "train": {"epochs": None, "max_steps": 10, "metric": "val_loss", "mode": "min"},
    }


def make_export(
    out_dir: Path,
    spec_dict: dict[str, Any],
    steps: int = 300,
    lr: float = 0.01,
    tamper: Callable[[torch.nn.Module, Any], None] | None = None,
) -> Path:
    """Train ``spec_dict``'s model for ``steps`` Adam steps and export it to ``out_dir``.

    ``tamper(model, data)`` may change the trained model before it is exported.
    """
    spec = spec_from_dict(spec_dict).model_dump(mode="json")
    data_spec = spec["data"]
    data = load_dataset(
        data_spec["name"],
        data_spec.get("params"),
        val_fraction=data_spec["val_fraction"],
        seed=spec["train"]["seed"],
    )
    torch.manual_seed(0)
    model_spec = spec["model"]
    model = build_model(
        model_spec.get("name"), model_spec.get("import_path"), model_spec["params"], data.info
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    batch = data_spec["batch_size"]
    generator = torch.Generator().manual_seed(0)
    for _ in range(steps):
        index = torch.randint(0, data.num_train, (batch,), generator=generator)
        logits = model(data.train_inputs[index])
        targets = data.train_targets[index]
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    if tamper is not None:
        tamper(model, data)
    with torch.no_grad():
        logits = model(data.val_inputs)
        accuracy = float((logits.argmax(-1) == data.val_targets).float().mean())
    write_model_export(
        str(out_dir),
        weights=model.state_dict(),
        job=resolve(spec_from_dict(spec_dict)),
        data=data,
        metrics={"val_accuracy": accuracy, "step": steps},
    )
    return out_dir
