"""A sweep in-process on a real local Ray: the Tune driver API and its Prometheus gauges."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from metrics_scrape import scrape_metric

from raylift.training.export import load_export
from raylift.tuning.sweep import load_sweep, run_sweep

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_a_fifo_sweep_ranks_its_trials_and_publishes_its_progress(
    ray_local: None, tmp_path: Path
) -> None:
    loaded = load_sweep(
        str(ROOT / "jobs" / "sweeps" / "digits-asha.yaml"),
        [
            f"storage.path={tmp_path}",
            "name=gauges",
            "num_samples=2",
            "scheduler.type=fifo",
            "trial.train.epochs=2",
            "trial.train.checkpoint_every_epochs=1",
            "trial.train.log_every_steps=1000",
        ],
    )
    seen: list[int] = []
    record = run_sweep(loaded, on_update=lambda rows: seen.append(len(rows)))
    assert seen and max(seen) == 2  # the live table saw both trials

    trials = record["trials"]
    assert [t["status"] for t in trials] == ["done", "done"]
    assert trials[0]["best"] >= trials[1]["best"]  # the leaderboard is ranked
    assert json.loads((tmp_path / "gauges" / "sweep.json").read_text())["best"] == record["best"]
    best = load_export(record["best"]["export"])
    assert best.metrics["val_accuracy"] == pytest.approx(trials[0]["best"])

    terminated = scrape_metric(
        "ray_raylift_sweep_trials", until=lambda v: v == 2, sweep="gauges", state="terminated"
    )
    assert terminated == 2.0
    best_value = scrape_metric(
        "ray_raylift_sweep_best_metric",
        until=lambda v: v == pytest.approx(trials[0]["best"]),
        sweep="gauges",
        metric="val_accuracy",
    )
    assert best_value == pytest.approx(trials[0]["best"])


def test_placement_groups_of_dead_actors_are_removed_and_no_others(ray_local: None) -> None:
    """What a stopped trial's controller leaves (one group ready, one still pending) goes;
    a driver's group (as Tune's own trial groups are) stays."""
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group

    from raylift.tuning.orphans import orphaned_placement_groups, remove_orphaned_placement_groups

    @ray.remote(num_cpus=0)
    class Controller:
        def reserve(self, cpus: float) -> str:
            return placement_group([{"CPU": cpus}]).id.hex()

    job = ray.get_runtime_context().get_job_id()
    drivers = placement_group([{"CPU": 0.5}])
    ray.get(drivers.ready(), timeout=30)
    controller = Controller.remote()
    ready = ray.get(controller.reserve.remote(1))
    pending = ray.get(controller.reserve.remote(2))  # more than is free: stays pending
    assert orphaned_placement_groups(job) == []  # its creator is alive

    ray.kill(controller)
    deadline = time.monotonic() + 30
    while set(orphaned_placement_groups(job)) != {ready, pending}:
        assert time.monotonic() < deadline, orphaned_placement_groups(job)
        time.sleep(0.2)
    assert sorted(remove_orphaned_placement_groups()) == sorted([ready, pending])
    assert orphaned_placement_groups(job) == []
    table = ray.util.placement_group_table()
    assert table[ready]["state"] == table[pending]["state"] == "REMOVED"
    assert table[drivers.id.hex()]["state"] == "CREATED"
    remove_placement_group(drivers)
