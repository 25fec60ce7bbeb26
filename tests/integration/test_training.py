"""Real local Ray: 2-worker TorchTrainer on gloo; checkpoints; resume; export."""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from metrics_scrape import scrape_metric

from raylift.errors import TrainingError
from raylift.specs import spec_from_dict
from raylift.training.export import load_export
from raylift.training.loop import FAULT_ENV
from raylift.training.runs import RunRecord
from raylift.training.trainer import run_training

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_local")]


def digits_spec(storage: Path, name: str, **train: Any) -> dict[str, Any]:
    return {
        "name": name,
        "model": {"name": "mlp", "params": {"hidden_sizes": [64]}},
        "data": {"name": "digits", "batch_size": 32},
        "train": {
            "epochs": 6,
            "lr": 0.005,
            "warmup_steps": 10,
            "log_every_steps": 10,
            "checkpoint_every_epochs": 3,
            **train,
        },
        "scaling": {"min_workers": 2, "max_workers": 2},
        "storage": {"path": str(storage)},
    }


# Checkpoint cadence does not change the training math: the reference run
# checkpoints every 20 steps so that the crash tests below can compare to it.
EVERY_20_STEPS = {"checkpoint_every_steps": 20, "checkpoint_every_epochs": None}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One uninterrupted 2-worker digits run, shared by the tests that compare to it."""
    storage = tmp_path_factory.mktemp("reference")
    events: list[dict[str, Any]] = []
    spec = spec_from_dict(digits_spec(storage, "digits", **EVERY_20_STEPS))
    outcome = run_training(spec, on_event=events.append)
    return {"spec": spec, "outcome": outcome, "events": events, "storage": storage}


def test_two_workers_train_digits_and_export(reference: dict[str, Any]) -> None:
    outcome, events = reference["outcome"], reference["events"]

    assert outcome.best_metrics["val_accuracy"] >= 0.9
    assert {e["world_size"] for e in events} == {2}
    steps = [e["step"] for e in events]
    assert steps == sorted(steps) and steps[-1] == outcome.metrics["step"] == 6 * 22
    assert all(e["samples_per_s"] > 0 for e in events)

    record = RunRecord.load(outcome.run_dir)
    assert record is not None and record.status == "succeeded"
    assert record.best_metric["name"] == "val_accuracy"

    exported = load_export(outcome.export_dir)
    sample = exported.sample()
    accuracy = (exported.predict(sample["inputs"]) == sample["targets"]).float().mean()
    assert float(accuracy) >= 0.85
    assert exported.manifest["preprocessing"]["type"] == "standardize"

    # The driver's gauges, as Prometheus would scrape them (issue 7.1).
    def gauge(name: str, expected: float, **labels: str) -> float | None:
        return scrape_metric(
            f"ray_raylift_train_{name}", until=lambda v: v == pytest.approx(expected), **labels
        )

    last_val = [e["val_accuracy"] for e in events if "val_accuracy" in e][-1]
    assert gauge("step", 6 * 22, run="digits") == 6 * 22
    assert gauge("epoch", 6, run="digits") == 6
    assert gauge("world_size", 2, run="digits") == 2
    val = gauge("val_metric", last_val, run="digits", metric="val_accuracy")
    assert val == pytest.approx(last_val)
    written = [e for e in events if "checkpoint_bytes" in e]
    assert written and all(e["checkpoint_bytes"] > 10_000 for e in written)
    size = gauge("checkpoint_bytes", written[-1]["checkpoint_bytes"], run="digits")
    assert size == written[-1]["checkpoint_bytes"]


def test_crash_resume_skips_a_half_written_checkpoint_and_matches_the_uninterrupted_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reference: dict[str, Any]
) -> None:
    spec = spec_from_dict(
        {**digits_spec(tmp_path, "crashy", **EVERY_20_STEPS), "failure": {"max_failures": 0}}
    )
    monkeypatch.setenv(FAULT_ENV, "50")
    with pytest.raises(TrainingError, match="injected failure at step 50"):
        run_training(spec)
    record = RunRecord.load(spec.run_dir)
    assert record is not None and record.status == "failed"
    assert record.error is not None and "injected failure at step 50" in record.error
    run_dir = Path(spec.run_dir)
    kept = sorted(p.name for p in run_dir.glob("checkpoint_*") if p.is_dir())
    assert kept == ["checkpoint_00000020", "checkpoint_00000040"]  # failures keep them
    # A preemption checkpoint at step 50 cut off mid-write (so Ray never registered
    # it): its state is there, the manifest that seals it is not.
    torn = run_dir / "checkpoint_00000050"
    shutil.copytree(run_dir / kept[-1], torn)
    (torn / "manifest.json").unlink()
    # And step 40, which Ray did register (its snapshot lists it), was damaged on
    # storage afterwards: Ray will prune that folder later.
    assert kept[-1] in (run_dir / "checkpoint_manager_snapshot.json").read_text()
    (run_dir / kept[-1] / "manifest.json").unlink()

    monkeypatch.delenv(FAULT_ENV)
    events: list[dict[str, Any]] = []
    resumed = run_training(spec, resume=True, on_event=events.append)

    assert events[0]["resumed_from_step"] == 20, "did not resume from the newest sealed one"
    assert events[0]["restarts"] == 1
    assert not torn.exists(), "the half-written checkpoint was left behind"
    # Ray pruned its damaged step 40 without losing a checkpoint written since.
    left = [p for p in run_dir.glob("checkpoint_*") if p.is_dir()]
    assert left and all((p / "manifest.json").exists() for p in left), left
    expected = reference["outcome"].metrics
    assert resumed.metrics["step"] == expected["step"]
    assert resumed.metrics["samples_seen"] == expected["samples_seen"]
    assert resumed.metrics["lr"] == pytest.approx(expected["lr"], abs=1e-9)
    assert resumed.metrics["val_loss"] == pytest.approx(expected["val_loss"], rel=1e-3)
    record = RunRecord.load(spec.run_dir)
    assert record is not None and record.status == "succeeded" and record.attempts == 2
    [recovery] = record.recoveries
    assert recovery["resumed_from_step"] == 20 and recovery["steps_lost"] == 30


def test_restart_resumes_from_the_checkpoint_reported_just_before_the_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = spec_from_dict(
        digits_spec(tmp_path, "late", epochs=3, log_every_steps=5, **EVERY_20_STEPS)
    )
    monkeypatch.setenv(FAULT_ENV, "41")  # one step after the checkpoint at 40
    events: list[dict[str, Any]] = []
    outcome = run_training(spec, on_event=events.append)
    recoveries = [e["recovery"] for e in events if "recovery" in e]
    assert [r["resumed_from_step"] for r in recoveries] == [40]
    assert recoveries[0]["steps_lost"] <= 20 and recoveries[0]["to_workers"] == 2
    assert outcome.metrics["step"] == 3 * 22
    record = RunRecord.load(spec.run_dir)
    assert record is not None and record.recoveries == recoveries
    restarts = scrape_metric("ray_raylift_train_restarts_total", run="late")
    assert restarts == 1.0
    lost = recoveries[0]["steps_lost"]
    if lost:  # a counter that was never incremented is not exported
        assert scrape_metric("ray_raylift_train_steps_lost_total", run="late") == float(lost)


def test_existing_run_needs_resume_or_overwrite(tmp_path: Path, reference: dict[str, Any]) -> None:
    from raylift.errors import StorageError

    shutil.copytree(reference["storage"] / "digits", tmp_path / "digits")
    spec = spec_from_dict(digits_spec(tmp_path, "digits", epochs=1, checkpoint_every_epochs=1))
    with pytest.raises(StorageError, match="--resume"):
        run_training(spec)
    outcome = run_training(spec, overwrite=True)
    assert outcome.metrics["step"] == 22
    record = RunRecord.load(spec.run_dir)
    assert record is not None and record.attempts == 1 and record.status == "succeeded"
    steps = sorted(p.name for p in Path(spec.run_dir).glob("checkpoint_*") if p.is_dir())
    assert steps == ["checkpoint_00000022"], "the old run's checkpoints survived --overwrite"


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    storage = tmp_path_factory.mktemp("lm")
    spec = spec_from_dict(
        {
            "name": "lm",
            "model": {"name": "gpt", "params": {"num_layers": 1, "num_heads": 2, "embed_dim": 64}},
            "data": {
                "name": "text",
                "params": {"context_length": 32, "max_bytes": 120_000},
                "batch_size": 32,
                "val_fraction": 0.1,
            },
            "train": {
                "epochs": None,
                "max_steps": 150,
                "lr": 0.003,
                "warmup_steps": 10,
                "checkpoint_every_steps": 75,
                "checkpoint_every_epochs": None,
                "log_every_steps": 25,
                "max_val_batches": 5,
            },
            "storage": {"path": str(storage)},
        }
    )
    outcome = run_training(spec)
    return storage, outcome.best_metrics


def test_tiny_gpt_beats_the_unigram_baseline(pretrained: tuple[Path, dict[str, Any]]) -> None:
    _, best = pretrained
    assert best["val_loss"] < best["unigram_loss"] - 0.2
    assert best["val_perplexity"] == pytest.approx(math.exp(best["val_loss"]), rel=1e-6)
    assert best["tokens_per_s"] > 0


def test_finetune_initialises_from_the_pretrained_export(
    pretrained: tuple[Path, dict[str, Any]],
) -> None:
    storage, _ = pretrained
    before = load_export(str(storage / "lm" / "model"))
    spec = spec_from_dict(
        {
            "name": "ft",
            "init_from": "lm",  # a run name under storage.path; model comes from its export
            "data": {
                "name": "text",
                "params": {"corpus": "licenses", "context_length": 32},
                "batch_size": 16,
            },
            "train": {
                "epochs": None,
                "max_steps": 4,
                "lr": 1e-7,
                "checkpoint_every_epochs": None,
                "log_every_steps": 2,
                "max_val_batches": 2,
            },
            "storage": {"path": str(storage)},
        }
    )
    outcome = run_training(spec)
    after = load_export(outcome.export_dir)
    assert after.manifest["model"] == before.manifest["model"]
    for (name, a), (_, b) in zip(
        before.model.state_dict().items(), after.model.state_dict().items(), strict=True
    ):
        assert torch.allclose(a, b, atol=1e-4), name
    assert after.manifest["data"]["params"]["corpus"] == "licenses"


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_tabular_csv_with_mixed_precision_and_accumulation(tmp_path: Path, precision: str) -> None:
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame
    csv = tmp_path / "cancer.csv"
    frame.to_csv(csv, index=False)
    events: list[dict[str, Any]] = []
    spec = spec_from_dict(
        {
            "name": f"cancer-{precision}",
            "model": {"name": "mlp", "params": {"hidden_sizes": [32]}},
            "data": {
                "name": "tabular",
                "params": {"path": str(csv), "label": "target"},
                "batch_size": 16,
            },
            "train": {
                "epochs": 4,
                "lr": 0.01,
                "precision": precision,
                "grad_accum_steps": 2,
                "checkpoint_every_epochs": 2,
                "log_every_steps": 5,
            },
            "storage": {"path": str(tmp_path / "runs")},
        }
    )
    outcome = run_training(spec, on_event=events.append)
    assert events[0]["global_batch"] == 16 * 2 * 2
    assert outcome.best_metrics["val_accuracy"] >= 0.85
    exported = load_export(outcome.export_dir)
    assert exported.manifest["preprocessing"]["class_labels"] == [0, 1]
    assert len(exported.manifest["preprocessing"]["features"]) == 30
