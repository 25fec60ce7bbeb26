"""Real local Ray: 2-worker TorchTrainer on gloo; checkpoints; resume; export."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from raylift.artifacts.checkpoints import step_of as resume_step
from raylift.artifacts.runs import RunRecord
from raylift.errors import TrainingError
from raylift.models.exported import load_export
from raylift.specs import spec_from_dict
from raylift.testing.metrics_scrape import scrape_metric
from raylift.training.driver import run_training
from raylift.training.loop import FAULT_ENV

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
    # Issue 9.4: every worker's peak memory (CPU RSS here: torch alone is > 100 MiB).
    assert record.peak_memory is not None and record.peak_memory["kind"] == "cpu_rss"
    assert len(record.peak_memory["per_worker"]) == 2
    assert all(b > 100 * 2**20 for b in record.peak_memory["per_worker"])
    assert record.peak_memory["max"] == max(record.peak_memory["per_worker"])
    assert outcome.peak_memory == record.peak_memory

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


def test_overwrite_replaces_an_old_run_and_a_restart_resumes_from_the_last_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reference: dict[str, Any]
) -> None:
    """An existing run needs --resume or --overwrite; --overwrite leaves none of the old
    run's checkpoints. Within the new run, a failure one step after a checkpoint resumes
    from that checkpoint (reported just before the failure, maybe not yet registered)."""
    from raylift.errors import StorageError

    shutil.copytree(reference["storage"] / "digits", tmp_path / "late")
    spec = spec_from_dict(
        digits_spec(tmp_path, "late", epochs=3, log_every_steps=5, **EVERY_20_STEPS)
    )
    with pytest.raises(StorageError, match="--resume"):
        run_training(spec)
    monkeypatch.setenv(FAULT_ENV, "41")  # one step after the checkpoint at 40
    events: list[dict[str, Any]] = []
    outcome = run_training(spec, overwrite=True, on_event=events.append)
    recoveries = [e["recovery"] for e in events if "recovery" in e]
    assert [r["resumed_from_step"] for r in recoveries] == [40]
    assert recoveries[0]["steps_lost"] <= 20 and recoveries[0]["to_workers"] == 2
    assert outcome.metrics["step"] == 3 * 22
    record = RunRecord.load(spec.run_dir)
    assert record is not None and record.recoveries == recoveries
    assert record.attempts == 1 and record.status == "succeeded"
    steps = [resume_step(p.name) for p in Path(spec.run_dir).glob("checkpoint_*") if p.is_dir()]
    assert steps and max(steps) == 3 * 22, "the old run's checkpoints survived --overwrite"
    restarts = scrape_metric("ray_raylift_train_restarts_total", run="late")
    assert restarts == 1.0
    lost = recoveries[0]["steps_lost"]
    if lost:  # a counter that was never incremented is not exported
        assert scrape_metric("ray_raylift_train_steps_lost_total", run="late") == float(lost)


GPT_SPEC = {
    "model": {"name": "gpt", "params": {"num_layers": 1, "num_heads": 2, "embed_dim": 64}},
    "data": {
        "name": "text",
        "params": {"context_length": 32, "max_bytes": 120_000},
        "batch_size": 16,
        "val_fraction": 0.1,
    },
}


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """Issue 9: the gpt pretrained with FSDP over 2 workers, bf16 autocast, activation
    checkpointing and a global batch stated in tokens (2 micro-batches per step)."""
    storage = tmp_path_factory.mktemp("lm")
    spec = spec_from_dict(
        {
            "name": "lm",
            **GPT_SPEC,
            "train": {
                "epochs": None,
                "max_steps": 150,
                "lr": 0.003,
                "warmup_steps": 10,
                "checkpoint_every_steps": 75,
                "checkpoint_every_epochs": None,
                "log_every_steps": 25,
                "max_val_batches": 5,
                "precision": "bf16",
                "activation_checkpointing": True,
                "global_batch_tokens": 64 * 32,  # 64 sequences: 2 workers x 16 x 2 micro
            },
            "scaling": {"strategy": "fsdp"},
            "storage": {"path": str(storage)},
        }
    )
    events: list[dict[str, Any]] = []
    outcome = run_training(spec, on_event=events.append)
    return storage, {**outcome.best_metrics, "events": events}


def test_fsdp_gpt_beats_the_unigram_baseline_with_sharded_checkpoints(
    pretrained: tuple[Path, dict[str, Any]],
) -> None:
    storage, best = pretrained
    assert best["val_loss"] < best["unigram_loss"] - 0.2
    assert best["val_perplexity"] == pytest.approx(math.exp(best["val_loss"]), rel=1e-6)
    assert best["tokens_per_s"] > 0
    first = best["events"][0]
    assert first["global_batch"] == 64 and first["accum_steps"] == 2
    losses = [e["train_loss"] for e in best["events"] if "train_loss" in e]
    assert losses[-1] < losses[0] - 1.0, losses
    # Every rank wrote its shards into the one folder; rank 0's manifest seals them all.
    run_dir = storage / "lm"
    newest = max(p for p in run_dir.glob("checkpoint_*") if p.is_dir())
    files = {p.name for p in newest.iterdir()}
    assert {".metadata", "__0_0.distcp", "__1_0.distcp", "state.pt", "manifest.json"} <= files
    manifest = json.loads((newest / "manifest.json").read_text())
    assert {"__0_0.distcp", "__1_0.distcp", ".metadata"} <= set(manifest["files"])
    written = [e["checkpoint_bytes"] for e in best["events"] if e.get("checkpoint_bytes")]
    on_disk = sum(p.stat().st_size for p in newest.iterdir())
    assert written[-1] == on_disk  # every rank's shards count
    # The export is the gathered, plain model.
    exported = load_export(str(run_dir / "model"))
    assert not any("lora" in k for k in exported.model.state_dict())
    # Under FSDP each rank holds about half of the parameters + optimizer state.
    held = [e["model_state_bytes"] for e in best["events"] if "model_state_bytes" in e]
    params = sum(t.numel() * 4 for t in exported.model.state_dict().values())
    assert held and max(held) < 0.75 * 3 * params  # params + 2 AdamW moments, halved


def test_an_fsdp_checkpoint_from_2_workers_resumes_on_1(
    tmp_path: Path, pretrained: tuple[Path, dict[str, Any]]
) -> None:
    storage, _ = pretrained
    shutil.copytree(storage / "lm", tmp_path / "lm")
    record = RunRecord.load(str(tmp_path / "lm"))
    assert record is not None
    spec_dict = json.loads(json.dumps(record.spec))  # the run's own resolved spec...
    spec_dict["storage"] = {"path": str(tmp_path)}
    spec_dict["train"]["max_steps"] = 160  # ...10 steps longer, on 1 worker
    spec_dict["scaling"].update(min_workers=1, max_workers=1)
    events: list[dict[str, Any]] = []
    outcome = run_training(spec_from_dict(spec_dict), resume=True, on_event=events.append)
    assert events[0]["resumed_from_step"] == 150 and events[0]["world_size_before"] == 2
    assert {e["world_size"] for e in events} == {1}
    assert outcome.metrics["step"] == 160
    assert outcome.best_metrics["val_loss"] < outcome.best_metrics["unigram_loss"] - 0.2


def test_lora_finetune_trains_only_adapters_and_exports_them_merged(
    pretrained: tuple[Path, dict[str, Any]],
) -> None:
    from raylift.artifacts.checkpoints import load_state
    from raylift.models.lora import apply_lora

    storage, _ = pretrained
    before = load_export(str(storage / "lm" / "model"))
    spec = spec_from_dict(
        {
            "name": "ft",
            "init_from": "lm",  # a run name under storage.path; model comes from its export
            "finetune": {"lora": {"rank": 4, "alpha": 8}},
            "data": {
                "name": "text",
                "params": {"corpus": "licenses", "context_length": 32},
                "batch_size": 16,
            },
            "train": {
                "epochs": None,
                "max_steps": 6,
                "lr": 0.01,
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
    assert after.manifest["data"]["params"]["corpus"] == "licenses"
    # Only the adapters trained: every base weight in the checkpoint is the pretrained one.
    run_dir = Path(outcome.run_dir)
    state = load_state(str(max(p for p in run_dir.glob("checkpoint_*") if p.is_dir())))
    pretrained_weights = before.model.state_dict()
    adapters = {k: v for k, v in state["model"].items() if ".lora_" in k}
    assert adapters and any(float(v.abs().sum()) > 0 for k, v in adapters.items() if "lora_b" in k)
    for name, value in state["model"].items():
        if ".lora_" not in name:
            assert torch.equal(value, pretrained_weights[name]), name
    # The export is the plain gpt with B @ A merged in: it predicts like the adapted model.
    adapted = load_export(str(storage / "lm" / "model")).model
    apply_lora(adapted, rank=4, alpha=8)
    adapted.load_state_dict(state["model"])
    adapted.eval()
    tokens = torch.randint(0, 256, (2, 32))
    with torch.no_grad():
        assert torch.allclose(after.model(tokens), adapted(tokens), atol=1e-4)
        assert not torch.allclose(after.model(tokens), before.model(tokens), atol=1e-4)


def test_tabular_csv_with_fp16_and_accumulation(tmp_path: Path) -> None:
    """fp16 autocast with a gradient scaler (bf16 is exercised by the gpt runs above)."""
    precision = "fp16"
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
