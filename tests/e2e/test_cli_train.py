"""The CLI as a user runs it, on the shipped spec, with its own embedded Ray."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from raylift.data import load_dataset
from raylift.data.preprocessing import preprocess
from raylift.models.exported import load_export
from raylift.testing.process_groups import kill_process_group_and_its_ray

ROOT = Path(__file__).resolve().parents[2]
RAYLIFT = str(Path(sys.executable).parent / "raylift")

pytestmark = pytest.mark.slow


def raylift(*args: str, storage: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RAYLIFT_STORAGE_PATH": str(storage)}
    return subprocess.run(
        [RAYLIFT, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


# The shipped spec, shortened: 12 epochs (264 steps) reach >= 0.95; a checkpoint every 2.
SHORTER = ["--set", "train.epochs=12", "--set", "train.checkpoint_every_epochs=2"]


def test_a_killed_driver_resumes_and_the_export_predicts(tmp_path: Path) -> None:
    """Issue 3.5: the `raylift train` process dies; the same spec with --resume continues
    and finishes the job; its export predicts raw client input; runs/report show it."""
    storage = tmp_path / "runs"
    env = {**os.environ, "RAYLIFT_STORAGE_PATH": str(storage)}
    output = (tmp_path / "first.log").open("w")
    started = time.time()
    first = subprocess.Popen(
        [RAYLIFT, "train", "jobs/digits-mlp.yaml", *SHORTER],
        cwd=ROOT,
        env=env,
        stdout=output,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: the driver and its embedded Ray
    )
    run_dir = storage / "digits-mlp"
    try:
        deadline = time.monotonic() + 240
        sealed: list[Path] = []
        while not sealed and first.poll() is None and time.monotonic() < deadline:
            sealed = list(run_dir.glob("checkpoint_*/manifest.json"))
            time.sleep(0.1)
        log = (tmp_path / "first.log").read_text()[-3000:]
        assert sealed and first.poll() is None, f"no checkpoint while running: {log}"
    finally:
        kill_process_group_and_its_ray(first, started)  # the driver dies with its Ray
        output.close()
    record = json.loads((run_dir / "raylift-run.json").read_text())
    assert record["status"] == "running"  # nobody was left to say otherwise

    resumed = raylift("train", "jobs/digits-mlp.yaml", *SHORTER, "--resume", storage=storage)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Traceback" not in resumed.stderr
    first_checkpoint = int(sealed[0].parent.name.split("_")[1])
    record = json.loads((run_dir / "raylift-run.json").read_text())
    assert record["status"] == "succeeded" and record["attempts"] == 2
    assert record["metrics"]["step"] == 264  # 12 epochs of 1,437 samples, 64 a step
    resumed_from = record["recoveries"][-1]["resumed_from_step"]
    assert resumed_from >= first_checkpoint
    assert f"resumed from step {resumed_from}" in resumed.stdout
    export_dir = run_dir / "model"
    assert f"exported model: {export_dir}" in resumed.stdout
    assert "best val_accuracy" in resumed.stdout

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
    assert json.loads(shown.stdout)["export"] == str(export_dir)
    # Issue 9.4: peak memory per worker, in the run's summary and in `runs show`.
    assert "peak memory per worker (CPU RSS, MiB)" in resumed.stdout
    shown = raylift("runs", "show", "digits-mlp", storage=storage)
    assert "peak memory per worker (CPU RSS, MiB)" in shown.stdout, shown.stdout
    # Every report is in the run's history (metrics.jsonl), across both attempts.
    history = [json.loads(line) for line in (run_dir / "metrics.jsonl").open()]
    assert history[-1]["step"] == record["metrics"]["step"] and len(history) >= 5
    drawn = raylift("report", str(run_dir), storage=storage)
    assert drawn.returncode == 0, drawn.stderr
    assert (run_dir / "report" / "run.png").stat().st_size > 10_000
    assert "best val_accuracy" in (run_dir / "report" / "report.md").read_text()

    again = raylift("train", "jobs/digits-mlp.yaml", storage=storage)
    assert again.returncode == 2 and "--resume" in again.stderr
