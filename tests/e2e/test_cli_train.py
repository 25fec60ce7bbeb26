"""The CLI as a user runs it, on the shipped spec, with its own embedded Ray."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from raylift.data import load_dataset
from raylift.data.preprocessing import preprocess
from raylift.training.export import load_export

ROOT = Path(__file__).resolve().parents[2]
RAYLIFT = str(Path(sys.executable).parent / "raylift")

pytestmark = pytest.mark.slow


def raylift(*args: str, storage: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RAYLIFT_STORAGE_PATH": str(storage)}
    return subprocess.run(
        [RAYLIFT, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_train_digits_mlp_exports_a_model_that_predicts(tmp_path: Path) -> None:
    storage = tmp_path / "runs"
    done = raylift("train", "jobs/digits-mlp.yaml", storage=storage)
    assert done.returncode == 0, done.stderr[-3000:]
    export_dir = storage / "digits-mlp" / "model"
    assert f"exported model: {export_dir}" in done.stdout
    assert "best val_accuracy" in done.stdout and "Traceback" not in done.stderr

    exported = load_export(str(export_dir))
    assert exported.metrics["val_accuracy"] >= 0.95
    # Predict the whole validation split from raw pixels, as a client would send them.
    data = load_dataset("digits", {}, val_fraction=0.2, seed=0)
    mean = torch.tensor(exported.preprocessing["mean"])
    std = torch.tensor(exported.preprocessing["std"])
    raw = (data.val_inputs * std + mean).round()  # back to the 0..16 pixel values
    predicted = exported.predict(raw.tolist())
    assert float((predicted == data.val_targets).float().mean()) >= 0.95
    assert preprocess(exported.preprocessing, raw[:2].tolist()).shape == (2, 64)

    listed = raylift("runs", "list", storage=storage)
    assert listed.returncode == 0 and "digits-mlp" in listed.stdout and "succeeded" in listed.stdout
    shown = raylift("runs", "show", "digits-mlp", "--json", storage=storage)
    record = json.loads(shown.stdout)
    assert record["status"] == "succeeded" and record["export"] == str(export_dir)

    again = raylift("train", "jobs/digits-mlp.yaml", storage=storage)
    assert again.returncode == 2 and "--resume" in again.stderr
